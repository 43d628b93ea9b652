"""Every figure of the workflow, headless (Agg), in one style: 6 × 4.5 in, constrained layout, a light
grid, saved as PNG (150 dpi) and PDF side by side. Grids of panels (clusters per label, image galleries)
size the figure to their panels."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from robustcert.metrics import certified_accuracy  # noqa: E402

if TYPE_CHECKING:
    from robustcert.detection import Verdict

SIZE = (6, 4.5)
PANEL = (4, 3.2)
DPI = 150
CLEAN = "none"  # the attack whose curves are the clean reference in every other panel
VARIANT_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Curve:
    """The certificate TSVs of one experiment, one per replicate (seed), drawn in the colour of its
    defense: their mean, with a band of ± one standard deviation where there are several."""

    attack: str
    defense: str
    certificate: str
    frames: tuple[pd.DataFrame, ...]
    label: str | None = None

    @property
    def name(self) -> str:
        """The curve's legend entry (defense · certificate unless given)."""
        return self.label or f"{self.defense} · {self.certificate}"

    @property
    def frame(self) -> pd.DataFrame:
        """Every replicate's rows together."""
        return pd.concat(self.frames, ignore_index=True)


def plot_poison_budget(curves: Sequence[Curve], undefended: Mapping[str, float], colors: Mapping[str, str],
                       title: str, outputs: Sequence[str | Path], intervals: bool = False,
                       attack_budgets: Mapping[str, float] | None = None) -> None:
    """Certified accuracy (y) against the number of poisoned training samples (x): one panel per attack
    (small multiples, shared axes), a line per defense (its colour, the same in every figure of a run)
    and certificate (line style: the base certificate solid, its variants dashed and dotted). Each
    panel of an attack also draws, thin and grey, the same defenses on clean data, and the undefended
    model's accuracy under that attack as a dotted horizontal line. ``intervals``: each curve's 95%
    Clopper–Pearson interval over its test points (:func:`step_with_band`). ``attack_budgets``: the
    poisoned samples of each attack, marked in its panel (:func:`_mark_attack_budget`)."""
    largest = max((int(c.frame["radius"].max()) for c in curves if len(c.frame)), default=0)
    fig = _budget_panels(curves, np.arange(0, largest + 2), False, undefended, colors, intervals=intervals,
                         attack_budgets=attack_budgets)
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supxlabel("poisoned training samples (insertions or deletions)")
    fig.suptitle(title)
    _save(fig, outputs)


def plot_l2_budget(curves: Sequence[Curve], undefended: Mapping[str, float], colors: Mapping[str, str],
                   title: str, outputs: Sequence[str | Path], intervals: bool = False, points: int = 200) -> None:
    """Certified accuracy (y, radius R > r, strictly, as RAB counts) against the L2 norm r of the whole
    trigger over the training set and the test input (x), in the panels and styles of
    :func:`plot_poison_budget`."""
    fig = _budget_panels(curves, _radii(curves, points), True, undefended, colors, intervals=intervals)
    fig.supxlabel("L2 norm of the trigger over the training set and the test input (radius)")
    fig.suptitle(title)
    _save(fig, outputs)


def plot_smoothing_radius(curves: Sequence[Curve], undefended: Mapping[str, float], colors: Mapping[str, str],
                          title: str, outputs: Sequence[str | Path], intervals: bool = False,
                          points: int = 200) -> None:
    """Certified accuracy of randomized smoothing (y, radius ≥ r, as Cohen et al. count) against the L2
    radius r of a perturbation of the test input (x): a panel per attack (small multiples), a colour per
    defense, a line style per σ (each curve's ``certificate``, "σ=0.25"), the defenses without attack in
    grey and the undefended model's accuracy dotted."""
    sigmas = sorted({c.certificate for c in curves}, key=lambda label: float(label.split("=")[-1]))
    styles = dict(zip(sigmas, itertools.cycle(VARIANT_STYLES)))
    fig = _budget_panels(curves, _radii(curves, points), False, undefended, colors, styles, intervals)
    fig.supxlabel("L2 radius of the perturbation of the test input")
    fig.suptitle(title)
    _save(fig, outputs)


def _radii(curves: Sequence[Curve], points: int) -> np.ndarray:
    """Radii from 0 to a little beyond the largest certified one."""
    largest = max((float(c.frame["radius"].max()) for c in curves if len(c.frame)), default=0.0)
    return np.linspace(0.0, max(largest, 1e-3) * 1.05, points)


