# Config validation, wildcard constraints and input functions shared by the stages.

from snakemake.utils import validate

from robustcert.config import check_config, experiments, shards


validate(config, schema="../config/config.schema.yaml")
check_config(config)

EXPERIMENTS = experiments(config)


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",
    attack="[A-Za-z0-9_-]+",
    defense="[A-Za-z0-9_-]+",
    variant="[a-z_]+",
    shard=r"\d+",


def get_final_output():
    """The results table and one poisoning-budget plot per dataset."""
    datasets = sorted({e.dataset for e in EXPERIMENTS})
    return [
        "results/tables/all.tsv",
        *expand("results/plots/{dataset}/poison_budget.{ext}", dataset=datasets, ext=["png", "pdf"]),
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
    """(experiment, variant) for every certificate the config asks for, optionally of one dataset."""
    return [
        (e, variant)
        for e in EXPERIMENTS
        if dataset in (None, e.dataset)
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
    """One results-table row per experiment and certificate variant."""
    return [
        f"results/tables/rows/{e.dataset}/{e.attack}/{e.defense}/{variant}.tsv"
        for e, variant in certificate_cells()
    ]


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
