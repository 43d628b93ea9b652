"""The library's public API: certify your own model or your own score matrices in a few lines.

Every entry is a thin door onto the implementation the workflow runs (:mod:`robustcert.smoothing`,
:mod:`robustcert.patch`, :mod:`robustcert.certify`, :mod:`robustcert.train`, :mod:`robustcert.rab`,
:mod:`robustcert.metrics`): it checks its arguments, naming the one that is wrong, and calls that code.
Models are any ``torch.nn.Module``; arrays are numpy arrays or torch tensors; the computation runs on
the device of the model given (a tensor on another device is refused, not moved). docs/api.md has one
runnable example per entry; docs/methods.md defines each certificate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robustcert import __all__  # noqa: F401  (the API's names, listed once in robustcert/__init__.py)
from robustcert import certify as aggregation
from robustcert import metrics, partition, rab, train
from robustcert.patch import TOP_ONE, Ablation, PatchSmooth, certify_votes, largest_certified
from robustcert.patch import auto_batch_size as patch_batch_size
from robustcert.score import ensemble_logits
from robustcert.smoothing import Smooth, resolve_batch_size

#: The prediction of a classifier that abstains.
ABSTAIN = metrics.ABSTAIN


# --- randomized smoothing (Cohen et al.): docs/methods.md §1 -----------------------------------------

def certify_smoothing(model: nn.Module, x: torch.Tensor, *, num_classes: int, sigma: float, n0: int = 100,
                      n: int = 100_000, alpha: float = 0.001, batch_size: int | str = "auto",
                      seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cohen et al.'s CERTIFY of the smoothed classifier g(x) = argmax_c P(model(x + ε) = c), ε ~ N(0, σ²I).

    :param model: maps [batch × C × H × W] inputs to [batch × num_classes] scores
    :param x: the points to certify, [points × C × H × W] (or one point [C × H × W]), floating, on the
        model's device, in the pixel space the noise is added in
    :param seed: an int for reproducible counts; None draws from torch's global generator
    :return: predictions (int64 [points], :data:`ABSTAIN` where CERTIFY abstains) and certified L2 radii
        (float64 [points], 0 on abstention); each holds with probability at least 1 − alpha
    """
    smooth, x = _smoothed(model, x, num_classes, sigma, seed)
    size = resolve_batch_size(batch_size, smooth.device, x.shape[1:])
    return smooth.certify_batch(x, n0, n, alpha, size)


def predict_smoothing(model: nn.Module, x: torch.Tensor, *, num_classes: int, sigma: float, n: int = 100_000,
                      alpha: float = 0.001, batch_size: int | str = "auto", seed: int | None = None) -> np.ndarray:
    """Cohen et al.'s PREDICT of the smoothed classifier: int64 [points], the class each point gets, or
    :data:`ABSTAIN`; with probability at least 1 − alpha a class returned is g(x). Arguments as
    :func:`certify_smoothing`."""
    smooth, x = _smoothed(model, x, num_classes, sigma, seed)
    size = resolve_batch_size(batch_size, smooth.device, x.shape[1:])
    return np.array([smooth.predict(point, n, alpha, size) for point in x], dtype=np.int64)


def _smoothed(model: nn.Module, x: torch.Tensor, num_classes: int, sigma: float, seed: int | None
              ) -> tuple[Smooth, torch.Tensor]:
    x = _images("x", x, model)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    smooth = Smooth(model, num_classes, sigma, seed)
    with torch.inference_mode():
        outputs = model.eval()(x[:1]).shape if len(x) else (1, num_classes)
    if outputs != (1, num_classes):
        raise ValueError(f"num_classes is {num_classes} but the model maps one input to scores of shape {tuple(outputs)}")
    return smooth, x


# --- patch smoothing (Levine & Feizi): docs/methods.md §4 --------------------------------------------

