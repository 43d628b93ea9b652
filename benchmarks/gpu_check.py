"""The GPU check: every CUDA path of the workflow and the GPU's rates, in one command of at most 8 minutes.

    benchmarks/gpu_check.sh [OUT_DIR]              # on a GPU: OUT_DIR (default $OUT) gets gpu_check.tsv and .log
    benchmarks/gpu_check.sh --cpu-smoke [OUT_DIR]  # the same steps on the CPU at toy sizes (tests/test_gpu_check.py)

Steps, each in a process (group) of its own with its own timeout, so that one failing or hanging step
leaves the others' figures (all of them within one overall budget):
  setup             install the workflow's packages from wheels carried in .whl/ where this Python lacks them
  environment       Python, torch, CUDA and the device's name
  cuda_tests        the tests skipped elsewhere with "needs CUDA"
  snakemake_gpu1    benchmarks/gpu_check.yaml through Snakemake to all.tsv, --resources gpu=1, on the device
  snakemake_gpu2    the same run's training again with --resources gpu=2: two GPU jobs share one device via
                    the GPU lease (robustcert.gpulease); all.tsv compared with the first run's
  train_shard       benchmarks/train_shard.py: K NiN models on CIFAR-size images, batched vs one after another
  certify           benchmarks/certify.py: ResNet-110 (and LeNet) at n = 100 000, fp32 and bf16
  patch_certify     benchmarks/patch_certify.py: band and block ablations at CIFAR size
  rab_train         benchmarks/rab_train.py
  projection        GPU-hours of config/cifar10.yaml and config/mnist.yaml from the rates measured above
  certify_compiled  ResNet-110 CERTIFY with torch.compile (last: compiling is the slowest part)

The TSV has one row per figure (at least one per step): step, status (ok, failed, timeout, skipped,
no time left), seconds (the step's wall time), metric, value, unit, note. Rates that the projection
reads are named ``rate.<kind>.<arch>…``. The log holds every step's whole output. The CPU smoke runs
the same steps with small models on tiny inputs, and fp32 in the compiled step's place.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
CHECK_CONFIG = BENCHMARKS / "gpu_check.yaml"
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs", "profiles", "report"]
PROJECTED_CONFIGS = ["config/cifar10.yaml", "config/mnist.yaml"]
COLUMNS = ["step", "status", "seconds", "metric", "value", "unit", "note"]
# the packages the check installs from carried wheels where this Python lacks them (pinned in constraints.txt)
NEEDED = ["snakemake", "jsonschema"]
SKIPPED = 3  # a step's exit status when a step before it left nothing to start from
WEIGHT_TOLERANCE = 1e-3  # max |Δw| between training strategies counted as "the same weights"

# Per mode: the benchmarks' arguments, each step's timeout (s) and the whole check's budget (s).
MODES = {
    "gpu": {
        "device": "cuda", "cores": 8, "budget": 470,
        "train_shard": ["--arch", "nin", "--models", "2", "50", "--images", "1000", "--size", "32", "--channels", "3",
                        "--epochs", "1"],
        "certify": ["--models", "resnet110", "lenet", "--n", "100000", "--variants", "fp32", "bf16", "--rounds", "2"],
        "certify_compiled": ["--models", "resnet110", "--n", "100000", "--variants", "compiled", "--rounds", "1"],
        "patch_certify": ["--arch", "resnet18", "--images", "2", "--size", "32", "--rounds", "2"],
        "rab_train": ["--models", "32", "--epochs", "2"],
        "timeouts": {"setup": 60, "environment": 30, "cuda_tests": 90, "snakemake_gpu1": 100, "snakemake_gpu2": 80,
                     "train_shard": 60, "certify": 75, "patch_certify": 45, "rab_train": 30, "projection": 30,
                     "certify_compiled": 150},
    },
    # toy sizes; the compiled step times fp32 instead (torch.compile takes minutes on a busy CPU)
    "cpu-smoke": {
        "device": "cpu", "cores": 2, "budget": 900,
        "train_shard": ["--arch", "small_cnn", "--models", "2", "--images", "20", "--size", "8", "--channels", "3",
                        "--epochs", "1", "--threads", "2"],
        "certify": ["--models", "lenet", "--n", "100", "--variants", "fp32", "bf16", "--rounds", "1", "--threads", "2"],
        "certify_compiled": ["--models", "lenet", "--n", "100", "--variants", "fp32", "--rounds", "1",
                             "--threads", "2"],
        "patch_certify": ["--arch", "small_cnn", "--images", "1", "--size", "8", "--rounds", "1", "--threads", "2"],
        "rab_train": ["--models", "2", "--epochs", "1", "--threads", "2"],
        "timeouts": {"setup": 60, "environment": 60, "cuda_tests": 90, "snakemake_gpu1": 240, "snakemake_gpu2": 180,
                     "train_shard": 90, "certify": 90, "patch_certify": 90, "rab_train": 90, "projection": 60,
                     "certify_compiled": 90},
    },
}


@dataclass
class Step:
    """What a step's process knows: the mode's settings, its work folder, where its figures go."""

    name: str
    mode: str
    work: Path
    rows: Path
    prior: Path  # the rows of the steps before it (JSON lines)

    @property
    def settings(self) -> dict:
        return MODES[self.mode]

    def emit(self, metric: str, value: float | int | str, unit: str = "", note: str = "") -> None:
        """Record one figure (written at once: a step killed later keeps it)."""
        with self.rows.open("a") as out:
            out.write(json.dumps({"metric": metric, "value": value, "unit": unit, "note": note}) + "\n")
        print(f"[{self.name}] {metric} = {value} {unit} {note}".rstrip(), flush=True)

    def benchmark_argv(self) -> list[str]:
        return ["--device", self.settings["device"], *self.settings[self.name]]


# ----------------------------------------------------------------------------- steps


def setup(step: Step) -> None:
    """Install NEEDED (and what they need that is missing) from the wheels in $ROBUSTCERT_WHEELS or .whl/."""
    missing = [name for name in NEEDED if not importable(name)]
    step.emit("missing_packages", len(missing), "", " ".join(missing))
    if not missing:
        return
    wheels = Path(os.environ.get("ROBUSTCERT_WHEELS", REPO / ".whl"))
    if not any(wheels.glob("*.whl")):
        raise SystemExit(f"{' '.join(missing)} missing and no wheels in {wheels}: run benchmarks/gpu_wheels.sh "
                         "where pip can reach a registry and carry .whl along")
    pins = pinned(missing)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), *pins],
                   check=True)
    step.emit("installed", len(pins), "", " ".join(pins))


def importable(module: str) -> bool:
    """Whether this Python imports ``module`` (asked in a child, so that nothing is cached here)."""
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def pinned(names: list[str]) -> list[str]:
    """``name==version`` for each name, its version from constraints.txt."""
    pins = dict(line.strip().split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines()
                if "==" in line)
    return [f"{name}=={pins[name]}" for name in names]


def environment(step: Step) -> None:
    """The versions and the device this check ran on."""
    import torch

    step.emit("python", sys.version.split()[0])
    step.emit("torch", torch.__version__)
    step.emit("cuda_available", int(torch.cuda.is_available()))
    if shutil.which("nvidia-smi"):
        subprocess.run(["nvidia-smi"], check=False)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        step.emit("gpu", props.name, "", f"CUDA {torch.version.cuda}, capability {props.major}.{props.minor}")
        step.emit("gpu_memory", round(props.total_memory / 2**30, 1), "GiB")
    step.emit("cpu_threads", torch.get_num_threads())
    step.emit("date", time.strftime("%Y-%m-%d"))


def cuda_tests(step: Step) -> None:
    """Run the tests skipped with "needs CUDA" and count passed, failed and skipped ones."""
    ids = needs_cuda_tests(REPO / "tests")
    step.emit("selected", len(ids), "tests", " ".join(i.split("::")[-1] for i in ids))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *ids],
                            cwd=REPO, capture_output=True, text=True)
    print(result.stdout[-8000:], result.stderr[-4000:], flush=True)
    counts = dict.fromkeys(["passed", "failed", "skipped", "error"], 0)
    for number, outcome in re.findall(r"(\d+) (passed|failed|skipped|errors?)", result.stdout):
        counts[outcome.rstrip("s") if outcome.startswith("error") else outcome] = int(number)
    for outcome, number in counts.items():
        step.emit(outcome, number, "tests")
    if result.returncode != 0:
        raise SystemExit(f"pytest exited with {result.returncode}")
    if step.settings["device"] == "cuda" and counts["skipped"]:
        raise SystemExit(f"{counts['skipped']} CUDA test(s) skipped on the GPU machine: is CUDA visible?")


def needs_cuda_tests(folder: Path) -> list[str]:
    """The pytest ids of the test functions whose decorators mention "needs CUDA"."""
    ids = []
    for path in sorted(folder.glob("test_*.py")):
        source = path.read_text()
        if "needs CUDA" not in source:
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and any(
                    "needs CUDA" in ast.get_source_segment(source, d) for d in node.decorator_list):
                ids.append(f"tests/{path.name}::{node.name}")
    return ids


def snakemake_gpu1(step: Step) -> None:
    """The small config to all.tsv with one GPU job at a time."""
    workflow = step.work / "workflow"
    shutil.rmtree(workflow, ignore_errors=True)
    copy_workflow(workflow)
    seconds = run_snakemake(step, workflow, "--resources", "gpu=1")
    report_run(step, workflow, seconds)
    shutil.copy2(workflow / "results/tables/all.tsv", step.work / "all_gpu1.tsv")


def snakemake_gpu2(step: Step) -> None:
    """The first run's training again, two GPU jobs at once on one device: the second waits for the lease."""
    workflow = step.work / "workflow"
    if not (step.work / "all_gpu1.tsv").exists():
        print("the snakemake_gpu1 step made no all.tsv to start from", flush=True)
        raise SystemExit(SKIPPED)
    seconds = run_snakemake(step, workflow, "--resources", "gpu=2", "--forcerun", "train_shard")
    report_run(step, workflow, seconds)
    same = (workflow / "results/tables/all.tsv").read_bytes() == (step.work / "all_gpu1.tsv").read_bytes()
    step.emit("all_tsv_same_as_gpu1", int(same), "", "byte for byte")


