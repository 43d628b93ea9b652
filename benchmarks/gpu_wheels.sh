#!/usr/bin/env bash
# Fetch into .whl/ (ignored by git; or $ROBUSTCERT_WHEELS) the wheels that benchmarks/gpu_check.sh installs on a GPU machine
# that has Python, torch and the scientific stack but no registry: Snakemake and jsonschema with
# everything they need, at the versions of constraints.txt, for CPython 3.12 on x86-64 Linux.
# Run it where pip reaches a registry; then carry .whl along with the repository.
#
#   benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # default 3.12
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-3.12}"
wheels="${ROBUSTCERT_WHEELS:-$repo/.whl}"
packages=("$(grep -i '^snakemake==' "$repo/constraints.txt")" "$(grep -i '^jsonschema==' "$repo/constraints.txt")")
built="$(mktemp -d)"
trap 'rm -rf "$built"' EXIT
mkdir -p "$wheels"
# 1. every package for this machine, sources built into wheels; the pure-Python ones (some exist only
#    as sources, e.g. connection_pool) serve any Python 3
python3 -m pip wheel --quiet -c "$repo/constraints.txt" -w "$built" "${packages[@]}"
cp "$built"/*-none-any.whl "$wheels"/
# 2. the compiled ones for the GPU machine's Python
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download --quiet --only-binary=:all: --python-version "$version" --implementation cp \
    "${platforms[@]}" --find-links "$wheels" -c "$repo/constraints.txt" -d "$wheels" "${packages[@]}"
du -sh "$wheels"
