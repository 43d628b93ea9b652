"""The public API (robustcert.api): what it returns against the implementations it opens, the errors
that name the wrong argument, and what importing it loads."""

from __future__ import annotations

import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustcert
from robustcert import api, certify, metrics, rab
from robustcert.patch import Ablation, PatchSmooth, encode
from robustcert.smoothing import Smooth

WORKFLOW_LIBRARIES = ("snakemake", "dvc", "pandas", "matplotlib", "yaml", "jsonschema", "sklearn", "statsmodels",
                      "torchvision")


def linear(channels: int = 1, side: int = 6, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, classes))


def conv(channels: int = 2, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, classes))


def test_importing_robustcert_and_its_api_loads_no_workflow_tool():
    code = ("import sys, robustcert; light = 'torch' not in sys.modules; import robustcert.api; "
            f"print(light, [m for m in {WORKFLOW_LIBRARIES!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "[]"]


def test_help_shows_the_api():
    text = pydoc.render_doc(robustcert, renderer=pydoc.plaintext)
    for name in robustcert.__all__:
        assert name in text
    assert "FUNCTIONS" in text and "certify_smoothing(model: " in text  # the signatures, not only the names
    assert set(robustcert.__all__) <= set(dir(robustcert))
    with pytest.raises(AttributeError, match="no attribute 'certify_everything'"):
        robustcert.certify_everything


def test_certify_smoothing_is_smooth_certify_batch():
    model, x = linear(), torch.rand(3, 1, 6, 6)
    predictions, radii = api.certify_smoothing(model, x, num_classes=3, sigma=0.5, n0=20, n=200, seed=3,
                                               batch_size=64)
    expected = Smooth(model, 3, 0.5, 3).certify_batch(x, 20, 200, 0.001, 64)
    np.testing.assert_array_equal(predictions, expected[0])
    np.testing.assert_array_equal(radii, expected[1])
    one = api.predict_smoothing(model, x[0], num_classes=3, sigma=0.5, n=200, seed=3)
    assert one.shape == (1,) and one[0] == Smooth(model, 3, 0.5, 3).predict(x[0], 200, 0.001, 200)


def test_with_ablation_channels_sees_the_kept_pixels_as_the_original_model_saw_the_image():
    original = conv(channels=1)
    wider = with_ablation = api.with_ablation_channels(conv(channels=1))
    assert with_ablation.__getitem__(0).in_channels == 2
    x = torch.rand(2, 1, 6, 6)
    keep = torch.zeros(2, 6, 6, dtype=torch.bool)
    keep[:, :, 1:3] = True
    torch.testing.assert_close(wider(encode(x, keep)), original(x * keep[:, None]))


def test_patch_smoothing_is_patch_smooth():
    model, x = conv(), torch.rand(4, 1, 6, 6)
    smoothed = api.PatchSmoothing(model, num_classes=3, ablation="band", size=2, threshold=0.3)
    expected = PatchSmooth(model, 3, Ablation("band", 2, 6, 6), 1, 16).certify(x, [0.3], [1, 2, 3])["theta_0.3"]
    np.testing.assert_array_equal(smoothed.votes(x), expected["counts"])
    predictions, largest = smoothed.largest_certified_patch(x)
    np.testing.assert_array_equal(predictions, expected["predict"])
    np.testing.assert_array_equal(np.minimum(largest, 3), expected["certified_patch"])
    _, certified = smoothed.certify(x, 2)
    np.testing.assert_array_equal(certified, largest >= 2)


def test_aggregation_certificates_are_those_of_robustcert_certify():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 8, 4))
    scores[:, :5, 1] += 2
    shifts = api.fa_shifts(4, 2)
    for function, reference in [(api.certify_dpa, certify.dpa), (api.certify_dpa_roe, certify.run_off_election)]:
        np.testing.assert_array_equal(np.stack(function(scores)), np.stack(reference(scores)))
        assert torch.equal(torch.from_numpy(np.stack(function(torch.from_numpy(scores)))),
                           torch.from_numpy(np.stack(reference(scores))))
    for function, reference in [(api.certify_fa, certify.finite_aggregation),
                                (api.certify_fa_roe, certify.finite_aggregation_run_off)]:
        np.testing.assert_array_equal(np.stack(function(scores, shifts)), np.stack(reference(scores, shifts)))
    votes = scores.argmax(axis=2)
    np.testing.assert_array_equal(np.stack(api.certify_dpa(votes, num_classes=4)), np.stack(certify.dpa(scores)))