def copy_workflow(target: Path) -> None:
    target.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target / name)
    shutil.copy2(CHECK_CONFIG, target / CHECK_CONFIG.name)


def run_snakemake(step: Step, workflow: Path, *extra: str) -> float:
    """Seconds of one real Snakemake run of the check's config to all.tsv on the mode's device."""
    device = step.settings["device"]
    env = {**os.environ, "ROBUSTCERT_DEVICE": device, "ROBUSTCERT_GPU_LOCK_DIR": str(step.work / "gpu-locks")}
    command = [sys.executable, "-m", "snakemake", "--configfile", CHECK_CONFIG.name, "--config", f"device={device}",
               "--cores", str(step.settings["cores"]), *extra, "--", "results/tables/all.tsv"]
    start = time.perf_counter()
    subprocess.run(command, cwd=workflow, env=env, check=True)
    return time.perf_counter() - start


def report_run(step: Step, workflow: Path, seconds: float) -> None:
    """The run's time, its all.tsv rows, and how many job logs name a lease or a wait for one."""
    logs = [p.read_text(errors="replace") for p in (workflow / "results/logs").rglob("*.log")]
    step.emit("wall", round(seconds, 1), "s")
    step.emit("all_tsv_rows", len((workflow / "results/tables/all.tsv").read_text().splitlines()) - 1)
    step.emit("job_logs_with_lease", sum("leased via" in log for log in logs), "logs", "robustcert.device lines")
    step.emit("job_logs_waiting_for_lease", sum("waiting up to" in log for log in logs), "logs")


