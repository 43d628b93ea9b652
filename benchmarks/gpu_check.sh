#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): every CUDA path of the workflow and the GPU's rates, in one
# command of at most 8 minutes; gpu_check.tsv and gpu_check.log go to the folder given (default $OUT).
#
#   benchmarks/gpu_check.sh [OUT_DIR]              # on a machine with one GPU
#   benchmarks/gpu_check.sh --cpu-smoke [OUT_DIR]  # the same steps on the CPU at toy sizes (seconds each)
#
# Python: $PYTHON, else the repository's .venv, else python3 (a GPU machine's, with its CUDA torch).
# Where that Python lacks Snakemake or jsonschema, the check installs them from the wheels in .whl/
# (benchmarks/gpu_wheels.sh fetches them where pip reaches a registry) or $ROBUSTCERT_WHEELS.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$repo/benchmarks/gpu_check.py" "$@"
