"""Throughput of CERTIFY's Monte Carlo loop: robustcert.smoothing.Smooth against a reference-style loop.

The reference loop (locuslab/smoothing code/core.py) draws per batch of 400: ``x.repeat``,
``randn_like``, forward, argmax, and counts with numpy ``bincount``, under ``no_grad``. Every variant
runs on the same weights in the same process, in interleaved rounds: each round times every variant
once, so a slow spell of a shared machine hits them alike. A variant's ratio is the median over
rounds of (reference time / its time) in that round, printed with the lowest and highest round.

It also times, in the same rounds, float32 ``torch.mm`` products of 1024² matrices that add up to the
FLOPs of the certify call (the model's FLOPs per sample, counted by ``torch.utils.flop_counter``,
times n0 + n): the compute floor, the ratio that no float32 implementation computing the same layers
directly (no Winograd or FFT convolutions) can pass on this machine: it would have to run every layer,
and the noise, at the speed of a large matrix product.
Models are randomly initialised: speed does not depend on the weights.

    python benchmarks/certify.py --threads 2 [--n 20000] [--bf16] [--compiled]
    python benchmarks/certify.py --device cuda --models resnet110 --n 100000 --bf16   # the paper's setting
    python benchmarks/certify.py --device cuda --models resnet110 --n 100000 --variants compiled --rounds 1
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from robustcert.device import select_device
from robustcert.models import build_model
from robustcert.smoothing import Smooth, auto_batch_size

MODELS = {"lenet": ("MNIST CNN (LeNet)", 1, 28), "resnet20": ("CIFAR ResNet-20", 3, 32),
          "resnet110": ("CIFAR ResNet-110", 3, 32)}
NUM_CLASSES, SIGMA, N0, ALPHA = 10, 0.25, 100, 0.001
REFERENCE_BATCH = 400
# our variants by name: (bf16, compiled)
VARIANTS = {"fp32": (False, False), "bf16": (True, False), "compiled": (False, True), "bf16-compiled": (True, True)}
FLOOR = "fp32 compute floor"


def reference_counts(model: nn.Module, x: torch.Tensor, num: int) -> np.ndarray:
    """The reference's ``_sample_noise``, with ``bincount`` for its Python counting loop."""
    with torch.no_grad():
        counts = np.zeros(NUM_CLASSES, dtype=int)
        for _ in range(math.ceil(num / REFERENCE_BATCH)):
            this_batch_size = min(REFERENCE_BATCH, num)
            num -= this_batch_size
            batch = x.repeat((this_batch_size, 1, 1, 1))
            noise = torch.randn_like(batch) * SIGMA
            predictions = model(batch + noise).argmax(1)
            counts += np.bincount(predictions.cpu().numpy(), minlength=NUM_CLASSES)
        return counts


def interleaved_seconds(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each run in each of ``rounds`` rounds, after one warm-up round (compilation included)."""
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def matmul_workload(flops: float, device: torch.device, size: int = 1024) -> tuple[Callable[[], None], float]:
    """A run of float32 ``size``² matrix products adding up to about ``flops``, and its exact FLOPs."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    out = torch.empty(size, size, device=device)
    products = max(1, round(flops / (2 * size**3)))

    def run() -> None:
        for _ in range(products):
            torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run, products * 2 * size**3


def flops_per_sample(model: nn.Module, x: torch.Tensor) -> float:
    """Forward-pass FLOPs of the model for one input, as torch's flop counter counts them."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x.unsqueeze(0))
    return counter.get_total_flops()


def benchmark(arch: str, channels: int, size: int, args: argparse.Namespace) -> tuple[int, dict[str, list[float]]]:
    """Our batch size, and per-round seconds of the reference loop, of each of our variants and of the
    compute floor (its matrix products' seconds scaled to the exact FLOPs of a certify call)."""
    torch.manual_seed(0)
    model = build_model(arch, channels, NUM_CLASSES, size, [0.5] * channels, [0.25] * channels)
    model = model.to(args.device).eval()
    x = torch.rand(channels, size, size, device=args.device)
    batch_size = args.batch_size or auto_batch_size(args.device, x.shape)
    runs = {"reference": lambda: (reference_counts(model, x, N0), reference_counts(model, x, args.n))}
    for variant in chosen_variants(args):
        bf16, compiled = VARIANTS[variant]
        smooth = Smooth(copy.deepcopy(model), NUM_CLASSES, SIGMA, 0, bf16=bf16, channels_last=True, compiled=compiled)
        runs[variant_label(variant)] = lambda smooth=smooth: smooth.certify(x, N0, args.n, ALPHA, batch_size)
    certify_flops = flops_per_sample(model, x) * (N0 + args.n)
    runs[FLOOR], floor_flops = matmul_workload(certify_flops, args.device)
    seconds = interleaved_seconds(runs, args.rounds)
    seconds[FLOOR] = [t * certify_flops / floor_flops for t in seconds[FLOOR]]
    return batch_size, seconds


def chosen_variants(args: argparse.Namespace) -> list[str]:
    """``--variants``, else fp32 with bf16 and compiled as ``--bf16`` and ``--compiled`` ask (and both together)."""
    if args.variants:
        return args.variants
    return [name for name, (bf16, compiled) in VARIANTS.items()
            if (args.bf16 or not bf16) and (args.compiled or not compiled)]


def variant_label(variant: str) -> str:
    """How a variant is named in the printed table: "ours", "ours bf16", "ours compiled", "ours bf16 compiled"."""
    return " ".join(["ours", *(flag for flag in variant.split("-") if flag != "fp32")])


def report(label: str, batch_size: int, seconds: dict[str, list[float]], samples: int) -> None:
    """One line per variant: batch, best samples/s and seconds per test point, and the median ratio
    with its round range."""
    reference = seconds["reference"]
    for name, times in seconds.items():
        ratios = [r / t for r, t in zip(reference, times)]
        batch = {"reference": str(REFERENCE_BATCH), FLOOR: ""}.get(name, str(batch_size))
        print(f"{label:<20} {name:<20} {batch:>6} {samples / min(times):>10.0f} {min(times):>8.3f} "
              f"{statistics.median(ratios):>8.2f}   [{min(ratios):.2f}, {max(ratios):.2f}]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["lenet", "resnet20"])
    parser.add_argument("--n", type=int, default=10_000, help="estimation samples per certify call")
    parser.add_argument("--batch-size", type=int, help="our batch (default: auto_batch_size for the device)")
    parser.add_argument("--bf16", action="store_true", help="also time ours under bfloat16 autocast")
    parser.add_argument("--compiled", action="store_true", help="also time ours with torch.compile")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS,
                        help="exactly these variants of ours (instead of fp32 and what --bf16, --compiled add)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = select_device(args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads, n0={N0}, n={args.n}; noisy samples classified "
          "per second and seconds per test point (best round), and × reference (median over rounds, "
          "[lowest, highest])")
    print(f"{'model':<20} {'variant':<20} {'batch':>6} {'samples/s':>10} {'s/point':>8} {'× ref':>8}   range")
    for arch in args.models:
        label, channels, size = MODELS[arch]
        batch_size, seconds = benchmark(arch, channels, size, args)
        report(label, batch_size, seconds, N0 + args.n)

if __name__ == "__main__":
    main()