def train_shard(step: Step) -> None:
    """Batched vs sequential vs reference training of K models; the weights must agree."""
    import torch
    import train_shard as bench

    from robustcert.device import select_device

    args = bench.parse_args(step.benchmark_argv())
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    shape = (f"{args.arch}, {args.channels}×{args.size}×{args.size}, ~{args.images} images/model, "
             f"{args.epochs} epoch(s)")
    for k in args.models:
        rows = bench.compare(k, args, device)
        emit_strategies(step, f"K{k}", rows, "images_per_s", "images/s", shape)
    batched = rows[-1]
    step.emit(f"rate.train.{args.arch}", round(batched["images_per_s"]), "images/s",
              f"batched, K={batched['K']}; {shape}; {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")


def certify(step: Step) -> None:
    """Seconds per test point of CERTIFY (reference loop and our variants) per model."""
    import certify as bench
    import torch

    from robustcert.device import select_device

    args = bench.parse_args(step.benchmark_argv())
    args.device = select_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = bench.N0 + args.n
    for arch in args.models:
        label, channels, size = bench.MODELS[arch]
        batch_size, seconds = bench.benchmark(arch, channels, size, args)
        bench.report(label, batch_size, seconds, samples)
        for name, times in seconds.items():
            step.emit(f"{arch}.{name.replace(' ', '_')}", round(min(times), 4), "s/point",
                      f"n0={bench.N0}, n={args.n}, batch {batch_size}, best of {len(times)}")
        for variant in bench.chosen_variants(args):
            best = min(seconds[bench.variant_label(variant)])
            step.emit(f"rate.certify.{arch}.{variant}", best / samples, "s/sample", f"{label}, batch {batch_size}")


