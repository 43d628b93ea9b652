"""Schema validation of a config: robustcert.config.validate_config against Snakemake's ``validate``.

Every Snakemake call (a run, a dry run, each `make pull`'s plan) and every test that builds a plan
validates the config: the top level and each attack and defense against its schema. Snakemake's
``validate`` reads a schema file, and every file its ``$ref``s name, through YTE at each call;
``validate_config`` keeps one validator per schema file. Both fill the same defaults (checked here).

Each variant runs in a fresh Python process, so that the first call pays what a Snakemake start-up
pays (imports, reading the schemas), then ``--calls`` calls in that process; the ratio is Snakemake's
time over ours, per round, with the median over ``--rounds`` rounds.

    python benchmarks/validate_config.py [--config config/config.yaml] [--calls 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# one process: import, then time the first call and `calls` more on fresh copies; print the defaults filled
CHILD = """
import copy, json, sys, time
from pathlib import Path
import yaml
variant, config_path, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
schemas = Path("config/schemas")
if variant == "snakemake":
    from snakemake.utils import validate
    from robustcert.config import entry_schemas
    def check(config):
        validate(config, schema=str(schemas / "config.schema.yaml"))
        for section, name, schema in entry_schemas(config, schemas):
            validate(config[section][name], schema=str(schema))
else:
    from robustcert.config import entry_schemas, filling_validator
    def check(config):
        filling_validator(str(schemas / "config.schema.yaml")).validate(config)
        for section, name, schema in entry_schemas(config, schemas):
            filling_validator(str(schema)).validate(config[section][name])
raw = yaml.safe_load(open(config_path))
start = time.perf_counter()
first = copy.deepcopy(raw)
check(first)
first_s = time.perf_counter() - start
start = time.perf_counter()
for _ in range(calls):
    check(copy.deepcopy(raw))
print(json.dumps({"first": first_s, "each": (time.perf_counter() - start) / calls, "filled": first}))
"""


def run(variant: str, config: str, calls: int) -> dict:
    """One fresh process of ``variant``: the first call's seconds, the mean of the next ones, the filled config."""
    result = subprocess.run([sys.executable, "-c", CHILD, variant, config, str(calls)], cwd=REPO,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    first, each = [], []
    for _ in range(args.rounds):
        theirs, ours = run("snakemake", args.config, args.calls), run("ours", args.config, args.calls)
        if theirs["filled"] != ours["filled"]:
            sys.exit("the two validators fill different defaults")
        first.append((theirs["first"], ours["first"]))
        each.append((theirs["each"], ours["each"]))
    for label, pairs in (("first call in a process", first), (f"each of {args.calls} later calls", each)):
        ratios = [t / o for t, o in pairs]
        print(f"{label}: Snakemake's validate {statistics.median(t for t, _ in pairs) * 1e3:.1f} ms, "
              f"validate_config's validators {statistics.median(o for _, o in pairs) * 1e3:.1f} ms: "
              f"ratio {statistics.median(ratios):.1f}× (rounds {min(ratios):.1f}–{max(ratios):.1f})")


if __name__ == "__main__":
    main()
