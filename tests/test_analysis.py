"""Certified accuracy tables and plots; the published table of Cohen et al. from their raw outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustcert.analysis import (
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_table,
    main,
    read_certify_tsv,
)

RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
# docs/methods.md §1: CIFAR-10, ResNet-110, 500 test images, train σ = certify σ; accuracies at RADII, ACR.
PUBLISHED_CIFAR10 = {
    "0.12": ([0.81, 0.59, 0.00, 0.00, 0.00, 0.00, 0.00], 0.270),
    "0.25": ([0.75, 0.60, 0.43, 0.27, 0.00, 0.00, 0.00], 0.429),
    "0.50": ([0.65, 0.55, 0.41, 0.32, 0.23, 0.15, 0.09], 0.538),
    "1.00": ([0.47, 0.39, 0.34, 0.28, 0.22, 0.17, 0.14], 0.542),
}
# shared/reference README: ImageNet, ResNet-50, accuracies at r = 0.5, 1.0, …, 3.0.
PUBLISHED_IMAGENET = {
    "0.25": [0.49],
    "0.50": [0.46, 0.37, 0.29],
    "1.00": [0.38, 0.33, 0.26, 0.19, 0.15, 0.12],
}


@pytest.fixture(scope="module")
def reference() -> Path:
    shared = Path(os.environ.get("ROBUSTCERT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    path = shared / "reference" / "cohen2019-certify"
    if not path.is_dir():
        pytest.skip(f"reference certify outputs not found at {path} (set ROBUSTCERT_SHARED)")
    return path


def certify_file(reference: Path, dataset: str, sigma: str, train_sigma: str | None = None) -> Path:
    arch = "resnet110" if dataset == "cifar10" else "resnet50"
    return reference / dataset / arch / f"noise_{train_sigma or sigma}" / "test" / f"sigma_{sigma}"


def test_certified_accuracy_counts_correct_points_at_or_beyond_each_radius() -> None:
    radius = [0.0, 0.3, 0.5, 1.2]
    correct = [False, True, True, False]
    assert certified_accuracy(radius, correct, [0.0, 0.3, 0.31, 2.0]).tolist() == [0.5, 0.5, 0.25, 0.0]


def test_average_certified_radius_sums_correct_radii_over_all_points() -> None:
    assert average_certified_radius([0.0, 0.3, 0.5, 1.2], [False, True, True, False]) == pytest.approx(0.2)


def test_both_time_formats_parse_to_seconds(tmp_path: Path) -> None:
    path = tmp_path / "certify.tsv"
    path.write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "0\t3\t-1\t0.0\t0\t15.4\n"
        "20\t7\t7\t0.0734\t1\t0:00:13.771528\n"
        "40\t4\t4\t0.405\t1\t1:02:03.5\n"
    )
    assert read_certify_tsv(path)["time"].tolist() == pytest.approx([15.4, 13.771528, 3723.5])


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "certify.tsv"
    path.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t3\t3\t0.1\t1\tsoon\n")
    with pytest.raises(ValueError, match="unreadable times"):
        read_certify_tsv(path)
    path.write_text("idx\tlabel\tradius\n0\t3\t0.1\n")
    with pytest.raises(ValueError, match="not a certify TSV: columns"):
        read_certify_tsv(path)


def test_published_cifar10_table_is_reproduced(reference: Path) -> None:
    frames = {sigma: read_certify_tsv(certify_file(reference, "cifar10", sigma)) for sigma in PUBLISHED_CIFAR10}
    table = certified_accuracy_table(frames, RADII)
    for sigma, (accuracy, acr) in PUBLISHED_CIFAR10.items():
        assert table.loc[sigma, [f"r={r:.2f}" for r in RADII]].to_numpy(float).round(2).tolist() == accuracy
        assert round(table.loc[sigma, "ACR"], 3) == acr
    assert table["abstain"].round(3).tolist() == [0.038, 0.086, 0.166, 0.290]
    assert table["best"].tolist() == ["r=0.00", "r=0.25 r=0.50", "r=0.75 r=1.00", "r=1.25 r=1.50"]


def test_imagenet_files_parse_and_give_the_published_numbers(reference: Path) -> None:
    for sigma, accuracy in PUBLISHED_IMAGENET.items():
        frame = read_certify_tsv(certify_file(reference, "imagenet", sigma))
        assert len(frame) == (427 if sigma == "0.25" else 500)
        assert frame["time"].between(100, 200).all()  # about 2.5 minutes per image
        radii = 0.5 * np.arange(1, len(accuracy) + 1)
        assert certified_accuracy(frame["radius"], frame["correct"], radii).round(2).tolist() == accuracy


def test_every_reference_file_parses(reference: Path) -> None:
    files = [path for path in reference.rglob("sigma_*") if path.is_file()]
    assert len(files) == 13
    for path in files:
        frame = read_certify_tsv(path)
        assert frame["time"].dtype == float and (frame["time"] > 0).all()


def test_command_writes_table_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for sigma in (0.25, 0.5):
        radius = rng.uniform(0, 4 * sigma, 50)
        correct = rng.random(50) < 0.7
        frame = pd.DataFrame(
            {"idx": range(50), "label": 1, "predict": np.where(correct, 1, -1), "radius": radius * correct,
             "correct": correct.astype(int), "time": 0.5}
        )
        paths.append(tmp_path / f"sigma_{sigma}")
        frame.to_csv(paths[-1], sep="\t", index=False)
    table, plot = tmp_path / "out" / "table.tsv", tmp_path / "out" / "plot"
    main([*map(str, paths), "--labels", "σ=0.25", "σ=0.50", "--radii", "0", "0.5", "--table", str(table),
          "--plot", str(plot)])
    written = pd.read_csv(table, sep="\t", index_col="label")
    assert written.index.tolist() == ["σ=0.25", "σ=0.50"]
    assert written.columns.tolist() == ["r=0.00", "r=0.50", "ACR", "abstain", "best"]
    assert plot.with_suffix(".png").stat().st_size > 0 and plot.with_suffix(".pdf").stat().st_size > 0


def test_command_refuses_mismatched_labels(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "only-one"])