def certify_compiled(step: Step) -> None:
    certify(step)


def patch_certify(step: Step) -> None:
    """Seconds per image of derandomized patch certification, per ablation."""
    import patch_certify as bench
    import torch

    from robustcert.device import select_device

    args = bench.parse_args(step.benchmark_argv())
    args.device = select_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    for label in args.ablations:
        ablation = bench.ablation_of(label, args.size)
        batch_size, seconds = bench.benchmark(ablation, args)
        bench.report(label, batch_size, seconds, args.images)
        for name, times in seconds.items():
            step.emit(f"{label.replace(' ', '_')}.{name.replace(' ', '_')}", round(min(times) / args.images, 4),
                      "s/image", f"{args.arch} on {args.size}×{args.size}, batch {batch_size}")
        step.emit(f"rate.patch.{args.arch}.{ablation.kind}_{ablation.size}", min(seconds["ours"]) / args.images,
                  "s/image", f"{args.size}×{args.size}×{bench.CHANNELS}")


def rab_train(step: Step) -> None:
    """RAB's N models trained three ways on digits 6 vs 8: models per hour; the weights must agree."""
    import rab_train as bench
    import torch

    from robustcert.device import select_device

    args = bench.parse_args(step.benchmark_argv())
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    split = bench.digits_6_vs_8()
    bench.warm_up(split, args, device)
    for n in args.models:
        emit_strategies(step, f"N{n}", bench.compare(n, split, args, device), "models_per_h", "models/h",
                        f"{args.arch}, digits 6 vs 8")


def emit_strategies(step: Step, label: str, rows: list[dict], rate: str, unit: str, what: str) -> None:
    """Each training strategy's rate, and the largest weight difference from the reference's (the step
    fails above WEIGHT_TOLERANCE)."""
    for row in rows:
        step.emit(f"{label}.{row['strategy']}", round(row[rate]), unit,
                  f"{row['ratio']:.2f}× reference, max |Δw| {row['max_diff']:.1e}; {what}")
    worst = max(row["max_diff"] for row in rows)
    step.emit(f"{label}.max_weight_difference", worst, "", f"tolerance {WEIGHT_TOLERANCE:g}")
    if worst > WEIGHT_TOLERANCE:
        raise SystemExit(f"{label}: the strategies' weights differ by {worst:.1e} > {WEIGHT_TOLERANCE:g}")


def projection(step: Step) -> None:
    """GPU-hours of the paper configs' parts whose rates were measured (see ``project``)."""
    rates = {row["metric"]: (row["value"], row["note"]) for row in read_rows(step.prior)
             if row["metric"].startswith("rate.")}
    step.emit("rates_found", len(rates), "", " ".join(sorted(rates)))
    for path in PROJECTED_CONFIGS:
        name = Path(path).stem
        parts, unmeasured = project(load_config(REPO / path), rates)
        unit = "GPU-h" if step.settings["device"] == "cuda" else "CPU-h"
        for metric, hours, note in parts:
            step.emit(f"{name}.{metric}", round(hours, 2) if hours is not None else "-", unit, note)
        step.emit(f"{name}.measured_total", round(sum(h for _, h, _ in parts if h is not None), 2), unit,
                  f"{step.mode} rates; not projected: {', '.join(unmeasured) or 'nothing'}")


# ----------------------------------------------------------------------------- projection

# training images and test images of each real source, and its image side
SOURCES = {"cifar10": (50_000, 10_000, 32), "mnist": (60_000, 10_000, 28), "fashion_mnist": (60_000, 10_000, 28)}
ENSEMBLE_METHODS = {"dpa": 1, "fa": None}  # models each training image meets: 1, or FA's d