def _budget_panels(curves: Sequence[Curve], budgets: np.ndarray, strict: bool, undefended: Mapping[str, float],
                   colors: Mapping[str, str], styles: Mapping[str, str] | None = None,
                   intervals: bool = False, attack_budgets: Mapping[str, float] | None = None) -> plt.Figure:
    """The panels of the budget plots: one per attack, its curves, the clean curves in grey, the undefended
    accuracy dotted, the attack's own budget where given; line style per certificate (``styles``, or by
    certificate family)."""
    attacks = list(dict.fromkeys(c.attack for c in curves))
    styles = styles or _variant_styles(c.certificate for c in curves)
    fig, axes = _panels(len(attacks))

    def shares(curve: Curve) -> list[np.ndarray]:
        return [certified_accuracy(f["radius"], f["correct"], budgets, strict=strict) for f in curve.frames]

    for ax, attack in zip(axes, attacks):
        references = [c for c in curves if c.attack == CLEAN and attack != CLEAN]
        for curve in references:
            step_with_band(ax, budgets, shares(curve), color="0.65", linewidth=0.8,
                           linestyle=styles[curve.certificate],
                           label="the same without attack" if curve is references[0] else None)
        for curve in (c for c in curves if c.attack == attack):
            step_with_band(ax, budgets, shares(curve), color=colors[curve.defense],
                           linestyle=styles[curve.certificate], label=curve.name,
                           points=[len(f) for f in curve.frames] if intervals else None)
        if attack in undefended:
            ax.axhline(undefended[attack], color="black", linestyle=":", linewidth=1, label="undefended accuracy")
        ax.set(title=_mark_attack_budget(ax, attack, (attack_budgets or {}).get(attack), budgets[-1]),
               ylim=(0, 1.02), xlim=(0, budgets[-1]))
        _legend(ax, max((len(c.frames) for c in curves), default=1), intervals)
    fig.supylabel("certified accuracy")
    return fig


def _mark_attack_budget(ax: plt.Axes, attack: str, budget: float | None, right: float) -> str:
    """The attack's own budget in its panel, and the panel's title: a dashed red line where the budget
    lies on the axis (the curves read there are the certified accuracy against this very attack), or,
    where it lies beyond the largest certificate, its size in the title, where it covers no curve (no
    test point is certified against it). No budget (clean data): nothing drawn, the attack's name."""
    if not budget:
        return attack
    if budget <= right:
        ax.axvline(budget, color="tab:red", linestyle="--", linewidth=1, label="the attack's budget")
        return attack
    return f"{attack} (budget {budget:g}: beyond every certificate)"


@dataclass(frozen=True)
class PatchCurve:
    """One curve of the patch figure, one replicate: accuracy ``share`` at each patch side ``sizes`` of
    ``points`` test points. ``kind``: ``step`` (certified at every side up to the largest: patch
    smoothing), ``marker`` (certified at each listed side: PatchCleanser) or ``attack`` (accuracy under
    the empirical patch attack: dotted). Replicates are the curves of the same attack and label."""

    attack: str
    label: str
    kind: str
    sizes: np.ndarray
    share: np.ndarray
    points: int


def plot_patch_sizes(curves: Sequence[PatchCurve], title: str, outputs: Sequence[str | Path],
                     intervals: bool = False) -> None:
    """Accuracy (y) against the side of the adversarial patch (x), every patch defense and the undefended
    model on the same axes: one panel per attack (small multiples), a colour per label
    (robustcert.style.palette over them), replicates drawn as their mean with a band; ``intervals``:
    each certified curve's Clopper–Pearson interval (:func:`step_with_band`)."""
    from robustcert.style import palette

    attacks = list(dict.fromkeys(c.attack for c in curves))
    colors = palette(sorted({c.label for c in curves if c.kind != "attack"}))
    largest = _largest_side_shown(curves)
    fig, axes = _panels(len(attacks))
    seeds = 1
    for ax, attack in zip(axes, attacks):
        replicates: dict[tuple[str, str], list[PatchCurve]] = {}
        for curve in (c for c in curves if c.attack == attack):
            replicates.setdefault((curve.kind, curve.label), []).append(curve)
        for (kind, label), group in replicates.items():
            _patch_curve(ax, kind, label, group, colors.get(label, "0.35"), intervals)
            seeds = max(seeds, len(group))
        ax.set(title=attack, ylim=(0, 1.02), xlim=(0, largest + 1))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # one legend beside the panels: they share their curves, and a legend inside would hide them
    fig.legend(*_legend_entries(axes, seeds, intervals), loc="outside right center", fontsize="x-small")
    fig.supxlabel("side of the adversarial patch (pixels)")
    fig.supylabel("accuracy (dotted: attacked)")
    fig.suptitle(title)
    _save(fig, outputs)


