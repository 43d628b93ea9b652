"""Throughput of PatchCleanser's prediction map: robustcert.patchcleanser.Cleanser against a reference-style loop.

The reference loop (inspire-group/PatchCleanser's precomputed certification) takes a batch of images
and, one mask pair at a time, builds that pair's masked batch, runs the model and writes the argmax
into the prediction map. Ours packs pairs × images into forward passes sized to the device, building
each masked image with one gather of its pair's mask. Both compute the whole map (k²(k²+1)/2 pairs: 666
for k = 6) of the same CIFAR-size images on the same weights, in interleaved rounds (as
benchmarks/certify.py): the ratio is the median over rounds of reference time / ours.

    python benchmarks/patchcleanser_certify.py --threads 2 [--arch resnet18] [--images 2] [--k 6] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from certify import interleaved_seconds

from robustcert.device import select_device
from robustcert.models import build_model
from robustcert.patchcleanser import Cleanser, auto_batch_size, mask_tensor, pairs

NUM_CLASSES, CHANNELS, SIZE, PATCH, VALUE = 10, 3, 32, 5, 0.0


def reference_map(model: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """The prediction map [n, M, M], one mask pair at a time for the whole batch of images."""
    count = len(masks)
    prediction_map = np.zeros((len(x), count, count), dtype=np.int64)
    with torch.no_grad():
        for i in range(count):
            for j in range(i, count):
                masked = torch.where(masks[i] | masks[j], torch.tensor(VALUE, device=x.device), x)
                predictions = model(masked).argmax(dim=1).cpu().numpy()
                prediction_map[:, i, j] = prediction_map[:, j, i] = predictions
    return prediction_map


def benchmark(args: argparse.Namespace) -> tuple[int, dict[str, list[float]]]:
    """Our batch size, and per-round seconds of the reference loop and ours."""
    torch.manual_seed(0)
    model = build_model(args.arch, CHANNELS, NUM_CLASSES, SIZE, [0.5] * CHANNELS, [0.25] * CHANNELS)
    model = model.to(args.device).eval()
    x = torch.rand(args.images, CHANNELS, SIZE, SIZE, device=args.device)
    batch_size = args.batch_size or auto_batch_size(args.device, (CHANNELS, SIZE, SIZE))
    cleanser = Cleanser(model, SIZE, SIZE, PATCH, args.k, VALUE, batch_size)
    masks = mask_tensor(SIZE, SIZE, PATCH, args.k, args.device)
    maps: dict[str, np.ndarray] = {}
    runs = {"reference": lambda: maps.setdefault("reference", reference_map(model, x, masks)),
            "ours": lambda: maps.setdefault("ours", cleanser.prediction_map(x))}
    seconds = interleaved_seconds(runs, args.rounds)
    assert np.array_equal(maps["reference"], maps["ours"]), "the two prediction maps differ"
    return batch_size, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--arch", default="resnet18", help="the classifier (3 input channels)")
    parser.add_argument("--images", type=int, default=2, help="CIFAR-size images certified per call")
    parser.add_argument("--k", type=int, default=6, help="masks per axis (the reference's 6)")
    parser.add_argument("--batch-size", type=int, help="our masked images per pass (default: auto_batch_size)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = select_device(args.device)
    count = len(pairs(args.k * args.k)[0])
    print(f"device {args.device}, {torch.get_num_threads()} threads, {args.arch} on {SIZE}×{SIZE}×{CHANNELS}, "
          f"k={args.k} ({count} mask pairs, patch {PATCH}×{PATCH}), {args.images} images, {args.rounds} rounds")
    batch_size, seconds = benchmark(args)
    print(f"{'variant':<10} {'batch':>6} {'s/image':>10} {'× ref':>8}   [round range]")
    for name, times in seconds.items():
        ratios = [r / t for r, t in zip(seconds["reference"], times)]
        batch = str(args.images) if name == "reference" else str(batch_size)
        print(f"{name:<10} {batch:>6} {min(times) / args.images:>10.3f} {statistics.median(ratios):>8.2f}"
              f"   [{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
