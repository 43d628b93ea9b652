"""(De)randomized smoothing against patches (robustcert.patch): ablations, encoding, the vote
certificate with its ties, Δ against an exhaustive count, soundness against worst-case patches, and the
batched vote counts against a one-position-at-a-time loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from robustcert import patch
from robustcert.models import build_model


def kept(ablation: patch.Ablation, position: int) -> np.ndarray:
    return patch.masks(ablation, torch.tensor([position]))[0].numpy()


def test_bands_keep_s_columns_wrapping_around():
    band = patch.Ablation("band", 3, 5, 6)
    assert band.num_positions == 6
    assert kept(band, 1)[:, 1:4].all() and kept(band, 1).sum() == 15
    assert np.array_equal(np.flatnonzero(kept(band, 5)[0]), [0, 1, 5])  # wraps to columns 0, 1


def test_rows_blocks_and_multi_variants():
    rows = patch.Ablation("row", 2, 4, 6)
    assert rows.num_positions == 4 and np.array_equal(np.flatnonzero(kept(rows, 3)[:, 0]), [0, 3])
    block = patch.Ablation("block", 2, 4, 4)
    assert block.num_positions == 16
    assert np.array_equal(np.argwhere(kept(block, 15)), [[0, 0], [0, 3], [3, 0], [3, 3]])  # both axes wrap
    multi = patch.Ablation("band", 1, 4, 8, count=2)
    assert multi.num_positions == 4 and np.array_equal(np.flatnonzero(kept(multi, 1)[0]), [1, 5])
    grid = patch.Ablation("block", 1, 4, 4, count=2)
    assert grid.num_positions == 4 and np.array_equal(np.argwhere(kept(grid, 3)), [[1, 1], [1, 3], [3, 1], [3, 3]])
    assert grid.label == "block_s1_k2" and block.label == "block_s2"


def test_encoding_tells_an_ablated_pixel_from_a_black_one():
    x = torch.tensor([[[[0.0, 0.25, 1.0]]]])
    keep = torch.tensor([[[True, True, False]]])
    encoded = patch.encode(x, keep)
    assert encoded.shape == (1, 2, 1, 3)
    assert encoded[0, :, 0].tolist() == [[0.0, 0.25, 0.0], [1.0, 0.75, 0.0]]


@pytest.mark.parametrize("kind,size,count,problem", [
    ("band", 9, 1, "does not fit the image's W=8"),
    ("block", 3, 3, "does not fit the image's H=8"),
    ("band", 1, 3, "k=3 does not divide the image's W=8"),
    ("diagonal", 1, 1, "is not one of"),
])
def test_ablations_that_do_not_fit_are_refused(kind, size, count, problem):
    with pytest.raises(ValueError, match=problem):
        patch.Ablation(kind, size, 8, 8, count)


def test_a_patch_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match="patch size 9"):
        patch.Ablation("band", 2, 8, 8).delta(9)


def test_certify_votes_margin_and_ties():
    counts = np.array([
        [10, 4, 0],   # gap 6 > 2·2
        [8, 4, 0],    # gap 4 = 2·2, top 0 < runner-up 1: certified
        [4, 8, 0],    # gap 4 = 2·2, top 1 > runner-up 0: not
        [5, 5, 1],    # a tie: prediction 0, gap 0
        [0, 7, 3],    # gap 4 = 2Δ, runner-up 2 > top 1: certified
        [1, 1, 1],
    ])
    prediction, certified = patch.certify_votes(counts, 2)
    assert prediction.tolist() == [0, 0, 1, 0, 1, 0]
    assert certified.tolist() == [True, True, False, False, True, False]
    assert patch.certify_votes(counts, 0)[1].tolist() == [True, True, True, True, True, True]


@pytest.mark.parametrize("ablation", [
    patch.Ablation("band", 2, 6, 7), patch.Ablation("row", 3, 6, 7), patch.Ablation("block", 2, 6, 6),
    patch.Ablation("band", 1, 6, 8, count=2), patch.Ablation("block", 1, 6, 6, count=3),
])
def test_delta_is_the_most_positions_one_patch_overlaps(ablation):
    for m in range(1, min(ablation.height, ablation.width) + 1):
        most = max(int(patch.overlapping(ablation, top, left, m).sum())
                   for top in range(ablation.height - m + 1) for left in range(ablation.width - m + 1))
        assert ablation.delta(m) == most, m


@pytest.mark.parametrize("ablation", [patch.Ablation("band", 2, 5, 5), patch.Ablation("block", 1, 4, 4)])
def test_no_patch_changes_a_certified_prediction(ablation):
    """Soundness, exhaustively: every placement of every certified size, the overlapping positions
    replaced by the worst case (each votes for the runner-up c only, none for the top class)."""
    rng = np.random.default_rng(0)
    positions, classes = ablation.num_positions, 3
    checked = 0
    for _ in range(200):
        votes = rng.random((positions, classes)) < np.array([0.9, 0.3, 0.2])  # threshold votes: any subset
        prediction, _ = patch.certify_votes(votes.sum(0)[None], 0)
        largest = patch.largest_certified(votes.sum(0)[None], ablation, range(1, ablation.height + 1))[0]
        for m in range(1, largest + 1):
            for top, left in itertools.product(range(ablation.height - m + 1), range(ablation.width - m + 1)):
                hit = patch.overlapping(ablation, top, left, m).numpy()
                for c in range(classes):
                    worst = votes.copy()
                    worst[hit] = False
                    worst[hit, c] = True
                    assert patch.certify_votes(worst.sum(0)[None], 0)[0][0] == prediction[0]
                    checked += 1
    assert checked > 1000


def small_model(channels: int = 1, size: int = 6) -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", 2 * channels, 4, size, [0.0] * 2 * channels, [1.0] * 2 * channels).eval()


@pytest.mark.parametrize("kind", ["band", "block"])
def test_batched_votes_equal_one_position_at_a_time(kind):
    ablation = patch.Ablation(kind, 2, 6, 6)
    model = small_model()
    x = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    smooth = patch.PatchSmooth(model, 4, ablation, channels=1, batch_size=7)  # chunks cut through images
    counts = smooth.vote_counts(x, [0.2])
    expected = {"theta_0.2": np.zeros((5, 4), int), "top_one": np.zeros((5, 4), int)}
    with torch.no_grad():
        for p in range(ablation.num_positions):
            probs = torch.softmax(model(patch.encode(x, patch.masks(ablation, torch.tensor([p])).expand(5, -1, -1))), 1)
            expected["theta_0.2"] += (probs >= 0.2).int().numpy()
            expected["top_one"][np.arange(5), probs.argmax(1).numpy()] += 1
    for rule in expected:
        assert np.array_equal(counts[rule], expected[rule]), rule
    assert np.array_equal(smooth.position_votes(x, 0.2).sum(1).numpy(), counts["theta_0.2"])


def test_a_patch_changes_only_the_votes_of_the_positions_it_overlaps():
    ablation = patch.Ablation("band", 2, 6, 6)
    smooth = patch.PatchSmooth(small_model(), 4, ablation, channels=1, batch_size=64)
    x = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    patched = x.clone()
    patched[:, :, 1:3, 2:4] = torch.rand(3, 1, 2, 2)
    changed = (smooth.position_votes(x, 0.2) != smooth.position_votes(patched, 0.2)).any(dim=2).any(dim=0)
    assert not changed[~patch.overlapping(ablation, 1, 2, 2)].any()


def test_a_model_without_2c_input_channels_is_refused():
    model = build_model("small_cnn", 1, 4, 6, [0.0], [1.0])
    with pytest.raises(ValueError, match="2×1 = 2 input channels"):
        patch.PatchSmooth(model, 4, patch.Ablation("band", 2, 6, 6), channels=1, batch_size=8)


def test_randomized_bands_certify_a_constant_classifier_and_predict_by_the_binomial_test():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 5.0, 0.0]]).expand(len(x), -1) + 0 * self.conv(x).sum()

    ablation = patch.Ablation("band", 2, 8, 8)
    smooth = patch.PatchSmooth(Constant(), 3, ablation, channels=1, batch_size=256)
    result = smooth.randomized(torch.rand(2, 1, 8, 8), n0=100, n=1000, alpha=0.05, patch_sizes=list(range(1, 9)),
                               generator=torch.Generator().manual_seed(0))
    assert result["predict"].tolist() == [1, 1] and result["certified_class"].tolist() == [1, 1]
    # p̲ = 0.05^(1/1000) ≈ 0.997 > 0.5 + Δ/8 iff Δ ≤ 3: m + 1 ≤ 3
    assert result["certified_patch"].tolist() == [2, 2]
    assert np.allclose(result["lower_bound"], 0.05 ** (1 / 1000))


def test_ablation_training_keeps_one_random_position_per_batch_and_trains_a_2c_model():
    from robustcert import partition, train

    objective = train.objective_of(train.TrainConfig(objective="ablation", ablation_kind="band", ablation_size=2))
    x = torch.rand(4, 1, 6, 6)
    ablated = objective.perturb(x, torch.Generator().manual_seed(0))
    assert ablated.shape == (4, 2, 6, 6)
    kept_columns = (ablated.abs().sum(dim=(1, 2)) > 0)
    assert (kept_columns == kept_columns[0]).all() and kept_columns[0].sum() == 2  # one position for the batch
    assert torch.allclose(ablated[:, 0] + ablated[:, 1], kept_columns[:, None, :].float().expand(4, 6, 6))

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8), np.arange(40) % 4
    whole = partition.assign("whole", images, labels, k=1)
    unnormalised = type(whole)(**{**vars(whole), "mean": np.zeros((1, 2), np.float32), "std": np.ones((1, 2), np.float32)})
    cfg = train.TrainConfig(epochs=1, batch_size=8, objective="ablation", ablation_kind="block", ablation_size=2)
    for strategy in ("sequential", "batched"):
        states = train.train_shard(images, labels, unnormalised, [0], train.ModelSpec("small_cnn", 2, 4, 6),
                                   train.TrainConfig(**{**vars(cfg), "strategy": strategy}), torch.device("cpu"))
        assert states[0]["1.0.weight"].shape[1] == 2


def _trained_band_model(size: int = 10) -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A small CNN trained on ablated bands of images whose label is a bright row (visible in every band)."""
    from robustcert import partition, train

    rng = np.random.default_rng(0)
    labels = np.arange(160) % 4
    images = rng.integers(0, 60, (160, 1, size, size), dtype=np.uint8)
    images[np.arange(160), 0, 2 * labels + 1, :] = 250
    whole = partition.assign("whole", images, labels, k=1)
    whole = type(whole)(**{**vars(whole), "mean": np.zeros((1, 2), np.float32), "std": np.ones((1, 2), np.float32)})
    spec = train.ModelSpec("small_cnn", 2, 4, size)
    cfg = train.TrainConfig(epochs=8, batch_size=16, lr=0.05, milestones=(), objective="ablation",
                            ablation_kind="band", ablation_size=2, seed=0)
    state = train.train_shard(images, labels, whole, [0], spec, cfg, torch.device("cpu"))[0]
    model = spec.build([0.0, 0.0], [1.0, 1.0])
    model.load_state_dict(state)
    return model.eval(), images, labels