def _largest_side_shown(curves: Sequence[PatchCurve]) -> int:
    """The x range of :func:`plot_patch_sizes`: every side a marker or attack curve has, and the step
    curves up to their last side above 0 (a step curve runs on to the image's side at 0)."""
    sides = [int(c.sizes.max()) for c in curves if len(c.sizes) and c.kind != "step"]
    for curve in (c for c in curves if c.kind == "step"):
        above = np.asarray(curve.sizes)[np.asarray(curve.share) > 0]
        sides.append(int(above.max()) + 1 if len(above) else 1)
    return max(sides, default=1)


def _patch_curve(ax: plt.Axes, kind: str, label: str, group: Sequence[PatchCurve], color: str,
                 intervals: bool) -> None:
    """One curve of :func:`plot_patch_sizes`: the mean of its replicates (a band for several)."""
    shares = [c.share for c in group]
    sizes = group[0].sizes
    if kind == "step":
        step_with_band(ax, sizes, shares, color=color, label=label, points=[c.points for c in group] if intervals else None)
        return
    mean = np.mean(shares, axis=0)
    style = {"marker": "o", "linestyle": "--"} if kind == "marker" else {"marker": "x", "linestyle": ":"}
    ax.plot(sizes, mean, color=color, label=label, **style)
    if len(shares) > 1:
        sd = np.std(shares, axis=0, ddof=1)
        ax.fill_between(sizes, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=color, alpha=0.18, linewidth=0)


def plot_certified_accuracy(frames: Mapping[str, pd.DataFrame], prefix: str | Path, max_radius: float | None = None,
                            title: str | None = None, step: float = 0.01) -> list[Path]:
    """Certified accuracy (y) against the L2 radius (x), one line per label, saved as ``prefix``.png/.pdf."""
    if max_radius is None:
        max_radius = max(math.ceil(frame["radius"].max() * 4) / 4 for frame in frames.values()) or 1.0
    radii = np.arange(0.0, max_radius + step, step)
    fig, ax = _figure()
    for label, frame in frames.items():
        ax.plot(radii, certified_accuracy(frame["radius"], frame["correct"], radii), label=label)
    ax.set(xlim=(0, max_radius), ylim=(0, 1), xlabel="radius", ylabel="certified accuracy", title=title)
    ax.legend(loc="upper right")
    paths = [Path(f"{prefix}.png"), Path(f"{prefix}.pdf")]
    _save(fig, paths)
    return paths


def plot_objective(trace: pd.DataFrame, prefix: str | Path, title: str) -> None:
    """An attack's surrogate objective per outer step (``prefix``.png and .pdf): ``f_eval`` on the fixed
    evaluation batch as faint points and its running mean (a window of an eighth of the steps, at least 5)
    as a line; ``f`` on each step's own random batch faint beneath."""
    fig, ax = _figure()
    if len(trace):
        window = max(5, len(trace) // 8)
        ax.plot(trace["step"], trace["f"], color="0.6", alpha=0.35, linewidth=0.8,
                label="f on the step's random batch")
        ax.plot(trace["step"], trace["f_eval"], ".", color="tab:blue", alpha=0.3, label="f on the fixed batch")
        ax.plot(trace["step"], trace["f_eval"].rolling(window, min_periods=1).mean(), color="tab:blue",
                linewidth=2, label=f"running mean ({window} steps)")
        ax.legend(fontsize="small")
    ax.set(xlabel="outer step", ylabel="soft certified radius (mean)", title=title)
    _save(fig, [f"{prefix}.png", f"{prefix}.pdf"])


def step_with_band(ax: plt.Axes, x: np.ndarray, replicates: Sequence[np.ndarray], label: str | None = None,
                   points: Sequence[int] | None = None, **style) -> None:
    """A step curve of the mean of ``replicates`` (one array of shares per seed), and where there are
    several, a band of ± one standard deviation in the curve's colour. With ``points`` (each replicate's
    number of test points), also the 95% Clopper–Pearson interval of the share over all of them pooled,
    as thin dashed steps (:func:`robustcert.results.clopper_pearson`)."""
    from robustcert.results import clopper_pearson

    ys = np.asarray(replicates, dtype=float)
    mean = ys.mean(axis=0)
    (line,) = ax.step(x, mean, where="post", label=label, **style)
    if len(ys) > 1:
        sd = ys.std(axis=0, ddof=1)
        ax.fill_between(x, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), step="post",
                        color=line.get_color(), alpha=0.18, linewidth=0)
    if points is not None:
        counts = np.asarray(points, dtype=float)
        pooled = pd.Series((ys * counts[:, None]).sum(axis=0) / counts.sum())
        for bound in clopper_pearson(pooled, pd.Series(counts.sum(), index=pooled.index)):
            ax.step(x, bound.to_numpy(), where="post", color=line.get_color(), linestyle=(0, (2, 2)),
                    linewidth=0.6, alpha=0.8)