def test_train_partitioned_trains_each_subset_with_the_users_factory():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 1, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 2, size=40)
    ensemble = api.train_partitioned(images, labels, lambda: linear(side=4, classes=2), k=2, d=2, epochs=1)
    assert len(ensemble.models) == 4 and len(ensemble.shifts) == 2 and ensemble.k == 2
    assert all(isinstance(m, nn.Sequential) for m in ensemble.models)
    assert ensemble.scores(images[:5]).shape == (5, 4, 2)


def test_rab_and_metrics_are_those_of_the_workflow():
    rng = np.random.default_rng(2)
    probabilities = rab.softmax(rng.normal(size=(10, 30, 3)))
    np.testing.assert_array_equal(np.stack(api.certify_rab(probabilities, 0.5)),
                                  np.stack(rab.certify(probabilities, 0.5)))
    predictions, radii = rab.certify(probabilities, 0.5)
    labels = rng.integers(0, 3, size=10)
    np.testing.assert_array_equal(api.certified_accuracy(predictions, labels, radii, [0, 0.1], strict=True),
                                  metrics.certified_accuracy(radii, predictions == labels, [0, 0.1], strict=True))
    assert api.average_certified_radius(predictions, labels, radii) == metrics.average_certified_radius(
        radii, predictions == labels)
    assert api.attack_success_rate(predictions, labels, 1) == metrics.attack_success_rate(predictions, labels, 1)
    assert api.robust_accuracy(predictions, labels, 1) == metrics.robust_accuracy(predictions, labels, 1)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: api.certify_smoothing(linear(), np.zeros((1, 1, 6, 6)), num_classes=3, sigma=0.5),
     TypeError, "x must be a torch.Tensor"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(1, 1, 6, 6, dtype=torch.uint8), num_classes=3, sigma=0.5),
     TypeError, "x must be a floating tensor"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(6, 6), num_classes=3, sigma=0.5),
     ValueError, r"x must have shape \[n, C, H, W\] or \[C, H, W\], got \(6, 6\)"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(1, 1, 6, 6, device="meta"), num_classes=3, sigma=0.5),
     ValueError, "x is on meta but the model on cpu"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(1, 1, 6, 6), num_classes=10, sigma=0.5),
     ValueError, r"num_classes is 10 but the model maps one input to scores of shape \(1, 3\)"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(1, 1, 6, 6), num_classes=3, sigma=0.5, alpha=1.5),
     ValueError, r"alpha must lie in \(0, 1\)"),
    (lambda: api.certify_smoothing(linear(), torch.zeros(1, 1, 6, 6), num_classes=3, sigma=-1),
     ValueError, "sigma must be positive"),
    (lambda: api.predict_smoothing(linear(), torch.zeros(1, 1, 6, 6), num_classes=3, sigma=0.5, n=5),
     ValueError, "with n=5 and alpha=0.001 PREDICT can only abstain"),
    (lambda: api.PatchSmoothing(conv(), num_classes=3, threshold=1.5),
     ValueError, r"threshold must lie in \(0, 1\], got 1.5"),
    (lambda: api.PatchSmoothing(conv(), num_classes=3).predict(torch.full((1, 1, 6, 6), 2.0)),
     ValueError, r"x must lie in \[0, 1\]"),
    (lambda: api.PatchSmoothing(conv(channels=1), num_classes=3).predict(torch.rand(1, 1, 6, 6)),
     ValueError, "needs a model taking 2×1 = 2 input channels"),
    (lambda: api.PatchSmoothing(conv(), num_classes=3, ablation="stripe").predict(torch.rand(1, 1, 6, 6)),
     ValueError, "ablation kind 'stripe' is not one of"),
    (lambda: api.with_ablation_channels(linear()), ValueError, "model: Sequential has no Conv2d layer"),
    (lambda: api.certify_dpa(np.zeros((2, 3), dtype=np.int64)), ValueError, r"num_classes is needed with votes"),
    (lambda: api.certify_dpa(np.zeros((2, 3), dtype=np.int64) + 5, num_classes=3),
     ValueError, r"votes must lie in \[0, num_classes\)"),
    (lambda: api.certify_dpa(np.zeros((2, 3)), num_classes=3), TypeError, "votes .* must be integer classes"),
    (lambda: api.certify_dpa_roe(np.zeros(4)), ValueError, r"scores must be \[n, models, classes\]"),
    (lambda: api.certify_fa(np.zeros((2, 4, 3)), [0.5, 1.5]), ValueError, "shifts must be a 1-D sequence of ints"),
    (lambda: api.certify_fa_roe(np.zeros((2, 5, 3)), [0, 1]), ValueError, "5 models are not k·d subsets"),
    (lambda: api.certify_rab(np.full((2, 3, 2), 1.5), sigma=0.5), ValueError, r"scores must lie in \[0, 1\]"),
    (lambda: api.certify_rab(np.zeros((2, 3, 2), dtype=np.int64), sigma=0.5),
     ValueError, "scores must be floating probabilities"),
    (lambda: api.certify_rab(np.zeros((2, 3, 2)), sigma=0.5, alpha=0), ValueError, r"alpha must lie in \(0, 1\)"),
    (lambda: api.train_partitioned(np.zeros((4, 1, 2, 2)), np.zeros(4, int), lambda: linear(side=2), k=2),
     ValueError, "images must be uint8"),
    (lambda: api.train_partitioned(np.zeros((4, 1, 2, 2), np.uint8), np.zeros(3, int), lambda: linear(side=2), k=2),
     ValueError, "labels must be 1-D with 4 entries"),
    (lambda: api.train_partitioned(np.zeros((4, 1, 2, 2), np.uint8), np.zeros(4), lambda: linear(side=2), k=2),
     TypeError, "labels must hold integer classes"),
    (lambda: api.ensemble_scores([], np.zeros((1, 1, 2, 2), np.uint8)), ValueError, "models must hold at least one"),
    (lambda: api.certified_accuracy([0, 1], [0], [1.0, 1.0], at=[0]), ValueError, "labels has 1 points, predictions 2"),
    (lambda: api.certified_accuracy([0.5, 1], [0, 1], [1.0, 1.0], at=[0]),
     TypeError, "predictions must hold integer classes"),
    (lambda: api.average_certified_radius([0, 1], [0, 1], [[1.0, 1.0]]), ValueError, "radii must be 1-D"),
    (lambda: api.attack_success_rate(torch.zeros(2, dtype=torch.int64, device="meta"), torch.zeros(2, dtype=torch.int64),
                                     target=1), ValueError, "arguments on different devices: predictions on meta"),
    (lambda: api.robust_accuracy([[0]], [0], target=1), ValueError, "predictions must be 1-D"),
    (lambda: api.defense_effectiveness_rate(1.0, 0.9, asr=-0.1, acc=0.9), ValueError, r"asr must lie in \[0, 1\]"),
])
def test_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_no_workflow_step_runs_the_api():
    """The API is not part of any step's code digest (robustcert.fingerprint): adding to it reruns nothing."""
    from robustcert import fingerprint

    top_level, _ = fingerprint.load("robustcert").used(frozenset())
    assert [statement.names for statement in top_level] == [frozenset({"__version__"})]
    scripts = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))
    assert scripts and not [s.name for s in scripts if "robustcert.api" in fingerprint.covered(s)]