def load_config(path: Path) -> dict:
    """A paper config merged over config/config.yaml (as Snakemake merges them), defaults filled."""
    import yaml
    from snakemake.utils import update_config

    from robustcert.config import validate_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(config, yaml.safe_load(path.read_text()))
    validate_config(config, REPO / "config/schemas")
    return config


def project(config: dict, rates: dict[str, tuple]) -> tuple[list[tuple[str, float | None, str]], list[str]]:
    """Per defense, (metric, GPU-hours or None where its rate is missing, how it was counted), and the
    defenses (or parts) this check has no rate for: ensemble training of DPA and FA (at the batched
    training rate of their architecture), certification of smoothing (at CERTIFY's rate of the
    architecture and variant) and of patch smoothing (per ablation)."""
    from robustcert.config import experiments

    cells: dict[str, list[str]] = {}
    for cell in experiments(config):
        cells.setdefault(cell.defense, []).append(cell.dataset)
    parts, unmeasured = [], []
    for defense, datasets in cells.items():
        entry = config["defenses"][defense]
        counted = COUNTERS.get(entry["method"])
        if counted is None:
            unmeasured.append(f"{defense} ({entry['method']})")
            continue
        for metric, work, rate_name, what in counted(entry, [(d, config["datasets"][d]) for d in datasets]):
            rate = rates.get(rate_name)
            hours = None if rate is None else work * seconds_per_unit(rate_name, rate[0]) / 3600
            parts.append((f"{defense}.{metric}", hours, f"{what}; {rate_name} " +
                          ("not measured" if rate is None else f"= {rate[0]:.4g} ({rate[1]})")))
        unmeasured.extend(f"{defense} ({part})" for part in UNMEASURED_PARTS.get(entry["method"], []))
    return parts, unmeasured


def seconds_per_unit(rate_name: str, value: float) -> float:
    """Training rates are images/s; certification rates are seconds per sample or image."""
    return 1 / value if rate_name.startswith("rate.train.") else value


def training_images(dataset: dict) -> int:
    train, _, _ = SOURCES[dataset["source"]]
    share = len(dataset["classes"]) / 10 if dataset.get("classes") else 1
    return round((train - dataset["n_val"]) * share)


def test_points(dataset: dict, entry: dict) -> int:
    _, test, _ = SOURCES[dataset["source"]]
    share = len(dataset["classes"]) / 10 if dataset.get("classes") else 1
    return len(entry["test_indices"]) if entry.get("test_indices") else math.ceil(test * share / entry["skip"])


def ensemble_work(entry: dict, datasets: list[tuple[str, dict]]) -> list[tuple[str, float, str, str]]:
    """Training image passes of all the defense's ensembles, and of its first one alone."""
    copies = entry.get("d", 1) if entry["method"] == "fa" else 1
    epochs, rate = entry["train"]["epochs"], f"rate.train.{entry['arch']}"
    how = f"{entry['k'] * copies} models, {epochs} epochs, no augmentation cost"
    each = f" × d={copies}" if copies > 1 else ""
    first, images = training_images(datasets[0][1]), sum(training_images(d) for _, d in datasets)
    return [("training", epochs * copies * images, rate,
             f"{len(datasets)} ensemble(s) of {how}, {images} training images{each}"),
            (f"training_one_ensemble_{datasets[0][0]}", epochs * copies * first, rate,
             f"{how}, {first} training images{each}")]


def smoothing_work(entry: dict, datasets: list[tuple[str, dict]]) -> list[tuple[str, float, str, str]]:
    """Noisy samples classified by CERTIFY over all test points and σ."""
    variant = "-".join(flag for flag, on in (("bf16", entry.get("bf16")), ("compiled", entry.get("compile"))) if on)
    points = sum(test_points(d, entry) for _, d in datasets) * len(entry["sigmas"])
    return [("certification", points * (entry["n0"] + entry["n"]), f"rate.certify.{entry['arch']}.{variant or 'fp32'}",
             f"{points} certifications (test points × σ) of n0 + n = {entry['n0'] + entry['n']} samples")]


