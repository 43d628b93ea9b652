"""Training the base models of a partitioned training set, one shard of subsets per job.

Two strategies reach the same weights for the same seeds (within float tolerance):
- ``sequential``: one model after another with a lean loop over in-memory tensors (channels_last,
  no DataLoader). Fastest on CPU.
- ``batched``: every model of the shard at once, as one ``torch.func.vmap`` over stacked
  parameters, with a functional SGD identical to ``torch.optim.SGD``. A small model leaves most of
  a GPU idle; stacking K of them fills it. Models whose partitions differ in size simply sit out
  the steps they have no batch for.
``auto`` picks ``batched`` on CUDA and ``sequential`` elsewhere.

Randomness is per model: model j is initialised under ``torch.manual_seed(seed + j)`` and draws
its batch order, crops, flips and the objective's noise from its own generator seeded likewise, in a
fixed order (once, before the first epoch: the objective's fixed draws on the model's training set,
if it has any; per epoch: permutation; per batch: crop offsets, then flips, then the objective's draws).
The steps pass ``seed`` = :func:`robustcert.config.derive_seed` of the config's seed.

What a step minimises is a training objective (:data:`OBJECTIVES`, by name): it perturbs the
augmented batch (drawing from the model's generator) and turns logits into a loss. An objective whose
perturbation attacks the model being trained (``needs_model``: PGD adversarial training) gets the
model and the labels too; it trains with the ``sequential`` strategy only (``auto`` picks it on every
device, ``batched`` is refused), since the batched step has no module to attack. An objective with a
schedule over epochs has ``at_epoch(epoch)``, the objective of that epoch.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap
from torch.utils.data import DataLoader, Dataset

from robustcert import patchcleanser
from robustcert.artifacts import ArtifactError, load_checkpoint, save_checkpoint
from robustcert.data import Split
from robustcert.models import build_model
from robustcert.partition import Partition
from robustcert.patch import Ablation, random_ablation
from robustcert.pgd import NORMS, PGD, cross_entropy_loss
from robustcert.smoothing_objectives import Macer, SmoothAdv

log = logging.getLogger(__name__)
STRATEGIES = ("auto", "sequential", "batched")
OPTIMIZERS = ("sgd", "adam")
CHECKPOINT_FORMAT = "robustcert.shard/1"


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (docs/methods.md §2 defaults: SGD 0.1, nesterov 0.9, wd 5e-4, ×0.2 at 60/120/160).

    ``optimizer`` ``adam`` is ``torch.optim.Adam`` (betas 0.9/0.999, eps 1e-8, L2 weight decay; RAB's
    recipe); ``momentum`` and ``nesterov`` are SGD's only.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: Sequence[int] = (60, 120, 160)
    gamma: float = 0.2
    crop_padding: int = 0
    flip: bool = False
    objective: str = "cross_entropy"
    noise_sigma: float = 0.0
    # the attack of objective "adversarial" (reference: Soremekun et al.'s L2, ε 0.5, 20 steps of 1.5)
    pgd_norm: str = "l2"
    pgd_epsilon: float = 0.5
    pgd_step_size: float = 1.5
    pgd_steps: int = 20
    pgd_random_start: bool = False
    # objective "macer" (robustcert.smoothing_objectives.Macer; noise σ = noise_sigma)
    macer_k: int = 16
    macer_lambda: float = 16.0
    macer_beta: float = 16.0
    macer_gamma: float = 8.0
    macer_lambda_schedule: Sequence[tuple[int, float]] = ()
    # objective "smoothadv" (robustcert.smoothing_objectives.SmoothAdv; noise σ = noise_sigma)
    smoothadv_m: int = 1
    smoothadv_epsilon: float = 0.25
    smoothadv_steps: int = 2
    smoothadv_warmup: int = 10
    # the ablation of objective "ablation" (robustcert.patch: kind, side s, regions per ablation k)
    ablation_kind: str = "band"
    ablation_size: int = 1
    ablation_count: int = 1
    # objective "masking" (robustcert.patchcleanser: the mask set of a patch of side masking_patch, k per axis)
    masking_patch: int = 1
    masking_k: int = 1
    masking_value: float = 0.0
    seed: int = 0
    strategy: str = "auto"
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {OPTIMIZERS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown training objective {self.objective!r}; known: {sorted(OBJECTIVES)}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of an epoch (MultiStepLR)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


class Objective(Protocol):
    """What a training step minimises: a perturbation of the batch, then a loss of the logits.

    ``needs_model`` (optional, False when absent): ``perturb`` also receives ``model`` and ``y``, the
    model being trained and the batch's labels, as keywords.
    ``prepare`` (optional, the identity when absent): the training set a model trains on, made once
    from its (content-ordered) training images before its first epoch (a fixed noise draw per example).
    """

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The inputs the model sees for the augmented batch ``x`` (random draws from ``generator``)."""

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's loss."""



