"""Throughput of RAB's training: N models, each on the whole training set plus its own fixed noise draw.

RAB's cost is N × one model's training (docs/methods.md §3). This trains the same N models on scikit-learn's
digits (6 vs 8, as the default config) three ways in this process and prints models per hour and the
ratio against the plain baseline:
  reference   one model after another, a DataLoader over a TensorDataset of the noisy set, torch's Adam
              (the shape of RAB's own training loop)
  sequential  robustcert's lean loop (in-memory tensors, channels_last)
  batched     all N at once, robustcert's vmap over stacked parameters with a functional Adam
All three draw the same noise, initial weights and batch order; the maximal weight difference is shown.

    python benchmarks/rab_train.py --models 8 32 --epochs 2 [--device cuda] [--optimizer sgd]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from train_shard import max_difference, timed

from robustcert import data, partition, train
from robustcert.device import select_device


def reference_style(x: np.ndarray, y: np.ndarray, parts: partition.Partition, subsets: list[int],
                    spec: train.ModelSpec, cfg: train.TrainConfig, device: torch.device) -> list[dict]:
    """One model after another: its noisy copy of the training set, a DataLoader, torch's optimiser."""
    states = []
    for j in subsets:
        idx = parts.subset(j)  # the whole set, in content order
        clean = torch.from_numpy(x[idx]).float() / 255.0
        generator = torch.Generator().manual_seed(cfg.seed + j)
        noisy = clean + cfg.noise_sigma * torch.randn(clean.shape, generator=generator)
        dataset = TensorDataset(noisy, torch.from_numpy(y[idx]))
        torch.manual_seed(cfg.seed + j)
        model = spec.build(parts.mean[j], parts.std[j]).to(device).train()
        optimizer = (torch.optim.Adam(model.parameters(), lr=cfg.lr) if cfg.optimizer == "adam" else
                     torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                     weight_decay=cfg.weight_decay))
        for _ in range(cfg.epochs):
            loader = DataLoader(dataset, batch_sampler=train.epoch_batches(len(idx), cfg.batch_size, generator))
            for inputs, labels in loader:
                loss = F.cross_entropy(model(inputs.to(device)), labels.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        states.append({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return states


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--optimizer", default="adam", choices=train.OPTIMIZERS)
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    return parser.parse_args(argv)


def digits_6_vs_8() -> data.Split:
    """The default config's RAB task: digits 6 vs 8."""
    return data.restrict_classes(data.split_source(data.load_source("digits", "unused"), 100, 600, 0), [6, 8])


def train_config(args: argparse.Namespace, **extra) -> train.TrainConfig:
    return train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             lr=1e-3 if args.optimizer == "adam" else 0.05, milestones=(), objective="fixed_noise",
                             noise_sigma=args.sigma, optimizer=args.optimizer, weight_decay=0.0, seed=0, **extra)


def compare(n: int, split: data.Split, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The N models trained by each strategy: models per hour, × reference and max |Δw| against the reference."""
    x, y = split.x_train, split.y_train
    spec = train.ModelSpec.for_split(args.arch, split)
    parts = partition.assign("whole", x, y, n)
    subsets = list(range(n))
    ref, t_ref = timed(reference_style, x, y, parts, subsets, spec, train_config(args), device)
    rows = [dict(N=n, strategy="reference", models_per_h=3600 * n / t_ref, ratio=1.0, max_diff=0.0, seconds=t_ref)]
    for strategy in ("sequential", "batched"):
        ours, t = timed(train.train_shard, x, y, parts, subsets, spec, train_config(args, strategy=strategy), device)
        rows.append(dict(N=n, strategy=strategy, models_per_h=3600 * n / t, ratio=t_ref / t,
                         max_diff=max_difference(ref, ours), seconds=t))
    return rows


def warm_up(split: data.Split, args: argparse.Namespace, device: torch.device) -> None:
    """One reference model, so that the first timing does not pay for the device's start."""
    x, y = split.x_train, split.y_train
    reference_style(x, y, partition.assign("whole", x, y, 1), [0], train.ModelSpec.for_split(args.arch, split),
                    train_config(args), device)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    split = digits_6_vs_8()
    print(f"device {device}, {args.threads} threads, {args.arch}, digits 6 vs 8 ({len(split.y_train)} training "
          f"images), σ {args.sigma}, {args.optimizer}, {args.epochs} epochs, batch {args.batch_size}")
    print(f"{'N':>4} {'strategy':>11} {'models/h':>10} {'× reference':>12} {'max |Δw|':>10}")
    warm_up(split, args, device)
    for n in args.models:
        for row in compare(n, split, args, device):
            print(f"{n:>4} {row['strategy']:>11} {row['models_per_h']:>10.0f} {row['ratio']:>12.2f} "
                  f"{row['max_diff']:>10.1e}")


if __name__ == "__main__":
    main()
