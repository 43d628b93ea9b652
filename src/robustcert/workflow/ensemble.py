"""The ensemble stage (rules/ensemble.smk): partition the (poisoned) training set, train the base
models one shard of ``partitions_per_job`` at a time (``gpu=1`` jobs), and score every model on the
clean and triggered test sets. Any method that trains an ensemble uses these rules: it registers
how one of its defense entries lays the ensemble out (:class:`Layout`), optionally its training
recipe (the entry's ``train`` by default) and the σ of a fixed test-time noise draw per model (none
by default; :class:`robustcert.score.ScoringNoise`), and reads the score matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robustcert.config import Config, canonical, derive_seed
from robustcert.workflow import compute_prologue, log

SHARD = "<results>/models/{dataset}/seed_{seed}/{attack}/{defense}/shard_{shard}.pt"


@dataclass(frozen=True)
class Layout:
    """How an ensemble is laid out: a partition assignment of :data:`robustcert.partition.ASSIGNMENTS`
    with k (·d) subsets, one base model each, trained ``per_job`` models per job."""

    assignment: str
    k: int
    d: int = 1
    per_job: int = 1

    @property
    def num_models(self) -> int:
        """k·d."""
        return self.k * self.d

    def shards(self) -> list[range]:
        """The subsets each training job trains."""
        return [range(start, min(start + self.per_job, self.num_models))
                for start in range(0, self.num_models, self.per_job)]


LayoutOf = Callable[[Mapping[str, Any]], Layout]
RecipeOf = Callable[[Mapping[str, Any]], Mapping[str, Any]]
ScoringNoiseOf = Callable[[Mapping[str, Any]], float]


def entry_recipe(defense: Mapping[str, Any]) -> Mapping[str, Any]:
    """The training recipe of a defense entry as written: its ``train``."""
    return defense["train"]


class Plan:
    """The ensemble jobs of a config; methods register the layout of their defense entries."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._layouts: dict[str, LayoutOf] = {}
        self._recipes: dict[str, RecipeOf] = {}
        self._test_noise: dict[str, ScoringNoiseOf] = {}

    def register(self, method: str, layout_of: LayoutOf, recipe_of: RecipeOf = entry_recipe,
                 test_noise_of: ScoringNoiseOf | None = None) -> None:
        """Defenses of ``method`` train an ensemble laid out by ``layout_of(defense entry)``, each model
        with the recipe ``recipe_of(defense entry)`` (a :class:`robustcert.train.TrainConfig`'s fields),
        and score it on test inputs plus a fixed noise draw per model of σ = ``test_noise_of(defense
        entry)`` when given."""
        self._layouts[method] = layout_of
        self._recipes[method] = recipe_of
        if test_noise_of is not None:
            self._test_noise[method] = test_noise_of

    def layout(self, wildcards: Any) -> Layout:
        """The layout of the ensemble of ``wildcards.defense``."""
        defense = self.config["defenses"][wildcards.defense]
        if defense["method"] not in self._layouts:
            raise ValueError(f"defense {wildcards.defense!r} (method {defense['method']!r}) trains no ensemble; "
                             f"methods that do: {sorted(self._layouts)}")
        return self._layouts[defense["method"]](defense)

    def partition_params(self, wildcards: Any) -> dict[str, Any]:
        """What the partition step reads: the assignment and its k and d."""
        layout = self.layout(wildcards)
        return {"assignment": layout.assignment, "k": layout.k, "d": layout.d}

    def shard_subsets(self, wildcards: Any) -> list[int]:
        """The subsets of one training job."""
        return list(self.layout(wildcards).shards()[int(wildcards.shard)])

    def shard_checkpoints(self, wildcards: Any) -> list[str]:
        """Every shard checkpoint of one ensemble."""
        count = len(self.layout(wildcards).shards())
        return [SHARD.format(dataset=wildcards.dataset, seed=wildcards.seed, attack=wildcards.attack,
                             defense=wildcards.defense, shard=i) for i in range(count)]

    def recipe(self, wildcards: Any) -> dict[str, Any]:
        """What training reads of the defense: the architecture and the training recipe."""
        defense = self.config["defenses"][wildcards.defense]
        recipe_of = self._recipes.get(defense["method"], entry_recipe)
        return canonical({"method": defense["method"], "arch": defense["arch"], "train": recipe_of(defense)})

    def purpose(self, wildcards: Any) -> dict[str, str]:
        """What scoring checks its checkpoints were trained for: the defense's method and architecture."""
        defense = self.config["defenses"][wildcards.defense]
        return {"method": defense["method"], "arch": defense["arch"]}

    def test_noise(self, wildcards: Any) -> dict[str, Any]:
        """What scoring reads of the test-time noise: its σ and the replicate's seed (nothing without noise)."""
        defense = self.config["defenses"][wildcards.defense]
        if defense["method"] not in self._test_noise:
            return {}
        return {"sigma": float(self._test_noise[defense["method"]](defense)), "seed": int(wildcards.seed)}