def _legend(ax: plt.Axes, seeds: int, intervals: bool) -> None:
    """The panel's legend, with what the bands (replicates) and dashed steps (intervals) mean."""
    ax.legend(*_legend_entries([ax], seeds, intervals), fontsize="x-small")


def _legend_entries(axes: Sequence[plt.Axes], seeds: int, intervals: bool) -> tuple[list, list[str]]:
    """The curves of ``axes`` (each label once) and what the bands and dashed steps mean."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    handles, labels = list(entries.values()), list(entries)
    if seeds > 1:
        handles.append(Patch(color="0.5", alpha=0.3, linewidth=0))
        labels.append(f"mean of up to {seeds} seeds ± 1 sd")
    if intervals:
        handles.append(Line2D([], [], color="0.3", linestyle=(0, (2, 2)), linewidth=0.6))
        labels.append("95% Clopper–Pearson interval")
    return handles, labels


def _variant_styles(certificates: Iterable[str]) -> dict[str, str]:
    """Line style per certificate: the shortest name of each family (dpa) solid, its variants (dpa_roe) next."""
    names = sorted(set(certificates), key=lambda c: (len(c), c))
    return {name: VARIANT_STYLES[sum(1 for other in names[:i] if name.startswith(other)) % len(VARIANT_STYLES)]
            for i, name in enumerate(names)}


def _panels(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    """Small multiples: up to 3 panels a row, shared axes, a light grid."""
    columns = min(max(count, 1), 3)
    rows = math.ceil(max(count, 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PANEL[0] * columns, PANEL[1] * rows), layout="constrained",
                             sharex=True, sharey=True, squeeze=False)
    flat = list(axes.flat)
    for ax in flat:
        ax.grid(alpha=0.3)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:max(count, 1)]


def plot_cluster_grid(labels: np.ndarray, embedding: np.ndarray, cluster: np.ndarray, translated: np.ndarray,
                      title: str, outputs: Sequence[str | Path], verdict: Verdict) -> None:
    """One panel per label: its 2-D points, translated images as dots and clean ones as crosses,
    coloured by cluster; flagged labels framed in red, the true target's title in bold; the verdict
    (flagged labels, true target) in the title."""
    names = np.unique(labels)
    columns = min(5, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows + 0.8), layout="constrained",
                             squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    for ax, label in zip(axes.flat, names):
        mine = labels == label
        colours = plt.get_cmap("tab10")(cluster[mine] % 10)
        for marker, kind in (("o", True), ("x", False)):
            chosen = translated[mine] == kind
            ax.scatter(*embedding[mine][chosen].T, c=colours[chosen], marker=marker, s=4, linewidths=0.6)
        flagged = label in verdict.flagged
        ax.set_title(f"{label}{' (target)' if label == verdict.target else ''}: {len(np.unique(cluster[mine]))}"
                     f"{' flagged' if flagged else ''}", fontsize="x-small", color="tab:red" if flagged else "black",
                     fontweight="bold" if label == verdict.target else "normal")
        for spine in ax.spines.values():
            spine.set(color="tab:red" if flagged else "0.7", linewidth=1.5 if flagged else 0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    truth = f"true target {verdict.target}" if verdict.backdoored else "clean model"
    fig.suptitle(f"{title}\nflagged (red): {', '.join(map(str, verdict.flagged)) or 'none'} · {truth} · "
                 f"verdict: {verdict.name}\n(panel: label: clusters; dots translated, crosses clean)", fontsize="x-small")
    _save(fig, outputs)


def plot_translation_gallery(sources: np.ndarray, examples: np.ndarray, mean: np.ndarray, title: str,
                             outputs: Sequence[str | Path]) -> None:
    """A grid of images: the first row the source images, then per label the mean translated image
    and the sources translated into it (uint8 [k, C, H, W], [labels, k, C, H, W]; mean in [0, 1])."""
    labels, k = examples.shape[:2]
    fig, axes = plt.subplots(labels + 1, k + 1, figsize=(0.8 * (k + 1), 0.8 * (labels + 1) + 0.4),
                             layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for j in range(k):
        _image(axes[0, j + 1], sources[j] / 255.0)
    axes[0, 0].text(0.5, 0.5, "source", ha="center", va="center", fontsize="x-small")
    for t in range(labels):
        _image(axes[t + 1, 0], mean[t])
        axes[t + 1, 0].set_title(f"{t}: mean", fontsize="xx-small")
        for j in range(k):
            _image(axes[t + 1, j + 1], examples[t, j] / 255.0)
    fig.suptitle(title, fontsize="small")
    _save(fig, outputs)


def plot_noisy_examples(grid: np.ndarray, sigmas: Sequence[float], title: str, outputs: Sequence[str | Path]) -> None:
    """Test images (columns) under Gaussian noise of each σ (rows): ``grid`` [σ, k, C, H, W] in [0, 1]."""
    rows, k = grid.shape[:2]
    fig, axes = plt.subplots(rows, k, figsize=(1.1 * k + 0.6, 1.1 * rows + 0.4), layout="constrained", squeeze=False)
    for r, sigma in enumerate(sigmas):
        for j in range(k):
            _image(axes[r, j], grid[r, j])
        axes[r, 0].set_ylabel(f"σ = {sigma:g}", fontsize="small")
    fig.suptitle(title, fontsize="small")
    _save(fig, outputs)


def _image(ax: plt.Axes, image: np.ndarray) -> None:
    """A [C, H, W] image in [0, 1] (grey for one channel)."""
    ax.set_axis_on()
    ax.set_xticks([])
    ax.set_yticks([])
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))


def _figure() -> tuple[plt.Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: plt.Figure, paths: Sequence[str | Path]) -> None:
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # no creation date in a PDF: the same figure gives the same bytes
        fig.savefig(path, dpi=DPI, metadata={"CreationDate": None} if Path(path).suffix == ".pdf" else None)
    plt.close(fig)


HEADLINE_WIDTH = 7.0  # inches: the width of a report page
HEADLINE_COLORS = {"higher": "Greens", "lower": "Reds"}  # green: more is good; red: more is bad


def plot_headline(cells: pd.DataFrame, metrics: Mapping[str, tuple[str, str]], outputs: Sequence[str | Path]) -> None:
    """Heat maps of the headline numbers, one panel per metric, stacked, :data:`HEADLINE_WIDTH` wide:
    a row per experiment (``row``; undefended rows first), a column per attack (``column``; those with
    no number in a panel left out of it), each cell annotated, grey where the number is not defined. ``metrics`` maps a metric to its title and whether
    ``higher`` or ``lower`` is better, which the title says and the colour map follows
    (:data:`HEADLINE_COLORS`). ``cells`` has the columns ``row``, ``column``, ``metric`` and ``value``."""
    columns = list(dict.fromkeys(cells["column"])) or ["-"]
    panels = []
    for metric in metrics:
        chosen = cells[cells["metric"] == metric]
        rows = sorted(dict.fromkeys(chosen["row"]), key=lambda r: "undefended" not in r) or ["-"]
        grid = chosen.pivot(index="row", columns="column", values="value").reindex(index=rows, columns=columns)
        grid = grid.loc[:, grid.notna().any()] if grid.notna().any().any() else grid  # no column without a number
        panels.append((metric, grid))
    heights = [0.2 * len(grid) + 0.9 for _, grid in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(HEADLINE_WIDTH, sum(heights) + 0.3), layout="constrained",
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, (metric, grid) in zip(axes[:, 0], panels):
        title, better = metrics[metric]
        cmap = plt.get_cmap(HEADLINE_COLORS[better]).copy()
        cmap.set_bad("0.9")
        values = np.ma.masked_invalid(grid.to_numpy(dtype=float))
        image = ax.imshow(values, vmin=0, vmax=1, cmap=cmap, aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
            ax.text(j, i, "–" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="0.5" if np.isnan(value) else "white" if value > 0.6 else "black")
        ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=25, ha="right", fontsize=7)
        ax.set_yticks(range(len(grid)), grid.index, fontsize=7)
        ax.tick_params(length=0)
        ax.set_title(f"{title} ({better} is better)", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.9, aspect=12, pad=0.01).ax.tick_params(labelsize=7)
    _save(fig, outputs)