@dataclass(frozen=True)
class CrossEntropy:
    """Plain cross-entropy on the batch as it is."""

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)


@dataclass(frozen=True)
class GaussianAugmentation(CrossEntropy):
    """Cross-entropy on x + N(0, σ²I), fresh noise per batch, unclipped (Cohen et al.'s training of f)."""

    sigma: float

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x + self.sigma * torch.randn(x.shape, generator=generator).to(x.device)


@dataclass(frozen=True)
class AdversarialTraining(CrossEntropy):
    """Cross-entropy on PGD adversarial examples of the model being trained (Madry et al.): each batch
    is replaced by the attack's maximiser of the model's loss of the true labels. The attack runs with
    the model in eval mode (as Madry's ``robustness`` library does) and draws its random start, if
    any, from the model's generator."""

    attack: PGD
    needs_model: ClassVar[bool] = True

    def perturb(self, x: torch.Tensor, generator: torch.Generator, *, model: nn.Module,
                y: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return self.attack.perturb(cross_entropy_loss(model, y), x, generator=generator)
        finally:
            model.train(was_training)


@dataclass(frozen=True)
class AblationTraining(CrossEntropy):
    """Cross-entropy on ablated inputs (Levine & Feizi's training of the base classifier): the whole
    mini-batch keeps the region of one random position, encoded with 2C channels (robustcert.patch)."""

    kind: str
    size: int
    count: int

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        ablation = Ablation(self.kind, self.size, x.shape[-2], x.shape[-1], self.count)
        return random_ablation(ablation, x, generator)


@dataclass(frozen=True)
class MaskingAugmentation(CrossEntropy):
    """Cross-entropy on masked inputs (PatchCleanser's masked training): each image of the mini-batch
    gets the union of two masks drawn from the mask set of a ``patch`` × ``patch`` patch, ``k`` masks per
    axis (robustcert.patchcleanser), set to ``value``."""

    patch: int
    k: int
    value: float

    def perturb(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        masks = patchcleanser.mask_tensor(x.shape[-2], x.shape[-1], self.patch, self.k, x.device)
        drawn = patchcleanser.random_masks(masks, len(x), generator)
        return patchcleanser.apply_masks(x, torch.arange(len(x), device=x.device), drawn, self.value)


@dataclass(frozen=True)
class FixedNoise(CrossEntropy):
    """Cross-entropy on the training set plus ONE draw of N(0, σ²I) per training example, made before
    the first epoch and kept for every epoch (RAB, Weber et al.; docs/methods.md §3), unclipped. Each model
    draws its own: model j's noise is the first draw of its generator (seed + j)."""

    sigma: float

    def prepare(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The noisy training images the model trains on in every epoch."""
        return x + self.sigma * torch.randn(x.shape, generator=generator).to(x.device)


def training_attack(cfg: TrainConfig) -> PGD:
    """The PGD of a recipe's ``pgd_*`` fields (adversarial training, and the adversarial accuracy it is judged by)."""
    if cfg.pgd_norm not in NORMS:
        raise ValueError(f"train.pgd_norm {cfg.pgd_norm!r} is not one of {NORMS}")
    return PGD(cfg.pgd_norm, cfg.pgd_epsilon, cfg.pgd_step_size, cfg.pgd_steps, cfg.pgd_random_start)


OBJECTIVES: dict[str, Callable[[TrainConfig], Objective]] = {
    "cross_entropy": lambda cfg: CrossEntropy(),
    "gaussian_augmentation": lambda cfg: GaussianAugmentation(cfg.noise_sigma),
    "adversarial": lambda cfg: AdversarialTraining(training_attack(cfg)),
    "macer": lambda cfg: Macer(cfg.noise_sigma, cfg.macer_k, cfg.macer_lambda, cfg.macer_beta, cfg.macer_gamma,
                               tuple(map(tuple, cfg.macer_lambda_schedule))),
    "smoothadv": lambda cfg: SmoothAdv(cfg.noise_sigma, cfg.smoothadv_m, cfg.smoothadv_epsilon, cfg.smoothadv_steps,
                                       cfg.smoothadv_warmup),
    "ablation": lambda cfg: AblationTraining(cfg.ablation_kind, cfg.ablation_size, cfg.ablation_count),
    "fixed_noise": lambda cfg: FixedNoise(cfg.noise_sigma),
    "masking": lambda cfg: MaskingAugmentation(cfg.masking_patch, cfg.masking_k, cfg.masking_value),
}


def objective_of(cfg: TrainConfig) -> Objective:
    """The objective a recipe names."""
    return OBJECTIVES[cfg.objective](cfg)


def objective_at(cfg: TrainConfig, epoch: int) -> Objective:
    """The objective a recipe names, as it is in ``epoch`` (for those with a schedule)."""
    objective = objective_of(cfg)
    return objective.at_epoch(epoch) if hasattr(objective, "at_epoch") else objective


@dataclass
class ModelSpec:
    """What is needed to rebuild a base model."""

    arch: str
    in_channels: int
    num_classes: int
    image_size: int

    @classmethod
    def for_split(cls, arch: str, split: Split) -> ModelSpec:
        """The architecture for a split's images and classes."""
        channels, height, _ = split.image_shape
        return cls(arch, channels, split.num_classes, height)

    def build(self, mean: Sequence[float], std: Sequence[float]) -> nn.Sequential:
        """A freshly initialised model (under the caller's RNG state)."""
        return build_model(self.arch, self.in_channels, self.num_classes, self.image_size, mean, std)


@dataclass
class _Run:
    """One model's data and random stream."""

    subset: int
    x: torch.Tensor
    y: torch.Tensor
    generator: torch.Generator = field(repr=False)


def train_shard(images: np.ndarray, labels: np.ndarray, partition: Partition, subsets: Sequence[int],
                spec: ModelSpec, cfg: TrainConfig, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Train the models of ``subsets`` and return their state dicts (on the CPU), in that order."""
    strategy = resolve_strategy(cfg.strategy, device, objective_of(cfg))
    runs, models = model_runs(images, labels, partition, subsets, cfg, device), []
    for j in subsets:
        torch.manual_seed(cfg.seed + j)
        models.append(spec.build(partition.mean[j], partition.std[j]).to(device))
    log.info("training %d models (subsets %s..%s) with strategy %s on %s", len(runs), subsets[0],
             subsets[-1], strategy, device)
    train = _train_batched if strategy == "batched" else _train_sequential
    models = train(models, runs, cfg, device)
    return [{name: t.detach().cpu() for name, t in m.state_dict().items()} for m in models]


def model_runs(images: np.ndarray, labels: np.ndarray, partition: Partition, subsets: Sequence[int],
               cfg: TrainConfig, device: torch.device) -> list[_Run]:
    """Each model's training set (after the objective's ``prepare``, if any) and random stream."""
    objective = objective_of(cfg)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    runs = []
    for j in subsets:
        idx = torch.from_numpy(partition.subset(j))
        generator = torch.Generator().manual_seed(cfg.seed + j)
        x = (x_all[idx].float() / 255.0).to(device)
        x = objective.prepare(x, generator) if hasattr(objective, "prepare") else x
        runs.append(_Run(j, x, y_all[idx].to(device), generator))
    return runs


def resolve_strategy(strategy: str, device: torch.device, objective: Objective | None = None) -> str:
    """``auto`` → batched on CUDA, sequential elsewhere (and for an objective that needs the model)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown training strategy {strategy!r}; known: {STRATEGIES}")
    if getattr(objective, "needs_model", False):
        if strategy == "batched":
            raise ValueError(f"training objective {type(objective).__name__} attacks the model being trained, "
                             "which the batched strategy cannot: set train.strategy to auto or sequential")
        return "sequential"
    if strategy == "auto":
        return "batched" if device.type == "cuda" else "sequential"
    return strategy


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of sample indices: a permutation cut into batches (the last may be short)."""
    return list(torch.randperm(n, generator=generator).split(batch_size)) if n else []


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding and horizontal flip, per sample.

    Draws, in order: crop offsets [b, 2], flips [b] (each only when enabled).
    """
    b, _, h, w = x.shape
    if padding:
        offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).to(x.device)
        padded = F.pad(x, (padding,) * 4)
        rows = (offsets[:, 0:1] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (offsets[:, 1:2] + torch.arange(w, device=x.device))[:, None, None, :]
        channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[torch.arange(b, device=x.device)[:, None, None, None], channels, rows, cols]
    if flip:
        flips = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x


def _batches(run: _Run, cfg: TrainConfig, objective: Objective, model: nn.Module | None = None
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's perturbed batches (lazily: an objective that attacks ``model`` sees its current weights)."""
    for batch in epoch_batches(len(run.y), cfg.batch_size, run.generator):
        batch = batch.to(run.x.device)
        x, y = augment(run.x[batch], cfg.crop_padding, cfg.flip, run.generator), run.y[batch]
        context = {"model": model, "y": y} if getattr(objective, "needs_model", False) else {}
        yield objective.perturb(x, run.generator, **context), y


def _train_sequential(models: list[nn.Module], runs: list[_Run], cfg: TrainConfig,
                      device: torch.device) -> list[nn.Module]:
    return [_fit(model, cfg, lambda objective, run=run, model=model: _batches(run, cfg, objective, model),
                 f"model {run.subset}")
            for model, run in zip(models, runs)]


def _fit(model: nn.Module, cfg: TrainConfig,
         epoch: Callable[[Objective], Iterable[tuple[torch.Tensor, torch.Tensor]]], name: str = "model") -> nn.Module:
    """Train one model for ``cfg.epochs``: each epoch, one optimiser step per perturbed batch that
    ``epoch(objective)`` yields, at the epoch's learning rate and objective (its loss, training accuracy
    and seconds logged per epoch)."""
    model.to(memory_format=torch.channels_last).train()
    optimizer = _optimizer(model, cfg)
    for e in range(cfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(e)
        objective, tally = objective_at(cfg, e), _EpochTally(f"{name} epoch {e + 1}/{cfg.epochs}")
        for x, y in epoch(objective):
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = objective.loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tally.add(loss.detach() * len(y), _correct(logits.detach(), y), len(y))
        tally.log()
    return model.to(memory_format=torch.contiguous_format)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many of ``y`` the logits predict, each sample counted as the share of its copies predicted
    right (objectives such as MACER and SmoothAdv score several noisy copies of each sample, in order)."""
    copies = len(logits) // len(y)
    return (logits.argmax(dim=1) == y.repeat_interleave(copies)).float().view(len(y), copies).mean(dim=1).sum()


class _EpochTally:
    """One epoch's summed loss, correct predictions and samples (kept on the device until the end of
    the epoch) and its start time; :meth:`log` writes ``loss, accuracy, seconds`` to the job's log."""

    def __init__(self, what: str) -> None:
        self.what, self.start, self.loss, self.correct, self.samples = what, time.perf_counter(), 0.0, 0, 0

    def add(self, loss_sum: torch.Tensor, correct: torch.Tensor, samples: int) -> None:
        self.loss, self.correct, self.samples = self.loss + loss_sum, self.correct + correct, self.samples + samples

    def log(self) -> None:
        samples = max(self.samples, 1)
        log.info("%s: loss %.4f, training accuracy %.3f, %.1f s", self.what, float(self.loss) / samples,
                 float(self.correct) / samples, time.perf_counter() - self.start)


def train_streamed(images: Dataset, spec: ModelSpec, cfg: TrainConfig, device: torch.device, workers: int,
                   mean: Sequence[float], std: Sequence[float]) -> dict[str, torch.Tensor]:
    """Train one model on a dataset read batch by batch (``images[i]``: an augmented image tensor in
    [0, 1] and its label; a file-backed split's :meth:`~robustcert.imagefolder.ImageFiles.training_set`)
    by a DataLoader with ``workers`` processes, under the recipe's objective; its state dict (CPU).

    Randomness: the model is initialised under ``torch.manual_seed(cfg.seed)``, which also seeds the
    transforms (in the loader's workers, from the DataLoader's seed); the order and the objective's
    draws come from a generator seeded with ``cfg.seed``. The same seed and ``workers`` give the same model.
    """
    objective = objective_of(cfg)
    if hasattr(objective, "prepare"):
        raise ValueError(f"training objective {cfg.objective!r} draws a fixed perturbation per training "
                         "example, which a dataset read batch by batch cannot keep")
    torch.manual_seed(cfg.seed)
    model = spec.build(mean, std).to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(images, batch_size=cfg.batch_size, shuffle=True, generator=generator, num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=device.type == "cuda")
    log.info("training one model on %d images read by %d loader workers on %s", len(images), workers, device)

    def epoch(objective: Objective) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            context = {"model": model, "y": y} if getattr(objective, "needs_model", False) else {}
            yield objective.perturb(x, generator, **context), y

    _fit(model, cfg, epoch)
    return {name: t.detach().cpu() for name, t in model.state_dict().items()}


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _train_batched(models: list[nn.Module], runs: list[_Run], cfg: TrainConfig,
                   device: torch.device) -> list[nn.Module]:
    """All models in lock-step: at step t every model with a t-th batch takes it.

    Models whose t-th batches have the same size go through one vmapped step together.
    """
    for model in models:
        model.train()
    params, buffers = (
        {name: v.detach() for name, v in d.items()} for d in stack_module_state(models))
    state = _optimizer_state(params, cfg, len(models), device)
    base = copy.deepcopy(models[0]).to("meta")
    for epoch in range(cfg.epochs):
        lr = cfg.lr_at(epoch)
        objective = objective_at(cfg, epoch)
        step = _batched_step(base, objective)
        batches = [list(_batches(run, cfg, objective)) for run in runs]
        tally = _EpochTally(f"{len(models)} models, epoch {epoch + 1}/{cfg.epochs}")
        for t in range(max(map(len, batches), default=0)):
            for members in _groups_by_batch_size(batches, t):
                idx = torch.tensor(members, device=device)
                x = torch.stack([batches[i][t][0] for i in members])
                y = torch.stack([batches[i][t][1] for i in members])
                p, b, m = ({name: v[idx] for name, v in d.items()} for d in (params, buffers, state))
                grads, (losses, correct) = step(p, b, x, y)  # updates the BatchNorm statistics in b
                tally.add((losses * y.shape[1]).sum(), correct.sum(), y.numel())
                p, m = (_adam_step if cfg.optimizer == "adam" else _sgd_step)(p, grads, m, lr, cfg)
                for store, group in ((params, p), (buffers, b), (state, m)):
                    for name, value in group.items():
                        store[name][idx] = value
        tally.log()
    for i, model in enumerate(models):
        model.load_state_dict({**{n: v[i] for n, v in params.items()}, **{n: v[i] for n, v in buffers.items()}})
    return models


def _batched_step(base: nn.Module, objective: Objective) -> Callable:
    """The vmapped gradient of the objective's loss over stacked parameters, buffers and batches, with
    each model's loss and correct predictions on its batch."""

    def loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        logits = functional_call(base, (p, b), (x,))
        value = objective.loss(logits, y)
        return value, (value.detach(), _correct(logits.detach(), y))

    return vmap(grad(loss, has_aux=True), in_dims=(0, 0, 0, 0), randomness="error")


def _groups_by_batch_size(batches: list[list], t: int) -> list[list[int]]:
    groups: dict[int, list[int]] = {}
    for i, model_batches in enumerate(batches):
        if t < len(model_batches):
            groups.setdefault(len(model_batches[t][1]), []).append(i)
    return list(groups.values())


def _optimizer_state(params: dict, cfg: TrainConfig, count: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The stacked optimiser state of ``count`` models, one flat dict: SGD's momenta, or Adam's moments and
    each model's step count (models that sit out a step keep theirs)."""
    if cfg.optimizer == "adam":
        return {**{f"exp_avg/{n}": torch.zeros_like(p) for n, p in params.items()},
                **{f"exp_avg_sq/{n}": torch.zeros_like(p) for n, p in params.items()},
                "step": torch.zeros(count, device=device)}
    return {f"momentum/{n}": torch.zeros_like(p) for n, p in params.items()}


def _sgd_step(params: dict, grads: dict, state: dict, lr: float, cfg: TrainConfig) -> tuple[dict, dict]:
    """One ``torch.optim.SGD`` step (dampening 0) on stacked tensors: new parameters and momenta."""
    new_params, new_state = {}, {}
    for name, p in params.items():
        g = grads[name] + cfg.weight_decay * p if cfg.weight_decay else grads[name]
        if cfg.momentum:
            new_state[f"momentum/{name}"] = buf = cfg.momentum * state[f"momentum/{name}"] + g
            g = g + cfg.momentum * buf if cfg.nesterov else buf
        new_params[name] = p - lr * g
    return new_params, new_state


def _adam_step(params: dict, grads: dict, state: dict, lr: float, cfg: TrainConfig,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> tuple[dict, dict]:
    """One ``torch.optim.Adam`` step (no amsgrad) on stacked tensors: new parameters and state."""
    step = state["step"] + 1
    new_params, new_state = {}, {"step": step}
    for name, p in params.items():
        g = grads[name] + cfg.weight_decay * p if cfg.weight_decay else grads[name]
        m = state[f"exp_avg/{name}"].lerp(g, 1 - betas[0])
        v = betas[1] * state[f"exp_avg_sq/{name}"] + (1 - betas[1]) * g * g
        shape = (-1,) + (1,) * (p.dim() - 1)
        correction1 = (1 - betas[0] ** step).view(shape)
        correction2 = (1 - betas[1] ** step).view(shape)
        new_params[name] = p - lr / correction1 * m / (v.sqrt() / correction2.sqrt() + eps)
        new_state[f"exp_avg/{name}"], new_state[f"exp_avg_sq/{name}"] = m, v
    return new_params, new_state


def save_shard(path: str, spec: ModelSpec, subsets: Sequence[int], states: list[dict[str, torch.Tensor]],
               trained_for: Mapping[str, Any]) -> None:
    """Write a shard's models as a checkpoint that loads with ``weights_only=True``, with what they were
    trained for (``trained_for``: the method and what else makes them fit one use only, an ablation, say)."""
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "spec": asdict(spec), "subsets": list(map(int, subsets)),
                           "trained_for": dict(trained_for), "states": states})


def load_shard(path: str, purpose: Mapping[str, Any] | None = None) -> tuple[ModelSpec, list[int], list[nn.Module]]:
    """The spec, subset ids and models (in eval mode, on the CPU) of a shard checkpoint; with a
    ``purpose`` (the method, and any of the architecture ``arch``, the ``in_channels`` and what else the
    checkpoint records it was trained for), a checkpoint trained for another is refused naming the file."""
    payload = load_checkpoint(path, CHECKPOINT_FORMAT)
    if purpose is not None:
        _require_purpose(path, payload, purpose)
    try:
        spec = ModelSpec(**payload["spec"])
        models = []
        for state in payload["states"]:
            channels = state["0.mean"].shape[1]
            model = spec.build([0.0] * channels, [1.0] * channels)
            model.load_state_dict(state)
            models.append(model.eval())
    except (KeyError, TypeError, RuntimeError, ValueError) as err:
        raise ArtifactError(f"{path}: checkpoint does not hold the models it describes ({err})") from None
    if len(models) != len(payload["subsets"]):
        raise ArtifactError(f"{path}: {len(models)} models for {len(payload['subsets'])} subsets")
    return spec, list(payload["subsets"]), models


def _require_purpose(path: str, payload: Mapping[str, Any], purpose: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose record of what it was trained for differs from ``purpose`` on any key."""
    spec = payload.get("spec") if isinstance(payload.get("spec"), dict) else {}
    recorded = {**{key: spec.get(key) for key in ("arch", "in_channels")}, **payload.get("trained_for", {})}
    differing = {key: recorded.get(key) for key, value in purpose.items() if recorded.get(key) != value}
    if differing:
        wanted = {key: purpose[key] for key in differing}
        raise ArtifactError(f"{path}: a checkpoint trained for {differing}, loaded for {wanted}: "
                            "it belongs to another model (retrain it, or point to the right file)")