def test_no_point_certified_for_a_patch_size_is_broken_by_the_patch_attack_of_that_size():
    from robustcert.pgd import PGD

    model, images, labels = _trained_band_model()
    ablation = patch.Ablation("band", 2, 10, 10)
    smooth = patch.PatchSmooth(model, 4, ablation, channels=1, batch_size=4096)
    x, y = torch.from_numpy(images[:16]).float() / 255, torch.from_numpy(labels[:16])
    certified = smooth.certify(x, [0.2], [1, 2, 3])
    attack = PGD("linf", 1.0, 0.1, 10, random_start=True, restarts=2)
    for m in (2, 3):
        correct = patch.patch_attack(lambda t: patch.soft_vote_loss(smooth, t), patch.smoothed_correct(smooth, [0.2]),
                                     x, y, m, 4, attack, chunk=256, generator=torch.Generator().manual_seed(0))
        for r, rule in enumerate(["theta_0.2", "top_one"]):
            held = (certified[rule]["certified_patch"] >= m) & (certified[rule]["predict"] == labels[:16])
            assert held.sum() >= 4, (m, rule)  # the check is not vacuous
            assert correct[held, r].all(), (m, rule)


def test_the_patch_attack_breaks_an_undefended_model_inside_the_patch_only():
    from robustcert.pgd import PGD, cross_entropy_loss

    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 4, 6, [0.0], [1.0]).eval()
    x = torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(3))
    y = model(x).argmax(1)

    def judge(adversarial: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (model(adversarial).argmax(1) == labels)[:, None]

    attack = PGD("linf", 1.0, 0.05, 40, random_start=True, restarts=1)
    nothing = patch.patch_attack(lambda t: cross_entropy_loss(model, t), judge, x, y, 1, 1, PGD("linf", 1.0, 0.05, 0),
                                 chunk=50, generator=torch.Generator())
    broken = patch.patch_attack(lambda t: cross_entropy_loss(model, t), judge, x, y, 6, 1, attack, chunk=50,
                                generator=torch.Generator().manual_seed(0))
    assert nothing.all() and not broken.all()
    assert patch.placements(6, 6, 4, 3) == [(0, 0), (0, 2), (2, 0), (2, 2)]