class PatchSmoothing:
    """The (de)randomized smoothed classifier of a model that takes the 2C-channel ablated inputs.

    Every position of the ablation (``band``: s columns, ``row``: s rows, ``block``: s×s, ``count``
    regions each) votes: for every class whose softmax is ≥ ``threshold``, or, with ``threshold``
    None, for its argmax (top one). The prediction is the class with most votes (ties → smaller index).
    """

    def __init__(self, model: nn.Module, *, num_classes: int, ablation: str = "band", size: int = 4,
                 count: int = 1, threshold: float | None = 0.2, batch_size: int | str = "auto") -> None:
        """
        :param model: a classifier whose first convolution takes 2C channels
            (:func:`with_ablation_channels` makes one from a C-channel classifier)
        :param num_classes: the number of classes, at least 2
        :param ablation: ``band``, ``row`` or ``block``
        :param size: the side s of the kept region
        :param count: the regions k kept per ablation (spaced W/k apart)
        :param threshold: θ in (0, 1], or None for the top-one vote
        :param batch_size: ablated inputs per forward pass, or ``auto``
        """
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if threshold is not None:
            _check_probability("threshold", threshold, low_open=True)
        self.model, self.num_classes, self.threshold = model, num_classes, threshold
        self.kind, self.size, self.count, self.batch_size = ablation, size, count, batch_size
        self._smooth: PatchSmooth | None = None
        self._shape: tuple[int, int, int] | None = None

    def votes(self, x: torch.Tensor) -> np.ndarray:
        """The votes int64 [n, num_classes] of all positions for images ``x`` [n, C, H, W] in [0, 1]."""
        x = _images("x", x, self.model, unit=True)
        smooth = self._smoothed(x.shape[1:])
        thresholds = [] if self.threshold is None else [self.threshold]
        counts = smooth.vote_counts(x, thresholds)
        return counts[TOP_ONE if self.threshold is None else f"theta_{self.threshold:g}"]

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """The smoothed predictions int64 [n] of images ``x`` [n, C, H, W] in [0, 1]."""
        return certify_votes(self.votes(x), 0)[0].astype(np.int64)

    def certify(self, x: torch.Tensor, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Predictions int64 [n] of images ``x`` [n, C, H, W] in [0, 1] and whether each is certified
        (bool [n]): no ``patch_size`` × ``patch_size`` patch, anywhere, with any content, changes it."""
        counts = self.votes(x)
        return certify_votes(counts, self._smooth.ablation.delta(patch_size))

    def largest_certified_patch(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Predictions int64 [n] of images ``x`` and the side of the largest square patch each is
        certified against (int64 [n], 0 for none)."""
        counts = self.votes(x)
        ablation = self._smooth.ablation
        largest = largest_certified(counts, ablation, range(1, min(ablation.height, ablation.width) + 1))
        return certify_votes(counts, 0)[0].astype(np.int64), largest

    def _smoothed(self, image_shape: tuple[int, ...]) -> PatchSmooth:
        """The smoothed classifier for images of this shape [C, H, W] (made again when it changes)."""
        channels, height, width = image_shape
        if self._smooth is None or self._shape != (channels, height, width):
            ablation = Ablation(self.kind, self.size, height, width, self.count)
            size = (patch_batch_size(_device_of(self.model), (channels, height, width))
                    if self.batch_size == "auto" else int(self.batch_size))
            self._smooth = PatchSmooth(self.model, self.num_classes, ablation, channels, size)
            self._shape = (channels, height, width)
        return self._smooth


def with_ablation_channels(model: nn.Module) -> nn.Module:
    """``model`` with its first convolution replaced by one that takes twice its input channels, as patch
    smoothing's ablated inputs (x, 1 − x) have. The new weights of the first C channels are the old ones
    and those of the other C are zero, so the model starts out seeing the kept pixels as it saw images;
    train it on ablated inputs (:func:`robustcert.patch.random_ablation`). Changes ``model`` in place
    and returns it."""
    name, conv = next(((name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    if conv is None:
        raise ValueError(f"model: {type(model).__name__} has no Conv2d layer whose input channels to double")
    wider = nn.Conv2d(2 * conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:, :conv.in_channels // conv.groups] = conv.weight
        if conv.bias is not None:
            wider.bias.copy_(conv.bias)
    parent, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent), attribute, wider)
    return model


# --- aggregation certificates (DPA, Finite Aggregation, Run-Off Election): docs/methods.md §2 ---------

def certify_dpa(scores: np.ndarray, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deep Partition Aggregation: the plurality vote of the models and the number of training samples
    that may be inserted or deleted (each reaching one model) without changing it.

    :param scores: the models' scores [n, models, classes] (model j votes for its argmax), or their votes
        [n, models] as ints (then ``num_classes`` is needed)
    :return: predictions and certified poisoning sizes, int64 [n] each
    """
    return aggregation.dpa(_score_matrix(scores, num_classes))


def certify_fa(scores: np.ndarray, shifts: Sequence[int], num_classes: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Finite Aggregation: as :func:`certify_dpa` for k·d models where a training sample reaches the d
    models (h + s) mod k·d, s in ``shifts``, of its bucket h (``fa_shifts(k, d)``; d = 1 is DPA)."""
    return aggregation.finite_aggregation(_score_matrix(scores, num_classes), _shifts(shifts))


def certify_dpa_roe(scores: np.ndarray, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run-Off Election on DPA's models: round one picks the two classes with most votes, round two lets
    every model choose between them by its scores. Arguments and return value as :func:`certify_dpa`
    (with votes, a model that voted for neither finalist counts for the second)."""
    return aggregation.run_off_election(_score_matrix(scores, num_classes))


def certify_fa_roe(scores: np.ndarray, shifts: Sequence[int], num_classes: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Run-Off Election on Finite Aggregation's models. Arguments as :func:`certify_fa`."""
    return aggregation.finite_aggregation_run_off(_score_matrix(scores, num_classes), _shifts(shifts))


def fa_shifts(k: int, d: int, seed: int = 0) -> np.ndarray:
    """The d distinct shifts of Finite Aggregation with k·d models, drawn as its authors' code draws them
    (``seed`` 0), int64 [d]."""
    return partition.fa_shifts(k, d, partition.FA_SHIFT_SEED + seed)


@dataclass(frozen=True)
class PartitionedEnsemble:
    """The models trained by :func:`train_partitioned`; model j on subset j of the training set."""

    models: list[nn.Module]
    shifts: np.ndarray
    k: int

    def scores(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """The models' logits [n, models, classes] on uint8 images [n, C, H, W] (see :func:`ensemble_scores`)."""
        return ensemble_scores(self.models, images, batch_size)


def train_partitioned(images: np.ndarray, labels: np.ndarray, make_model: Callable[[], nn.Module], k: int,
                      d: int = 1, *, epochs: int = 200, batch_size: int = 128, lr: float = 0.1, seed: int = 0,
                      **recipe: object) -> PartitionedEnsemble:
    """Train DPA's (d = 1) or Finite Aggregation's k·d models on your training set with your architecture.

    A sample goes to subset (sum of its uint8 pixels) mod k·d (and, for d > 1, to the d subsets its
    bucket's shifts name), so that one inserted or deleted sample changes d models only; model j is
    ``make_model()`` built under ``torch.manual_seed(seed + j)`` and trained on subset j (in content order)
    with SGD (nesterov 0.9, weight decay 5e-4, lr × 0.2 after epochs 60/120/160 by default).

    :param images: uint8 [n, C, H, W]; the models see them as floats in [0, 1]
    :param labels: ints [n]
    :param make_model: builds a fresh model; training runs on the device of its parameters
    :param recipe: other fields of :class:`robustcert.train.TrainConfig` (``milestones``, ``crop_padding``,
        ``flip``, ``weight_decay``, ``optimizer``, …)
    """
    images = _numpy("images", images)
    labels = _numpy("labels", labels)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [n, C, H, W], got {images.dtype} of shape {images.shape}")
    _check_labels("labels", labels, len(images))
    if k < 1 or d < 1:
        raise ValueError(f"k and d must be at least 1, got k={k}, d={d}")
    cfg = train.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **recipe)
    parts = partition.partition_dataset(images, labels.astype(np.int64), k, d, seed=seed)
    device = _device_of(make_model())
    states = train.train_shard(images, labels.astype(np.int64), parts, list(range(parts.num_subsets)),
                               _Factory(make_model), cfg, device)
    models = [make_model() for _ in states]
    for model, state in zip(models, states):
        model.load_state_dict(state)
    return PartitionedEnsemble([model.eval() for model in models], parts.shifts, k)


@dataclass(frozen=True)
class _Factory:
    """The user's model factory in the place of the workflow's :class:`robustcert.train.ModelSpec`:
    ``train_shard`` builds model j with ``build`` (the subset's statistics are the user's business)."""

    make_model: Callable[[], nn.Module]

    def build(self, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
        return self.make_model()


def ensemble_scores(models: Sequence[nn.Module], images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The logits [n, models, classes] of every model on uint8 images [n, C, H, W] (seen as floats in
    [0, 1]), computed on the device of the first model; each model is left on the CPU afterwards."""
    images = _numpy("images", images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 [n, C, H, W], got {images.dtype} of shape {images.shape}")
    if len(models) == 0:
        raise ValueError("models must hold at least one model")
    return ensemble_logits(list(models), images, _device_of(models[0]), batch_size)


# --- RAB (Weber et al.): docs/methods.md §3 ----------------------------------------------------------

def certify_rab(scores: np.ndarray, sigma: float, alpha: float = rab.ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """RAB's certificate of the mean of N models' class probabilities, each model trained with its own
    fixed Gaussian noise N(0, σ²) on the training set (and seeing its own on the test inputs).

    :param scores: class probabilities [n, N, classes] in [0, 1] (softmax outputs)
    :return: predictions int64 [n] and radii float64 [n]: with probability at least 1 − alpha, no
        backdoor whose trigger over the training set and the test input has an L2 norm below the
        radius (in the units of the inputs) changes the prediction
    """
    scores = _numpy("scores", scores)
    if scores.ndim != 3 or not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"scores must be floating probabilities [n, models, classes], "
                         f"got {scores.dtype} of shape {scores.shape}")
    _check_probability("scores", scores)
    _check_probability("alpha", alpha, low_open=True, high_open=True)
    return rab.certify(scores, sigma, alpha)


# --- metrics: docs/metrics.md --------------------------------------------------------------------------

def certified_accuracy(predictions: np.ndarray, labels: np.ndarray, radii: np.ndarray, at: Sequence[float],
                       strict: bool = False) -> np.ndarray:
    """The share of points predicted correctly with a certified radius (or poisoning size) ≥ r (> r with
    ``strict``, as RAB counts), for each r of ``at``: float64 [len(at)]; an abstention is never correct."""
    predictions, labels, radii = _per_point(predictions=predictions, labels=labels, radii=radii)
    return metrics.certified_accuracy(radii, predictions == labels, at, strict)


def average_certified_radius(predictions: np.ndarray, labels: np.ndarray, radii: np.ndarray) -> float:
    """ACR: the sum of the certified radii of the correctly predicted points over the number of points."""
    predictions, labels, radii = _per_point(predictions=predictions, labels=labels, radii=radii)
    return metrics.average_certified_radius(radii, predictions == labels)


def attack_success_rate(predictions: np.ndarray, labels: np.ndarray, target: int) -> float:
    """ASR: among triggered test images whose true class (``labels``) is not ``target``, the share
    predicted as ``target`` (NaN for none)."""
    predictions, labels = _per_point(predictions=predictions, labels=labels)
    return metrics.attack_success_rate(predictions, labels, target)


def robust_accuracy(predictions: np.ndarray, labels: np.ndarray, target: int) -> float:
    """RA: among triggered test images whose true class is not ``target``, the share predicted as their
    true class (NaN for none)."""
    predictions, labels = _per_point(predictions=predictions, labels=labels)
    return metrics.robust_accuracy(predictions, labels, target)


def defense_effectiveness_rate(asr_undefended: float, acc_undefended: float, asr: float, acc: float) -> float:
    """DER = [max(0, ASR_u − ASR_d) − max(0, ACC_u − ACC_d) + 1] / 2 of a defense (ASR ``asr``, clean
    accuracy ``acc``) against the undefended model; all four in [0, 1]."""
    for name, value in {"asr_undefended": asr_undefended, "acc_undefended": acc_undefended,
                        "asr": asr, "acc": acc}.items():
        _check_probability(name, value)
    return metrics.defense_effectiveness_rate(asr_undefended, acc_undefended, asr, acc)


# --- argument checks -------------------------------------------------------------------------------------

def _device_of(model: nn.Module) -> torch.device:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _images(name: str, x: torch.Tensor, model: nn.Module, unit: bool = False) -> torch.Tensor:
    """``x`` checked as floating images [n, C, H, W] ([C, H, W] too unless ``unit``) on the model's device."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (images as floats), got {x.dtype}")
    if x.ndim != 4 and (unit or x.ndim != 3):
        raise ValueError(f"{name} must have shape [n, C, H, W]{'' if unit else ' or [C, H, W]'}, "
                         f"got {tuple(x.shape)}")
    device = _device_of(model)
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but the model on {device}: move one of them")
    if unit and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got values in [{x.min():g}, {x.max():g}]")
    return x


def _numpy(name: str, value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    return array


def _per_point(**arrays: object) -> list[np.ndarray]:
    """The per-point arrays as numpy, checked: 1-D, of one length, tensors on one device, labels ints."""
    devices = {name: value.device for name, value in arrays.items() if isinstance(value, torch.Tensor)}
    if len(set(devices.values())) > 1:
        raise ValueError("arguments on different devices: "
                         + ", ".join(f"{name} on {device}" for name, device in devices.items()))
    out = {name: _numpy(name, value) for name, value in arrays.items()}
    length = len(out["predictions"]) if out["predictions"].ndim == 1 else None
    for name, array in out.items():
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D [points], got shape {array.shape}")
        if len(array) != length:
            raise ValueError(f"{name} has {len(array)} points, predictions {length}")
        if name != "radii":
            _check_labels(name, array, length)
    return list(out.values())


def _check_labels(name: str, labels: np.ndarray, length: int) -> None:
    if labels.ndim != 1 or len(labels) != length:
        raise ValueError(f"{name} must be 1-D with {length} entries, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        raise TypeError(f"{name} must hold integer classes, got {labels.dtype}")


def _check_probability(name: str, value: float | np.ndarray, low_open: bool = False, high_open: bool = False
                       ) -> None:
    """``value`` (a number or an array) in [0, 1], with open ends where asked; the error names ``name``."""
    array = np.asarray(value, dtype=np.float64)
    low = array <= 0 if low_open else array < 0
    high = array >= 1 if high_open else array > 1
    if np.isnan(array).any() or low.any() or high.any():
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        shown = f"{float(array):g}" if array.ndim == 0 else f"values in [{np.nanmin(array):g}, {np.nanmax(array):g}]"
        raise ValueError(f"{name} must lie in {interval}, got {shown}")


def _score_matrix(scores: np.ndarray, num_classes: int | None) -> np.ndarray:
    """A score matrix [n, models, classes] of scores, or the one-hot matrix of votes [n, models]."""
    scores = _numpy("scores", scores)
    if scores.ndim == 3:
        if not (np.issubdtype(scores.dtype, np.number) or scores.dtype == np.bool_):
            raise TypeError(f"scores must be numeric, got {scores.dtype}")
        if num_classes is not None and scores.shape[2] != num_classes:
            raise ValueError(f"scores has {scores.shape[2]} classes, num_classes says {num_classes}")
        return scores
    if scores.ndim != 2:
        raise ValueError(f"scores must be [n, models, classes] scores or [n, models] votes, got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.integer):
        raise TypeError(f"votes (scores of shape [n, models]) must be integer classes, got {scores.dtype}")
    if num_classes is None:
        raise ValueError("num_classes is needed with votes (scores of shape [n, models])")
    if scores.size and (scores.min() < 0 or scores.max() >= num_classes):
        raise ValueError(f"votes must lie in [0, num_classes) = [0, {num_classes}), "
                         f"got values in [{scores.min()}, {scores.max()}]")
    return np.eye(num_classes, dtype=np.float32)[scores]


def _shifts(shifts: Sequence[int]) -> np.ndarray:
    array = _numpy("shifts", shifts)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"shifts must be a 1-D sequence of ints (fa_shifts(k, d)), got {shifts!r}")
    return array