def partition_training_set(split_path: str, poison_path: str, output: str, assignment: str, k: int, d: int,
                           seed: int) -> None:
    """Partition the poisoned training set into the subsets of the ensemble's base models."""
    from robustcert import partition
    from robustcert.poison import load_poisoned_training_set

    _, _, x, y = load_poisoned_training_set(split_path, poison_path)
    result = partition.assign(assignment, x, y, k, d, seed=derive_seed(seed))
    sizes = result.sizes()
    log.info("%s: %d subsets of %d..%d samples (mean %.1f)", assignment, result.num_subsets, sizes.min(),
             sizes.max(), sizes.mean())
    partition.save_partition(output, result)


def train_shard(split_path: str, poison_path: str, partition_path: str, output: str, subsets: Sequence[int],
                recipe: Mapping[str, Any], seed: int, device: str, threads: int) -> None:
    """Train the base models of one shard of subsets (model j seeded with the config's seed and j)."""
    target = compute_prologue(threads, device)
    from robustcert import partition, train
    from robustcert.poison import load_poisoned_training_set

    split, _, x, y = load_poisoned_training_set(split_path, poison_path)
    parts = partition.load_partition(partition_path, len(y))
    spec = train.ModelSpec.for_split(recipe["arch"], split)
    cfg = train.TrainConfig(**recipe["train"], seed=derive_seed(seed))
    states = train.train_shard(x, y, parts, list(subsets), spec, cfg, target)
    train.save_shard(output, spec, subsets, states, trained_for={"method": recipe["method"]})


def score_ensemble(split_path: str, poison_path: str, partition_path: str, shard_paths: Sequence[str], output: str,
                   device: str, threads: int, test_noise: Mapping[str, Any], purpose: Mapping[str, Any]) -> None:
    """Write the score matrix of all base models on the clean and triggered test sets (plus each model's
    fixed test-time noise when ``test_noise`` gives its σ and seed)."""
    target = compute_prologue(threads, device)
    from robustcert import partition, score
    from robustcert.evaluate import save_scores
    from robustcert.poison import load_poisoned_training_set

    split, attack, _, y = load_poisoned_training_set(split_path, poison_path)
    parts = partition.load_partition(partition_path, len(y))
    models = score.load_ensemble(shard_paths, parts.num_subsets, purpose)
    noise = score.ScoringNoise(test_noise["sigma"], derive_seed(test_noise["seed"])) if test_noise else None
    if noise is not None:
        log.info("test-time noise σ=%g, model j seeded with %s", noise.sigma,
                 ", ".join(f"{j}: {noise.model_seed(j)}" for j in range(min(3, len(models)))) + ", …")
    scores = score.score_ensemble(models, split.x_test, split.y_test, attack, target, noise)
    log.info("base models: mean test accuracy %.4f", scores["base_accuracy"].mean())
    save_scores(output, scores)
