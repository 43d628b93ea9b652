"""Throughput of CERTIFY's Monte Carlo loop: robustcert.smoothing.Smooth against a reference-style loop.

The reference loop (locuslab/smoothing code/core.py) draws per batch of 400: ``x.repeat``,
``randn_like``, forward, argmax, and counts with numpy ``bincount``, under ``no_grad``. Both run
on the same weights in the same process, in alternating rounds; the best round of each is reported,
which keeps the ratio fair on a shared machine. Models are randomly initialised: speed does not
depend on the weights.

    python benchmarks/certify.py --threads 2 [--device cuda] [--n 20000] [--bf16]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from robustcert.device import select_device
from robustcert.models import build_model
from robustcert.smoothing import Smooth

MODELS = {"MNIST CNN (LeNet)": ("lenet", 1, 28), "CIFAR ResNet-20": ("resnet20", 3, 32)}
NUM_CLASSES, SIGMA, N0, ALPHA = 10, 0.25, 100, 0.001
REFERENCE_BATCH = 400
# On a CPU a batch whose input is about 1.2 MB stays in cache (best for LeNet near 400, ResNet-20 near 100).
CPU_BATCH_VALUES, CUDA_BATCH = 300_000, 4096


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


def best_rates(runs: dict[str, Callable[[], None]], samples: int, rounds: int) -> dict[str, float]:
    """Samples per second of each run, from its fastest of ``rounds`` alternating rounds."""
    for run in runs.values():  # warm-up
        run()
    best = dict.fromkeys(runs, math.inf)
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: samples / seconds for name, seconds in best.items()}


def benchmark(arch: str, channels: int, size: int, args: argparse.Namespace) -> tuple[int, dict[str, float]]:
    """Our batch size, and samples per second of the reference loop and of ours (fp32, and bf16)."""
    torch.manual_seed(0)
    model = build_model(arch, channels, NUM_CLASSES, size, [0.5] * channels, [0.25] * channels)
    model = model.to(args.device).eval()
    x = torch.rand(channels, size, size, device=args.device)
    batch_size = args.batch_size or (CUDA_BATCH if args.device.type == "cuda" else CPU_BATCH_VALUES // x.numel())
    runs = {"reference": lambda: (reference_counts(model, x, N0), reference_counts(model, x, args.n))}
    variants = {"ours": False, "ours bf16": True} if args.bf16 else {"ours": False}
    for name, bf16 in variants.items():
        smooth = Smooth(copy.deepcopy(model), NUM_CLASSES, SIGMA, 0, bf16=bf16, channels_last=True)
        runs[name] = lambda smooth=smooth: smooth.certify(x, N0, args.n, ALPHA, batch_size)
    return batch_size, best_rates(runs, N0 + args.n, args.rounds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--n", type=int, default=10_000, help="estimation samples per certify call")
    parser.add_argument("--batch-size", type=int, help="our batch (default: 1.2 MB of input on CPU, 4096 on CUDA)")
    parser.add_argument("--bf16", action="store_true", help="also time ours under bfloat16 autocast")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds; the best counts")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = select_device(args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads, n0={N0}, n={args.n}, "
          "noisy samples classified per second")
    print(f"{'model':<20} {'variant':<10} {'batch':>6} {'samples/s':>10} {'× reference':>12}")
    for label, spec in MODELS.items():
        batch_size, rates = benchmark(*spec, args)
        for name, rate in rates.items():
            batch = REFERENCE_BATCH if name == "reference" else batch_size
            print(f"{label:<20} {name:<10} {batch:>6} {rate:>10.0f} {rate / rates['reference']:>12.2f}")


if __name__ == "__main__":
    main()
