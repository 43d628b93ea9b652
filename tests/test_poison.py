"""Attacks: trigger presets, backdoors, label flips, and their file format."""

from __future__ import annotations

import numpy as np
import pytest

from robustcert import poison
from robustcert.artifacts import ArtifactError


def _training_set(n=200, shape=(1, 28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, size=(n, *shape)).astype(np.uint8), np.arange(n) % 10


def test_localised_preset_is_the_papers_square_on_28x28():
    pixels, mode = poison.trigger_pixels("localised", 28, 28)
    assert sorted(pixels) == [(r, c) for r in (24, 25, 26) for c in (24, 25, 26)] and mode == "set"


def test_four_pixel_preset_is_rabs_pattern():
    pixels, mode = poison.trigger_pixels("four_pixel", 28, 28)
    assert sorted(pixels) == sorted([(18, 20), (19, 19), (20, 18), (20, 20)]) and mode == "add"


def test_distributed_preset_has_two_squares_at_opposite_corners():
    pixels, _ = poison.trigger_pixels("distributed", 28, 28)
    assert len(pixels) == 8 and (1, 1) in pixels and (25, 25) in pixels


def test_preset_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit 8×8"):
        poison.trigger_pixels("four_pixel", 8, 8)


def test_backdoor_poisons_the_fraction_with_the_trigger_and_target():
    x, y = _training_set()
    spec = {"type": "backdoor", "preset": "localised", "value": 250 / 255, "target": 7, "fraction": 0.05}
    result = poison.generate_poison(spec, x, y, seed=0)
    assert len(result.index) == 10 and np.all(y[result.index] != 7)
    assert np.all(result.y == 7) and result.target == 7
    assert np.all(result.x[:, 0, 24:27, 24:27] == 250)
    untouched = ~result.trigger.mask
    assert np.array_equal(result.x[:, untouched], x[result.index][:, untouched])
    assert result.symmetric_difference == 20


def test_clean_label_backdoor_keeps_labels_and_poisons_the_target_class():
    x, y = _training_set()
    spec = {"type": "backdoor", "preset": "localised", "value": 1.0, "target": 3, "fraction": 0.05,
            "dirty_label": False}
    result = poison.generate_poison(spec, x, y, seed=0)
    assert np.all(y[result.index] == 3) and np.array_equal(result.y, y[result.index])


def test_additive_trigger_clips_at_255():
    x = np.full((2, 1, 28, 28), 250, np.uint8)
    trigger = poison.make_trigger({"preset": "four_pixel", "value": 0.1}, (1, 28, 28))
    assert trigger.apply(x)[0, 0, 18, 20] == 255 and trigger.apply(x)[0, 0, 0, 0] == 250


def test_custom_rectangle_trigger():
    trigger = poison.make_trigger({"position": [2, 3], "size": [2, 1], "value": 1.0}, (3, 8, 8))
    assert trigger.mask.sum() == 6 and trigger.mask[:, 2:4, 3].all()


def test_label_flip_changes_labels_of_the_source_class_only():
    x, y = _training_set()
    result = poison.generate_poison({"type": "label_flip", "source": 1, "target": 7, "fraction": 0.5}, x, y, 0)
    assert len(result.index) == 10 and np.all(y[result.index] == 1) and np.all(result.y == 7)
    assert np.array_equal(result.x, x[result.index]) and result.trigger is None


def test_attacks_are_deterministic_for_a_seed():
    x, y = _training_set()
    spec = {"type": "label_flip", "source": None, "target": 7, "fraction": 0.2}
    a, b = poison.generate_poison(spec, x, y, 5), poison.generate_poison(spec, x, y, 5)
    assert np.array_equal(a.index, b.index)


def test_triggered_test_set_has_every_class_the_target_included():
    x, y = _training_set(50)
    result = poison.generate_poison({"type": "backdoor", "preset": "localised", "value": 1.0, "target": 7,
                                     "fraction": 0.1}, x, y, 0)
    index, images = poison.triggered_test_set(result, x, y)
    assert index.tolist() == list(range(50)) and (y[index] == 7).sum() == 5  # 45 non-target images, as before
    assert np.all(images[:, 0, 24:27, 24:27] == 255)
    none = poison.generate_poison({"type": "none"}, x, y, 0)
    assert len(poison.triggered_test_set(none, x, y)[0]) == 0


def test_poison_file_round_trip_and_checks(tmp_path):
    x, y = _training_set()
    result = poison.generate_poison({"type": "backdoor", "preset": "distributed", "value": 1.0, "target": 7,
                                     "fraction": 0.05}, x, y, 0)
    poison.save_poison(tmp_path / "p.npz", result)
    loaded = poison.load_poison(tmp_path / "p.npz", len(y), x.shape[1:])
    assert np.array_equal(loaded.index, result.index) and loaded.trigger.mode == "set"
    poisoned_x, poisoned_y = loaded.apply(x, y)
    assert np.array_equal(poisoned_x[result.index], result.x) and np.all(poisoned_y[result.index] == 7)
    with pytest.raises(ArtifactError, match="indices must be distinct"):
        poison.load_poison(tmp_path / "p.npz", n_train=5)
    with pytest.raises(ArtifactError, match="does not fit images"):
        poison.load_poison(tmp_path / "p.npz", len(y), (3, 32, 32))


def test_budget_in_every_unit():
    from robustcert.data import Split

    x = np.zeros((10, 1, 4, 4), np.uint8)
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    x_test, y_test = np.zeros((3, 1, 4, 4), np.uint8), np.array([0, 1, 2])
    split = Split(x, y, x[:0], y[:0], x_test, y_test, np.arange(10), np.zeros(0, np.int64), num_classes=3)
    attack = poison.generate_poison({"type": "backdoor", "position": [0, 0], "size": [1, 2], "value": 0.6,
                                     "target": 2, "fraction": 0.2}, x, y, seed=0)
    numbers = poison.budget(attack, split, target=2)
    assert numbers["poisoned"] == 2 and numbers["poison_fraction"] == 0.2 and numbers["symmetric_difference"] == 4
    assert numbers["target_class_fraction"] == pytest.approx(2 / 3) and numbers["labels_changed"] == 2
    change = 153 / 255  # two pixels of each of two images, from 0 to 0.6
    assert numbers["poison_l2"] == pytest.approx(np.sqrt(4 * change ** 2)) and numbers["poison_linf"] == pytest.approx(change)
    assert numbers["trigger_area"] == 2 and numbers["trigger_l2"] == pytest.approx(np.sqrt(2) * change)
    assert numbers["trigger_linf"] == pytest.approx(change)

    nothing = poison.budget(poison.generate_poison({"type": "none"}, x, y, seed=0), split, target=None)
    assert nothing["poisoned"] == 0 and nothing["poison_l2"] == 0
    assert all(np.isnan(nothing[k]) for k in ("target_class_fraction", "trigger_area", "trigger_l2"))
