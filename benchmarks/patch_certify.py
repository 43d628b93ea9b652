"""Throughput of derandomized patch certification: robustcert.patch.PatchSmooth against a reference-style loop.

The reference loop (Levine & Feizi's certify code) takes a batch of images and, one position at a
time, builds that position's ablated batch, runs the model, applies softmax and the threshold, and adds
the votes to numpy counts. Ours packs positions × images into forward passes sized to the device, builds
the ablated batch with one gather of the kept masks and counts on the device. Both count the votes of
every position for θ = 0.2 and for the top class, on the same weights, in interleaved rounds (as
benchmarks/certify.py): the ratio is the median over rounds of reference time / ours. The fp32 compute
floor (matrix products of the same FLOPs) is timed in the same rounds.

    python benchmarks/patch_certify.py --threads 2 [--arch resnet18] [--images 2] [--device cuda] [--size 32]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from certify import flops_per_sample, interleaved_seconds, matmul_workload

from robustcert.ablation import Ablation
from robustcert.device import select_device
from robustcert.models import build_model
from robustcert.patch import PatchSmooth, all_masks, auto_batch_size, encode

NUM_CLASSES, CHANNELS, THRESHOLD = 10, 3, 0.2
ABLATIONS = {"band s=4": ("band", 4), "block s=4": ("block", 4)}  # label: (kind, size)
FLOOR = "fp32 compute floor"


def reference_counts(model: torch.nn.Module, x: torch.Tensor, ablation: Ablation) -> tuple[np.ndarray, np.ndarray]:
    """Votes [n, C] for θ and for the top class, one position at a time for the whole batch of images."""
    thresholded = np.zeros((len(x), NUM_CLASSES), dtype=np.int64)
    top = np.zeros((len(x), NUM_CLASSES), dtype=np.int64)
    masks = all_masks(ablation, x.device)
    with torch.no_grad():
        for position in range(ablation.num_positions):
            probs = F.softmax(model(encode(x, masks[position].expand(len(x), -1, -1))), dim=1).cpu().numpy()
            thresholded += probs >= THRESHOLD
            top[np.arange(len(x)), probs.argmax(axis=1)] += 1
    return thresholded, top


def benchmark(ablation: Ablation, args: argparse.Namespace) -> tuple[int, dict[str, list[float]]]:
    """Our batch size, and per-round seconds of the reference loop, ours and the compute floor."""
    torch.manual_seed(0)
    model = build_model(args.arch, 2 * CHANNELS, NUM_CLASSES, args.size, [0.0] * 2 * CHANNELS, [1.0] * 2 * CHANNELS)
    model = model.to(args.device).eval()
    x = torch.rand(args.images, CHANNELS, args.size, args.size, device=args.device)
    batch_size = args.batch_size or auto_batch_size(args.device, (CHANNELS, args.size, args.size))
    smooth = PatchSmooth(model, NUM_CLASSES, ablation, CHANNELS, batch_size)
    ours, theirs = smooth.vote_counts(x, [THRESHOLD]), reference_counts(model, x, ablation)
    assert np.array_equal(ours[f"theta_{THRESHOLD:g}"], theirs[0]) and np.array_equal(ours["top_one"], theirs[1])
    runs = {"reference": lambda: reference_counts(model, x, ablation),
            "ours": lambda: smooth.vote_counts(x, [THRESHOLD])}
    flops = flops_per_sample(model, encode(x[:1], all_masks(ablation, x.device)[:1])[0]) * ablation.num_positions * len(x)
    runs[FLOOR], floor_flops = matmul_workload(flops, args.device)
    seconds = interleaved_seconds(runs, args.rounds)
    seconds[FLOOR] = [t * flops / floor_flops for t in seconds[FLOOR]]
    return batch_size, seconds


def report(label: str, batch_size: int, seconds: dict[str, list[float]], images: int) -> None:
    """One line per variant: batch, best seconds per image, and the median ratio with its round range."""
    for name, times in seconds.items():
        ratios = [r / t for r, t in zip(seconds["reference"], times)]
        batch = {"reference": f"{images}", FLOOR: ""}.get(name, str(batch_size))
        print(f"{label:<12} {name:<20} {batch:>6} {min(times) / images:>10.3f} {statistics.median(ratios):>8.2f}"
              f"   [{min(ratios):.2f}, {max(ratios):.2f}]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--arch", default="resnet18", help="base classifier (2C input channels)")
    parser.add_argument("--images", type=int, default=2, help="images certified per call")
    parser.add_argument("--size", type=int, default=32, help="image side (32: CIFAR size)")
    parser.add_argument("--ablations", nargs="+", choices=ABLATIONS, default=list(ABLATIONS))
    parser.add_argument("--batch-size", type=int, help="our ablated inputs per pass (default: auto_batch_size)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    return parser.parse_args(argv)


def ablation_of(label: str, size: int) -> Ablation:
    """The ablation of one ``ABLATIONS`` label on images of side ``size``."""
    kind, side = ABLATIONS[label]
    return Ablation(kind, side, size, size)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = select_device(args.device)
    print(f"device {args.device}, {torch.get_num_threads()} threads, {args.arch} on "
          f"{args.size}×{args.size}×{CHANNELS}, {args.images} images, {args.rounds} rounds")
    print(f"{'ablation':<12} {'variant':<20} {'batch':>6} {'s/image':>10} {'× ref':>8}   [round range]")
    for label in args.ablations:
        batch_size, seconds = benchmark(ablation_of(label, args.size), args)
        report(label, batch_size, seconds, args.images)


if __name__ == "__main__":
    main()
