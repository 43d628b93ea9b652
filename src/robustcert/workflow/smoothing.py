"""Randomized smoothing (rules/smoothing.smk; Cohen, Rosenfeld & Kolter 2019): one base classifier per
σ trained on the (poisoned) training set under that noise (Gaussian augmentation, or MACER or SmoothAdv as
``train.objective`` names); CERTIFY and PREDICT on every ``skip``-th test point, sharded into jobs of
``points_per_job`` and gathered; results rows per σ; a table and a plot per defense.

Certify TSVs have the reference's columns ``idx label predict radius correct``
(:data:`robustcert.evaluate.CERTIFICATE`; radius at full precision) without its wall-clock ``time``,
so that a rerun writes the same bytes: the time of each job is in ``results/benchmarks/``. Predict
TSVs: ``idx label predict correct`` (:data:`robustcert.evaluate.PREDICTIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from robustcert.config import Config, canonical, derive_seed, refuse
from robustcert.data import expected_test_size
from robustcert.results import Metric, on_axis, tidy_rows, write_rows
from robustcert.workflow import compute_prologue, log
from robustcert.workflow.common import common_params, experiments_of, row_keys, sigma_label
from robustcert.workflow.undefended import BesideUndefended, curves_beside_undefended

METHOD = "smoothing"
CERTIFICATE = "cohen_certify"
SIGMA = "<results>/smoothing/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}"
MODEL = SIGMA + "/model.pt"
SHARD = SIGMA + "/{algorithm}/shard_{shard}.tsv"
GATHERED = SIGMA + "/{algorithm}.tsv"
ROW = "<results>/tables/rows/{dataset}/seed_{seed}/{attack}/{defense}/smoothing_sigma_{sigma}.tsv"
PLOT = "<results>/plots/{dataset}/seed_{seed}/smoothing/{attack}/{defense}.{ext}"
NOISY_EXAMPLES = "<results>/plots/{dataset}/smoothing/noisy_examples.{ext}"
RADIUS_PLOT = "<results>/plots/{dataset}/smoothing_radius.{ext}"
# the keys of train.objective of each objective, and the TrainConfig field each sets
OBJECTIVE_FIELDS = {
    "gaussian_augmentation": {},
    "macer": {"k": "macer_k", "lambda": "macer_lambda", "lambda_schedule": "macer_lambda_schedule",
              "beta": "macer_beta", "gamma": "macer_gamma"},
    "smoothadv": {"m": "smoothadv_m", "epsilon": "smoothadv_epsilon", "steps": "smoothadv_steps",
                  "warmup": "smoothadv_warmup"},
}
# what CERTIFY reads of the defense (PREDICT: all but n0)
MONTE_CARLO_KEYS = ("n0", "n", "alpha", "batch_size", "bf16", "compile", "skip", "max", "points_per_job")


def certified_points(n_test: int, skip: int, limit: int | None, indices: Sequence[int] | None = None) -> np.ndarray:
    """Indices of the certified test points: every ``skip``-th of the test set (or of the given
    ``indices``, e.g. a reference's validation half), at most ``limit`` (the reference's --skip/--max)."""
    candidates = np.arange(n_test) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(candidates) and candidates.max() >= n_test:
        raise ValueError(f"test indices up to {candidates.max()} given, but the test set has {n_test} points")
    return candidates[::skip][:limit]


def test_point_params(skip: int, limit: int | None, indices: Sequence[int] | None = None) -> dict[str, int]:
    """Which test points a row's numbers are on, as counts: every ``skip``-th (of the ``test_indices``
    given, their count), at most ``max`` (the row's ``n_test`` says how many)."""
    return {**({"test_indices": len(indices)} if indices is not None else {}), "skip": skip,
            **({"max": limit} if limit else {})}


def point_shards(n_test: int, settings: Mapping[str, Any]) -> list[np.ndarray]:
    """The certified points cut into jobs of ``points_per_job``."""
    points = certified_points(n_test, settings["skip"], settings["max"], settings.get("test_indices"))
    per_job = settings["points_per_job"]
    return [points[i:i + per_job] for i in range(0, len(points), per_job)]


class Plan(BesideUndefended):
    """The smoothing jobs, rows and plots of a config."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.experiments = experiments_of(config, [METHOD])
        refuse([problem for name, defense in config["defenses"].items() if defense["method"] == METHOD
                for problem in [*objective_problems(f"defenses.{name}.train.objective", defense["train"]["objective"]),
                                *schedule_problems(name, defense), *sample_problems(name, defense)]]
               + released_problems(config))

    def released(self) -> list[str]:
        """The smoothing defenses whose base classifiers were trained elsewhere (``checkpoint``)."""
        return [name for name, d in self.config["defenses"].items() if d["method"] == METHOD and d.get("checkpoint")]

    def trained(self) -> list[str]:
        """The smoothing defenses whose base classifiers this workflow trains."""
        return [name for name, d in self.config["defenses"].items() if d["method"] == METHOD and not d.get("checkpoint")]

    def released_checkpoint(self, wildcards: Any) -> str:
        """The released checkpoint of a σ: the defense's ``checkpoint`` with {sigma} as the
        reference's folders spell it (0.25, 1.00)."""
        return self.config["defenses"][wildcards.defense]["checkpoint"].format(sigma=f"{float(wildcards.sigma):.2f}")

    def sigmas(self, defense: str) -> list[float]:
        """The σ of a defense."""
        return list(self.config["defenses"][defense]["sigmas"])

    def rows(self) -> list[str]:
        """The row file of every experiment and σ."""
        return [ROW.format(**vars(e), sigma=sigma_label(s)) for e in self.experiments for s in self.sigmas(e.defense)]

    def plots(self) -> list[str]:
        """The certified-accuracy plot of every experiment."""
        return [PLOT.format(**vars(e), ext=ext) for e in self.experiments for ext in ("png", "pdf")]

    def cells(self, dataset: str | None = None) -> list[tuple[Any, float]]:
        """(experiment, σ) of every smoothed classifier, of one dataset or of all."""
        return [(e, s) for e in self.experiments if dataset in (None, e.dataset) for s in self.sigmas(e.defense)]

    def radius_plots(self) -> list[str]:
        """The small multiples of every dataset: certified accuracy against the radius, a panel per attack."""
        datasets = dict.fromkeys(e.dataset for e in self.experiments)
        return [RADIUS_PLOT.format(dataset=d, ext=ext) for d in datasets for ext in ("png", "pdf")]

    def dataset_certificates(self, wildcards: Any) -> list[str]:
        """The gathered certify TSV of every experiment and σ of a dataset (the radius plot's curves)."""
        return [GATHERED.format(**vars(e), sigma=sigma_label(s), algorithm="certify")
                for e, s in self.cells(wildcards.dataset)]

    def dataset_curves(self, wildcards: Any) -> list[dict[str, str]]:
        """What each of those TSVs is: attack, defense and σ (as the curve's certificate)."""
        return [{"attack": e.attack, "defense": e.defense, "certificate": f"σ={s:g}"}
                for e, s in self.cells(wildcards.dataset)]

    def noisy_examples(self) -> list[str]:
        """The picture of noisy test images of every dataset that smoothing certifies."""
        datasets = dict.fromkeys(e.dataset for e in self.experiments)
        return [NOISY_EXAMPLES.format(dataset=d, ext=ext) for d in datasets for ext in ("png", "pdf")]

    def noisy_example_settings(self, wildcards: Any) -> dict[str, Any]:
        """What the noisy-examples picture reads: report.noisy_examples."""
        return canonical(self.config["report"]["noisy_examples"])

    def recipe(self, wildcards: Any) -> dict[str, Any]:
        """What training reads: the architecture, the recipe, and σ."""
        defense = self.config["defenses"][wildcards.defense]
        return canonical({"arch": defense["arch"], "train": defense["train"], "sigma": float(wildcards.sigma)})

    def monte_carlo(self, wildcards: Any) -> dict[str, Any]:
        """What CERTIFY reads: the Monte Carlo settings and how the test points are sharded."""
        defense = self.config["defenses"][wildcards.defense]
        return {key: defense[key] for key in MONTE_CARLO_KEYS}

    def predict_settings(self, wildcards: Any) -> dict[str, Any]:
        """What PREDICT reads: CERTIFY's settings but n0."""
        return {key: value for key, value in self.monte_carlo(wildcards).items() if key != "n0"}

    def shards(self, wildcards: Any) -> list[str]:
        """The shard TSVs of CERTIFY or PREDICT for one σ."""
        test_size = expected_test_size(self.config["datasets"][wildcards.dataset])
        count = len(point_shards(test_size, self.monte_carlo(wildcards)))
        return [SHARD.format(**_names(wildcards), algorithm=wildcards.algorithm, shard=i) for i in range(count)]

    def point_count(self, wildcards: Any) -> int:
        """How many test points CERTIFY and PREDICT see."""
        defense = self.config["defenses"][wildcards.defense]
        test_size = expected_test_size(self.config["datasets"][wildcards.dataset])
        return len(certified_points(test_size, defense["skip"], defense["max"]))

    def certificates(self, wildcards: Any) -> list[str]:
        """The gathered certify TSV of every σ of a defense."""
        return [GATHERED.format(**_names(wildcards, sigma=sigma_label(s)), algorithm="certify")
                for s in self.sigmas(wildcards.defense)]

    def row_keys(self, wildcards: Any) -> dict[str, str]:
        """The names that open a σ's rows."""
        return row_keys(self.config, wildcards, CERTIFICATE)

    def row_params(self, wildcards: Any) -> dict[str, Any]:
        """The parameters that change a σ's numbers."""
        defense = self.config["defenses"][wildcards.defense]
        skip, limit = defense["skip"], defense["max"]
        made = {"checkpoint": defense["checkpoint"]} if defense.get("checkpoint") else {
            "epochs": defense["train"]["epochs"], **objective_params(defense["train"]["objective"])}
        return {**common_params(self.config, wildcards), "arch": defense["arch"], **made,
                "sigma_train": float(wildcards.sigma),
                "sigma_certify": float(wildcards.sigma), "n0": defense["n0"], "n": defense["n"],
                "alpha": defense["alpha"], **test_point_params(skip, limit)}


def objective_problems(where: str, objective: Mapping[str, Any]) -> list[str]:
    """What is wrong with an objective (a smoothing defense's train.objective, a bilevel attack's
    victim; ``where`` its place in the config): keys of another objective."""
    foreign = sorted(set(objective) - {"name"} - set(OBJECTIVE_FIELDS[objective["name"]]))
    return [f"{where}.{key}: not a setting of {objective['name']!r} "
            f"(its settings: {sorted(OBJECTIVE_FIELDS[objective['name']]) or 'none'})" for key in foreign]


def schedule_problems(name: str, defense: Mapping[str, Any]) -> list[str]:
    """Schedules of a defense's objective that its training never reaches: a SmoothAdv warm-up longer
    than the epochs (ε never reaches its value), MACER λ switches at or after the last epoch."""
    objective, epochs = defense["train"]["objective"], defense["train"]["epochs"]
    where = f"defenses.{name}.train.objective"
    problems = []
    if objective.get("warmup", 0) > epochs:
        problems.append(f"{where}.warmup is {objective['warmup']}, longer than the {epochs} epochs of train.epochs: "
                        "ε would never reach its full value")
    late = [pair for pair in objective.get("lambda_schedule", []) if pair[0] >= epochs]
    if late:
        problems.append(f"{where}.lambda_schedule {late} starts at or after epoch {epochs}, the end of training "
                        f"(train.epochs {epochs}; epochs count from 0): that λ would never be used")
    return problems


def sample_problems(name: str, defense: Mapping[str, Any]) -> list[str]:
    """A Monte Carlo sample ``n`` too small for ``alpha``: even when every noisy sample votes for the top
    class the lower bound p̲_A = α^(1/n) is at most 1/2, so CERTIFY abstains on every point."""
    from robustcert.metrics import fewest_draws, highest_lower_bound

    n, alpha = defense["n"], defense["alpha"]
    bound = highest_lower_bound(n, alpha)
    if bound > 0.5:
        return []
    return [f"defenses.{name}.n is {n}, too few samples for alpha {alpha:g}: even if all of them vote for the top "
            f"class its lower bound p̲_A is {bound:.3f} ≤ 1/2, so no point could ever be certified; n must be at "
            f"least {fewest_draws(alpha, 0.5)}"]


def released_problems(config: Config) -> list[str]:
    """Experiments that would poison a released base classifier: it was trained elsewhere, on clean data."""
    return [f"experiments: defense {e.defense!r} certifies a released checkpoint, trained on clean data elsewhere; "
            f"attack {e.attack!r} of type {config['attacks'][e.attack]['type']!r} cannot poison it (use an attack of type none)"
            for e in experiments_of(config, [METHOD])
            if config["defenses"][e.defense].get("checkpoint") and config["attacks"][e.attack]["type"] != "none"]


def import_released(checkpoint_path: str, split_path: str, output: str) -> None:
    """Our model file of a base classifier trained elsewhere (robustcert.released), checked against
    the split's images and classes."""
    from robustcert import data, train
    from robustcert.artifacts import ArtifactError
    from robustcert.released import load_released

    split = data.load_split(split_path)
    arch, state = load_released(checkpoint_path)
    spec = train.ModelSpec.for_split(arch, split)
    model = spec.build([0.0] * spec.in_channels, [1.0] * spec.in_channels)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtifactError(f"{checkpoint_path}: does not fit {spec.in_channels}-channel images of "
                            f"{spec.num_classes} classes ({str(err).splitlines()[0]})") from None
    log.info("imported %s (%s) for %d classes", checkpoint_path, arch, spec.num_classes)
    train.save_shard(output, spec, [0], [model.state_dict()], trained_for={"method": METHOD})


def plot_noisy_examples(split_path: str, settings: Mapping[str, Any], seed: int, title: str,
                        outputs: Sequence[str]) -> None:
    """The first test images under each σ of ``settings`` (report.noisy_examples)."""
    from robustcert import data
    from robustcert.plot import plot_noisy_examples as plot
    from robustcert.smoothing import noisy_examples

    images = data.load_split(split_path).x_test[: settings["images"]]
    plot(noisy_examples(images, settings["sigmas"], derive_seed(seed)), settings["sigmas"], title, outputs)


def plot_radius(tsv_paths: Sequence[str], curves: Sequence[Mapping[str, str]], undefended_rows: Sequence[str],
                colors: Mapping[str, str], title: str, outputs: Sequence[str], intervals: bool = False) -> None:
    """Certified accuracy against the L2 radius on one dataset: a panel per attack, a colour per defense,
    a line style per σ, the undefended model's accuracy as each panel's reference."""
    from robustcert import plot

    plot.plot_smoothing_radius(*curves_beside_undefended(tsv_paths, curves, undefended_rows), colors, title, outputs,
                               intervals)


def objective_params(objective: Mapping[str, Any]) -> dict[str, Any]:
    """An objective (a smoothing defense's train.objective) as row parameters (``objective``, ``macer_k``, …)."""
    return {"objective": objective["name"],
            **{f"{objective['name']}_{key}": value for key, value in objective.items() if key != "name"}}


def training_config(recipe: Mapping[str, Any], seed: int) -> Any:
    """The TrainConfig of a recipe: its objective's name and settings as the trainer's fields, noise σ."""
    from robustcert import train

    recipe_fields = {key: value for key, value in recipe["train"].items() if key != "objective"}
    return train.TrainConfig(**recipe_fields, **objective_fields(recipe["train"]["objective"]),
                             noise_sigma=recipe["sigma"], seed=derive_seed(seed))


def objective_fields(objective: Mapping[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields of an objective's config entry (``objective`` its name, then its settings)."""
    fields = {OBJECTIVE_FIELDS[objective["name"]][key]: value for key, value in objective.items() if key != "name"}
    schedule = fields.get("macer_lambda_schedule")
    if schedule is not None:
        fields["macer_lambda_schedule"] = tuple(tuple(pair) for pair in schedule)
    return {"objective": objective["name"], **fields}


def _names(wildcards: Any, sigma: str | None = None) -> dict[str, str]:
    return {"dataset": wildcards.dataset, "seed": wildcards.seed, "attack": wildcards.attack,
            "defense": wildcards.defense, "sigma": sigma or wildcards.sigma}


def train_smoothed(split_path: str, poison_path: str, output: str, recipe: Mapping[str, Any], seed: int,
                   device: str, threads: int) -> None:
    """Train the base classifier f on the (poisoned) training set under noise of σ (its objective:
    Gaussian augmentation, MACER or SmoothAdv); a file-backed training set (ImageNet) is read from its
    files by ``threads`` loader workers, under the ImageFolder training transform."""
    target = compute_prologue(threads, device)
    from robustcert import imagefolder, partition, train
    from robustcert.poison import load_split_and_poison

    cfg = training_config(recipe, seed)
    split, attack = load_split_and_poison(split_path, poison_path)
    spec = train.ModelSpec.for_split(recipe["arch"], split)
    if isinstance(split.x_train, imagefolder.ImageFiles):
        from robustcert.artifacts import ArtifactError

        if len(attack.index):
            raise ArtifactError(f"{poison_path}: changes training images of a file-backed split, which only "
                                "attacks of type none can train on")
        split.x_train.check()
        state = train.train_streamed(split.x_train.training_set(split.y_train), spec, cfg, target, threads,
                                     imagefolder.MEAN, imagefolder.STD)
        train.save_shard(output, spec, [0], [state], trained_for={"method": METHOD})
        return
    x, y = attack.apply(split.x_train, split.y_train)
    whole = partition.assign("whole", x, y, k=1)
    states = train.train_shard(x, y, whole, [0], spec, cfg, target)
    train.save_shard(output, spec, [0], states, trained_for={"method": METHOD})


def _shard_of_points(model_path: str, split_path: str, settings: Mapping[str, Any], sigma: float, seed: int,
                     shard: int, target: Any) -> tuple[Any, np.ndarray, Any, int]:
    """The split, the test points of one shard, the smoothed classifier (noise seeded with the config's
    seed and the shard) and its batch size."""
    from robustcert import data, train
    from robustcert.smoothing import Smooth, resolve_batch_size

    split = data.load_split(split_path)
    points = point_shards(len(split.y_test), settings)[shard]
    _, _, models = train.load_shard(model_path, {"method": METHOD})
    smooth = Smooth(models[0].to(target), split.num_classes, sigma, generator=derive_seed(seed, shard),
                    bf16=settings["bf16"], compiled=settings["compile"],
                    channels_last=True)  # about 2× on CPU for the small CNNs, and the fast path on CUDA
    return split, points, smooth, resolve_batch_size(settings["batch_size"], smooth.device, split.x_test.shape[1:])


def certify_smoothed(model_path: str, split_path: str, output: str, settings: Mapping[str, Any], sigma: float,
                     seed: int, shard: int, device: str, threads: int) -> None:
    """CERTIFY the test points of one shard."""
    target = compute_prologue(threads, device)
    import time

    import pandas as pd
    import torch

    from robustcert.evaluate import CERTIFICATE

    split, points, smooth, batch_size = _shard_of_points(model_path, split_path, settings, sigma, seed, shard, target)
    x = torch.from_numpy(split.x_test[points]).float() / 255.0
    start = time.perf_counter()
    prediction, radius = smooth.certify_batch(x, settings["n0"], settings["n"], settings["alpha"], batch_size)
    per_point = (time.perf_counter() - start) / max(len(points), 1)
    labels = split.y_test[points]
    log.info("certified %d points at σ=%g in batches of %d%s: %.3f s per point", len(points), sigma, batch_size,
             " (compiled)" if smooth.compiled else "", per_point)
    CERTIFICATE.write(pd.DataFrame({"idx": points, "label": labels, "predict": prediction, "radius": radius,
                                    "correct": (prediction == labels).astype(int)}), output)


def predict_smoothed(model_path: str, split_path: str, output: str, settings: Mapping[str, Any], sigma: float,
                     seed: int, shard: int, device: str, threads: int) -> None:
    """PREDICT the test points of one shard (−1: abstain)."""
    target = compute_prologue(threads, device)
    import pandas as pd
    import torch

    from robustcert.evaluate import PREDICTIONS
    from robustcert.progress import Progress

    split, points, smooth, batch_size = _shard_of_points(model_path, split_path, settings, sigma, seed, shard, target)
    rows, progress = [], Progress(f"PREDICT at σ={sigma:g}", len(points))
    for i in points:
        x = torch.from_numpy(split.x_test[i]).float() / 255.0
        prediction = smooth.predict(x, settings["n"], settings["alpha"], batch_size)
        label = int(split.y_test[i])
        rows.append((int(i), label, prediction, int(prediction == label)))
        progress.advance()
    progress.finish()
    PREDICTIONS.write(pd.DataFrame(rows, columns=list(PREDICTIONS.columns)), output)


# the format of the shards and the gathered TSV of each {algorithm}
def _formats() -> dict[str, Any]:
    from robustcert.evaluate import CERTIFICATE, PREDICTIONS

    return {"certify": CERTIFICATE, "predict": PREDICTIONS}


def gather_shards(shard_paths: Sequence[str], output: str, algorithm: str) -> None:
    """Concatenate the TSVs of a sharded step in ``idx`` order (each shard checked, no point twice)."""
    import pandas as pd

    from robustcert.artifacts import ArtifactError

    tsv = _formats()[algorithm]
    frame = pd.concat([tsv.read(p, min_rows=1) for p in shard_paths], ignore_index=True).sort_values("idx")
    if frame["idx"].duplicated().any():
        raise ArtifactError(f"{output}: the shards {list(shard_paths)} repeat test points "
                            f"{frame.loc[frame['idx'].duplicated(), 'idx'].tolist()[:5]}")
    tsv.write(frame, output)


def summarize_smoothing(certify_path: str, predict_path: str, output: str, keys: Mapping[str, str],
                        params: Mapping[str, Any], radii: Sequence[float], points: int) -> None:
    """The results rows of a smoothed classifier at one σ, from CERTIFY and PREDICT on the same ``points``
    test points."""
    from robustcert.artifacts import ArtifactError
    from robustcert.evaluate import CERTIFICATE, PREDICTIONS
    from robustcert.metrics import ABSTAIN, average_certified_radius, certified_accuracy

    certified, predicted = CERTIFICATE.read(certify_path, rows=points), PREDICTIONS.read(predict_path, rows=points)
    if certified["idx"].tolist() != predicted["idx"].tolist():
        raise ArtifactError(f"{certify_path} and {predict_path}: not the same test points")
    numbers = [
        Metric("n_test", len(certified)),
        Metric("accuracy", float(predicted["correct"].mean())),
        Metric("abstain", float((predicted["predict"] == ABSTAIN).mean())),
        Metric("certify_abstain", float((certified["predict"] == ABSTAIN).mean())),
        Metric("acr", average_certified_radius(certified["radius"], certified["correct"])),
        *on_axis("cert_acc", "l2", radii, certified_accuracy(certified["radius"], certified["correct"], radii)),
    ]
    write_rows(output, tidy_rows(keys, params, numbers))


def analyze_smoothing(certify_paths: Sequence[str], sigmas: Sequence[float], radii: Sequence[float], title: str,
                      table_output: str, plot_prefix: str) -> None:
    """The certified-accuracy table (best σ per radius marked) and plot over the σ of one defense."""
    from robustcert import analysis
    from robustcert.artifacts import write_tsv
    from robustcert.plot import plot_certified_accuracy

    frames = {f"σ={s:g}": analysis.read_certify_tsv(p) for s, p in zip(sigmas, certify_paths)}
    write_tsv(analysis.certified_accuracy_table(frames, radii).reset_index(), table_output)
    plot_certified_accuracy(frames, plot_prefix, title=title)
