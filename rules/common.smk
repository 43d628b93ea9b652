# Config validation, wildcard constraints and input functions shared by the stages.

from snakemake.utils import validate

from robustcert.config import check_config, experiments, shards
from robustcert.data import expected_test_size
from robustcert.smoothing_steps import point_shards


validate(config, schema="../config/config.schema.yaml")
check_config(config)

EXPERIMENTS = experiments(config)
CLEAN_ATTACK = next((name for name, a in config["attacks"].items() if a["type"] == "none"), None)
# the {attack} names that rules/bilevel.smk makes (a regex; one that matches nothing if there are none)
BILEVEL_ATTACKS = "|".join(n for n, a in config["attacks"].items() if a["type"] == "bilevel_radius") or "(?!)"


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    attack="[A-Za-z0-9_-]+",
    defense="[A-Za-z0-9_-]+",
    variant="[a-z_]+",
    shard=r"\d+",
    sigma=r"[0-9.]+(e-?[0-9]+)?",
    algorithm="certify|predict",


AGGREGATION_METHODS = ("dpa", "fa")


def method_of(experiment):
    return config["defenses"][experiment.defense]["method"]


def sigma_label(sigma):
    """How a σ of the config appears in paths: 0.25 → "0.25", 1.0 → "1"."""
    return f"{sigma:g}"


def get_final_output():
    """The results table and every plot: poisoning budget per dataset, smoothing per experiment,
    the objective of every bilevel attack."""
    aggregation = sorted({e.dataset for e in EXPERIMENTS if method_of(e) in AGGREGATION_METHODS})
    smoothing = [e for e in EXPERIMENTS if method_of(e) == "smoothing"]
    bilevel = sorted({(e.dataset, e.attack) for e in EXPERIMENTS if config["attacks"][e.attack]["type"] == "bilevel_radius"})
    return [
        "results/tables/all.tsv",
        *expand("results/plots/{dataset}/poison_budget.{ext}", dataset=aggregation, ext=["png", "pdf"]),
        *[f"results/plots/{e.dataset}/smoothing/{e.attack}/{e.defense}.{ext}" for e in smoothing for ext in ("png", "pdf")],
        *[f"results/plots/{dataset}/bilevel_{attack}_objective.{ext}" for dataset, attack in bilevel for ext in ("png", "pdf")],
    ]


def get_dataset(wildcards):
    return config["datasets"][wildcards.dataset]


def get_attack(wildcards):
    return config["attacks"][wildcards.attack]


def get_defense(wildcards):
    return config["defenses"][wildcards.defense]


def get_shard_subsets(wildcards):
    return list(shards(get_defense(wildcards))[int(wildcards.shard)])


def get_shard_checkpoints(wildcards):
    """Every shard checkpoint of one ensemble."""
    return expand(
        "results/models/{dataset}/{attack}/{defense}/shard_{shard}.pt",
        **wildcards,
        shard=range(len(shards(get_defense(wildcards)))),
    )


def certificate_cells(dataset=None):
    """(experiment, variant) for every aggregation certificate the config asks for, optionally of one dataset."""
    return [
        (e, variant)
        for e in EXPERIMENTS
        if dataset in (None, e.dataset) and method_of(e) in AGGREGATION_METHODS
        for variant in config["defenses"][e.defense]["certificates"]
    ]


def get_dataset_certificates(wildcards):
    """The clean certificate TSVs of one dataset, for its plot."""
    return [
        f"results/certify/{e.dataset}/{e.attack}/{e.defense}/{variant}.tsv"
        for e, variant in certificate_cells(wildcards.dataset)
    ]


def get_dataset_labels(wildcards):
    return [f"{e.attack} · {e.defense} · {variant}" for e, variant in certificate_cells(wildcards.dataset)]


def get_result_rows(wildcards):
    """One results-table row per aggregation certificate and per smoothing σ."""
    aggregation = [
        f"results/tables/rows/{e.dataset}/{e.attack}/{e.defense}/{variant}.tsv"
        for e, variant in certificate_cells()
    ]
    smoothing = [
        f"results/tables/rows/{e.dataset}/{e.attack}/{e.defense}/smoothing_sigma_{sigma_label(s)}.tsv"
        for e in EXPERIMENTS
        if method_of(e) == "smoothing"
        for s in config["defenses"][e.defense]["sigmas"]
    ]
    bilevel = [
        f"results/tables/rows/{e.dataset}/{e.attack}/{e.defense}/bilevel_sigma_{sigma_label(s)}.tsv"
        for e in EXPERIMENTS
        if method_of(e) == "smoothing" and config["attacks"][e.attack]["type"] == "bilevel_radius"
        for s in config["defenses"][e.defense]["sigmas"]
    ]
    return aggregation + smoothing + bilevel


def get_test_size(wildcards):
    return expected_test_size(get_dataset(wildcards))


def get_sigma(wildcards):
    return float(wildcards.sigma)


def get_sigmas(wildcards):
    return get_defense(wildcards)["sigmas"]


def get_smoothing_shards(wildcards):
    """The shard TSVs of CERTIFY or PREDICT for one σ."""
    count = len(point_shards(get_test_size(wildcards), get_defense(wildcards)))
    return expand(
        "results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/{algorithm}/shard_{shard}.tsv",
        **wildcards,
        shard=range(count),
    )


def get_smoothing_certificates(wildcards):
    """The gathered certify TSV of every σ of a smoothing defense."""
    return [
        f"results/smoothing/{wildcards.dataset}/{wildcards.attack}/{wildcards.defense}/sigma_{sigma_label(s)}/certify.tsv"
        for s in get_sigmas(wildcards)
    ]


def describe_smoothing(wildcards):
    """The names and parameters that open a smoothing row of the results table."""
    defense = get_defense(wildcards)
    return {
        "dataset": wildcards.dataset,
        "source": get_dataset(wildcards)["source"],
        "attack": wildcards.attack,
        "attack_type": get_attack(wildcards)["type"],
        "defense": wildcards.defense,
        "method": "smoothing",
        "certificate": "cohen_certify",
        "arch": defense["arch"],
        "epochs": defense["train"]["epochs"],
        "sigma_train": float(wildcards.sigma),
        "sigma_certify": float(wildcards.sigma),
    }


def describe_experiment(wildcards):
    """The names and parameters that open a results-table row."""
    defense = get_defense(wildcards)
    attack = get_attack(wildcards)
    return {
        "dataset": wildcards.dataset,
        "source": get_dataset(wildcards)["source"],
        "attack": wildcards.attack,
        "attack_type": attack["type"],
        "defense": wildcards.defense,
        "method": defense["method"],
        "certificate": wildcards.variant,
        "k": defense["k"],
        "d": defense.get("d", 1),
        "arch": defense["arch"],
        "epochs": defense["train"]["epochs"],
    }


def get_clean_victim(wildcards):
    """The same smoothing victim trained on clean data (the attack of type none)."""
    return f"results/smoothing/{wildcards.dataset}/{CLEAN_ATTACK}/{wildcards.defense}/sigma_{wildcards.sigma}/model.pt"


def describe_bilevel(wildcards):
    """The names and parameters that open a bilevel-evaluation row of the results table."""
    return {**describe_smoothing(wildcards), "certificate": "target_class_certify"}
