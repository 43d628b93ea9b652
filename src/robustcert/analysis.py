"""Certified accuracy of randomized smoothing: tables and plots from certify TSVs (docs/methods.md §1;
ref: locuslab/smoothing code/analyze.py).

A certify TSV has one row per test point and the columns ``idx label predict radius correct``
(``predict`` = −1 on abstention); the reference's files add ``time`` (in seconds, or as an
H:MM:SS.ffffff duration in its ImageNet files). Certified accuracy at r is the share of points that are correct with
radius ≥ r (abstentions count as wrong); the average certified radius (ACR) is the sum of the radii
of correct points over the number of points.

    python -m robustcert.analysis TSV... --labels σ=0.25 σ=0.50 --table table.tsv --plot plot
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from robustcert.artifacts import Column, TsvFormat
from robustcert.evaluate import CERTIFICATE
from robustcert.metrics import ABSTAIN, average_certified_radius, certified_accuracy

# the workflow's certificate TSVs, and the reference's, which add each point's wall-clock ``time``
CERTIFY = TsvFormat("certify", CERTIFICATE.columns, optional={"time": Column("str")})
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def read_certify_tsv(path: str | Path) -> pd.DataFrame:
    """A certify TSV, checked (:data:`CERTIFY`), with its ``time`` column (if any) in seconds (float),
    whichever format it was written in."""
    frame = CERTIFY.read(path)
    if "time" in frame:
        frame["time"] = _seconds(frame["time"], path)
    return frame


def certified_accuracy_table(frames: Mapping[str, pd.DataFrame], radii: Sequence[float]) -> pd.DataFrame:
    """One row per label: certified accuracy at each radius (columns ``r=…``), ``ACR``, ``abstain``
    (the share of abstentions) and ``best``, the radii at which this row's accuracy is the highest."""
    rows = {
        label: [
            *certified_accuracy(frame["radius"], frame["correct"], radii),
            average_certified_radius(frame["radius"], frame["correct"]),
            float((frame["predict"] == ABSTAIN).mean()),
        ]
        for label, frame in frames.items()
    }
    accuracy_columns = [f"r={r:.2f}" for r in radii]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[*accuracy_columns, "ACR", "abstain"])
    table.index.name = "label"
    is_best = table[accuracy_columns] == table[accuracy_columns].max(axis=0)
    table["best"] = [" ".join(c for c in accuracy_columns if is_best.at[label, c]) for label in table.index]
    return table


def main(argv: Sequence[str] | None = None) -> None:
    """The table (TSV, also printed) and the plot for certify TSVs given on the command line."""
    args = _parser().parse_args(argv)
    labels = args.labels or [str(path) for path in args.tsv]
    if len(labels) != len(args.tsv):
        raise SystemExit(f"{len(args.tsv)} TSVs but {len(labels)} labels")
    frames = {label: read_certify_tsv(path) for label, path in zip(labels, args.tsv)}
    table = certified_accuracy_table(frames, args.radii)
    print(table.to_string(float_format="{:.3f}".format))
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.table, sep="\t")
    if args.plot:
        from robustcert.plot import plot_certified_accuracy  # matplotlib: only when a plot is asked for

        plot_certified_accuracy(frames, args.plot, args.max_radius, args.title)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m robustcert.analysis", description=main.__doc__)
    parser.add_argument("tsv", nargs="+", type=Path, help="certify TSVs (idx label predict radius correct time)")
    parser.add_argument("--labels", nargs="+", help="one label per TSV (default: the paths)")
    parser.add_argument("--radii", nargs="+", type=float, default=list(DEFAULT_RADII), help="table radii")
    parser.add_argument("--table", type=Path, help="write the table to this TSV")
    parser.add_argument("--plot", help="write the plot to PLOT.png and PLOT.pdf")
    parser.add_argument("--max-radius", type=float, help="x range of the plot (default: from the data)")
    parser.add_argument("--title", help="plot title")
    return parser


def _seconds(time: pd.Series, path: str | Path) -> pd.Series:
    """Seconds from plain numbers or H:MM:SS.ffffff durations, value by value."""
    text = time.astype(str)
    numeric = pd.to_numeric(text, errors="coerce")
    durations = pd.to_timedelta(text.where(numeric.isna()), errors="coerce").dt.total_seconds()
    seconds = numeric.fillna(durations)
    if seconds.isna().any():
        raise ValueError(f"{path}: unreadable times {list(text[seconds.isna()][:3])}")
    return seconds


if __name__ == "__main__":
    main()
