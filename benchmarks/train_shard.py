"""Throughput of training K small models: reference-style loop vs ours, one after another vs batched.

Three strategies train the same K models (same seeds, same data order) in this process:
  reference   one after another, a per-model DataLoader over a TensorDataset (as the DPA code does)
  sequential  one after another, robustcert's lean loop (in-memory tensors, channels_last)
  batched     all K at once, robustcert's vmap over stacked parameters
It checks that all three reach the same weights (within float tolerance; partitions of unequal
size included) and prints images/s and the ratios against the reference.

    python benchmarks/train_shard.py --models 10 50 --images 1000 --epochs 2 [--device cuda] [--arch nin]
    python benchmarks/train_shard.py --device cuda --arch nin --models 50 --size 32 --channels 3   # CIFAR size
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from robustcert import partition, train
from robustcert.device import select_device


def reference_style(x: np.ndarray, y: np.ndarray, parts: partition.Partition, subsets: list[int],
                    spec: train.ModelSpec, cfg: train.TrainConfig, device: torch.device) -> list[dict]:
    """One model after another with a DataLoader per model (no augmentation, our batch order)."""
    states = []
    for j in subsets:
        idx = parts.subset(j)
        dataset = TensorDataset(torch.from_numpy(x[idx]).float() / 255.0, torch.from_numpy(y[idx]))
        generator = torch.Generator().manual_seed(cfg.seed + j)
        torch.manual_seed(cfg.seed + j)
        model = spec.build(parts.mean[j], parts.std[j]).to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                    weight_decay=cfg.weight_decay)
        for epoch in range(cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(epoch)
            loader = DataLoader(dataset, batch_sampler=train.epoch_batches(len(idx), cfg.batch_size, generator))
            for inputs, labels in loader:
                inputs, labels = inputs.to(device), labels.to(device)
                loss = F.cross_entropy(model(inputs), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return states


def synthetic_partitions(num_models: int, images: int, size: int, channels: int = 1, seed: int = 0):
    """~``images`` learnable images per partition, partitioned by the DPA hash (unequal sizes)."""
    rng = np.random.default_rng(seed)
    n = num_models * images
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 90, size=(n, channels, size, size)).astype(np.uint8)
    x[np.arange(n), 0, (y * size) // 10, :] = 240
    return x, y, partition.partition_dataset(x, y, num_models)


def timed(fn, *args) -> tuple[list[dict], float]:
    start = time.perf_counter()
    out = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def max_difference(a: list[dict], b: list[dict]) -> float:
    return max((sa[k].float() - sb[k].float()).abs().max().item() for sa, sb in zip(a, b) for k in sa)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--images", type=int, default=1000, help="images per model (about)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--size", type=int, default=28, help="image side")
    parser.add_argument("--channels", type=int, default=1, help="image channels (3: CIFAR-size)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args(argv)


def compare(k: int, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The K models trained by each strategy: its images/s, × reference and max |Δw| against the reference."""
    x, y, parts = synthetic_partitions(k, args.images, args.size, args.channels)
    spec = train.ModelSpec(args.arch, args.channels, 10, args.size)
    subsets = list(range(k))
    seen = args.epochs * len(y)
    base = dict(epochs=args.epochs, batch_size=args.batch_size, lr=0.01, milestones=(), seed=0)
    ref, t_ref = timed(reference_style, x, y, parts, subsets, spec, train.TrainConfig(**base), device)
    rows = [dict(K=k, strategy="reference", images_per_s=seen / t_ref, ratio=1.0, max_diff=0.0, seconds=t_ref)]
    for strategy in ("sequential", "batched"):
        cfg = train.TrainConfig(**base, strategy=strategy)
        ours, t = timed(train.train_shard, x, y, parts, subsets, spec, cfg, device)
        rows.append(dict(K=k, strategy=strategy, images_per_s=seen / t, ratio=t_ref / t,
                         max_diff=max_difference(ref, ours), seconds=t))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"device {device}, {args.threads} threads, arch {args.arch}, {args.channels}×{args.size}×{args.size}, "
          f"{args.epochs} epochs, batch {args.batch_size}")
    print(f"{'K':>4} {'strategy':>11} {'images/s':>10} {'× reference':>12} {'max |Δw|':>10}")
    for k in args.models:
        for row in compare(k, args, device):
            print(f"{k:>4} {row['strategy']:>11} {row['images_per_s']:>10.0f} {row['ratio']:>12.2f} "
                  f"{row['max_diff']:>10.1e}")


if __name__ == "__main__":
    main()