def patch_work(entry: dict, datasets: list[tuple[str, dict]]) -> list[tuple[str, float, str, str]]:
    """Test images certified, per ablation."""
    points = sum(test_points(d, entry) for _, d in datasets)
    return [(f"certification_{a['kind']}_{a['size']}", points, f"rate.patch.{entry['arch']}.{a['kind']}_{a['size']}",
             f"{points} test points") for a in entry["ablations"]]


COUNTERS: dict[str, Callable] = {"dpa": ensemble_work, "fa": ensemble_work, "smoothing": smoothing_work,
                                 "patch": patch_work}
UNMEASURED_PARTS = {"smoothing": ["base-model training"], "patch": ["base-model training", "patch attack"]}


# ----------------------------------------------------------------------------- orchestration

STEPS: dict[str, Callable[[Step], None]] = {f.__name__: f for f in (
    setup, environment, cuda_tests, snakemake_gpu1, snakemake_gpu2, train_shard, certify, patch_certify, rab_train,
    projection, certify_compiled)}  # compiling comes last: the slowest step, and no paper config compiles


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_step(name: str, mode: str, work: Path, log, timeout: float) -> tuple[str, float, str]:
    """Run one step in a new process group; its status, seconds and last line of output. A timeout kills
    the whole group."""
    rows, prior = work / f"{name}.rows.jsonl", work / "all.rows.jsonl"
    rows.unlink(missing_ok=True)
    log.write(f"\n===== {name} ({mode}, timeout {timeout:.0f} s) {time.strftime('%H:%M:%S')}\n")
    log.flush()
    begin = log.tell()
    command = [sys.executable, __file__, "--mode", mode, "--work", str(work), "--run-step", name]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=step_environment())
    try:
        status = {0: "ok", SKIPPED: "skipped"}.get(process.wait(timeout=timeout), f"failed (exit {process.returncode})")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        status = "timeout"
    seconds = time.perf_counter() - start
    with prior.open("a") as out:
        out.writelines(json.dumps(row) + "\n" for row in read_rows(rows))
    output = Path(log.name).read_text(errors="replace")[begin:].strip().splitlines()
    log.write(f"===== {name}: {status} after {seconds:.1f} s\n")
    log.flush()
    return status, seconds, output[-1] if output else ""


def step_environment() -> dict[str, str]:
    """The environment of a step: the repository's src/ and benchmarks/ importable, output unbuffered."""
    path = os.pathsep.join(filter(None, [str(REPO / "src"), str(BENCHMARKS), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def check(mode: str, out: Path, steps: list[str]) -> Path:
    """Run the steps one after another within the mode's budget; write out/gpu_check.tsv and .log."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))  # not under out: only the TSV and the log go there
    deadline = time.monotonic() + MODES[mode]["budget"]
    table = out / "gpu_check.tsv"
    with (out / "gpu_check.log").open("w") as log, table.open("w", newline="") as tsv:
        writer = csv.writer(tsv, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for name in steps:
            left = deadline - time.monotonic()
            if left < 5:
                status, seconds, last = "no time left", 0.0, ""
            else:
                status, seconds, last = run_step(name, mode, work, log, min(MODES[mode]["timeouts"][name], left))
            rows = read_rows(work / f"{name}.rows.jsonl")
            if status != "ok" or not rows:
                rows.append({"metric": "last_output", "value": "-", "unit": "", "note": last[:300]})
            for row in rows:
                writer.writerow([name, status, f"{seconds:.1f}", row["metric"], row["value"], row["unit"], row["note"]])
            tsv.flush()
            print(f"{name:<18} {status:<16} {seconds:7.1f} s  {len(rows)} figure(s)", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=os.environ.get("OUT"),
                        help="folder for gpu_check.tsv and gpu_check.log (default: $OUT)")
    parser.add_argument("--cpu-smoke", action="store_true", help="the same steps on the CPU at toy sizes")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="only these steps")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-step", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_step:  # inside one step's process
        work = args.work
        STEPS[args.run_step](Step(args.run_step, args.mode, work, work / f"{args.run_step}.rows.jsonl",
                                  work / "all.rows.jsonl"))
        return
    if args.out is None:
        parser.error("give a folder for the results, or set $OUT")
    mode = "cpu-smoke" if args.cpu_smoke else "gpu"
    print(f"gpu_check ({mode}): {check(mode, args.out, args.steps)}")


if __name__ == "__main__":
    main()
