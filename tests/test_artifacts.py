"""Every declared file format refuses a corrupted file with one error naming the file; writers give the
same bytes for the same content, respect the umask and say when the disk is full."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import robustcert.analysis
import robustcert.data
import robustcert.evaluate
import robustcert.partition
import robustcert.poison
import robustcert.results
import robustcert.workflow.detection
import robustcert.workflow.patch  # noqa: F401 - each of these modules declares formats
from robustcert import artifacts
from robustcert.artifacts import FORMATS, ArtifactError, NpzFormat, TsvFormat

TSV = sorted(name for name, f in FORMATS.items() if isinstance(f, TsvFormat))
NPZ = sorted(name for name, f in FORMATS.items() if isinstance(f, NpzFormat))


def _valid_cell(column: artifacts.Column, row: int) -> object:
    if column.allowed is not None:
        return column.allowed[row % len(column.allowed)]
    return {"int": row + 1, "float": row + 0.5, "str": f"s{row}"}[column.kind]


def _valid_frame(tsv: TsvFormat, rows: int = 3) -> pd.DataFrame:
    repeated = {} if tsv.repeated is None else dict.fromkeys(tsv.repeated.names(tsv.repeated.minimum + 1),
                                                             tsv.repeated.column)
    return pd.DataFrame({name: [_valid_cell(c, i) for i in range(rows)] for name, c in {**tsv.columns, **repeated}.items()})


def _valid_arrays(npz: NpzFormat) -> dict[str, np.ndarray]:
    return {name: _valid_array(a) for name, a in npz.arrays.items()}


def _valid_array(array: artifacts.Array) -> np.ndarray:
    shape = (2,) * (array.ndim if array.ndim is not None else 2)
    if array.kinds in ("U", "S"):  # text, bytes
        return np.full(shape, "set" if array.kinds == "U" else b"set")
    return np.ones(shape, {"u": np.uint8, "i": np.int64, "f": np.float32, "b": np.bool_}[array.kinds[0]])


def test_every_format_passed_between_rules_is_declared():
    assert {"results rows", "certificate", "triggered certificate", "predictions", "certify", "clusters",
            "patch certify", "patch attack"} <= set(TSV)
    assert {"split", "poison", "partition", "scores", "embedding", "gallery"} <= set(NPZ)


@pytest.mark.parametrize("name", TSV)
def test_a_valid_tsv_reads_back_with_its_kinds(tmp_path: Path, name: str):
    tsv, path = FORMATS[name], tmp_path / "a.tsv"
    tsv.write(_valid_frame(tsv), path)
    frame = tsv.read(path, rows=3)
    for column, spec in tsv.columns.items():
        assert frame[column].tolist() == [_valid_cell(spec, i) for i in range(3)]


def _cut_mid_line(text: str) -> str:
    return text[:-2]


def _rows_missing(text: str) -> str:
    return "".join(text.splitlines(keepends=True)[:2])


def _header_only(text: str) -> str:
    return text.splitlines(keepends=True)[0]


def _nan_cell(text: str) -> str:
    lines = text.splitlines(keepends=True)
    fields = lines[1].rstrip("\n").split("\t")
    return "".join([lines[0], "\t".join(["", *fields[1:]]) + "\n", *lines[2:]])


@pytest.mark.parametrize("name", TSV)
@pytest.mark.parametrize("corrupt,said", [
    (_cut_mid_line, "the last line is cut"),
    (_rows_missing, "1 rows, the config implies 3"),
    (_header_only, "0 rows, the config implies 3"),
    (_nan_cell, "is empty or NaN on lines [2]"),
    (lambda text: "just some text\n", "TSV: columns ['just some text']"),
    (lambda text: "", "empty file"),
])
def test_a_corrupted_tsv_is_one_error_naming_the_file(tmp_path: Path, name: str, corrupt, said: str):
    tsv, path = FORMATS[name], tmp_path / "a.tsv"
    tsv.write(_valid_frame(tsv), path)
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(ArtifactError) as error:
        tsv.read(path, rows=3)
    assert str(error.value).startswith(f"{path}: ") and said in str(error.value)


@pytest.mark.parametrize("name", TSV)
def test_binary_bytes_or_a_word_in_a_number_column_are_refused(tmp_path: Path, name: str):
    tsv, path = FORMATS[name], tmp_path / "a.tsv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ArtifactError, match=r"a.tsv: not a text file"):
        tsv.read(path)
    numbers = [c for c, spec in tsv.columns.items() if spec.kind != "str" and spec.allowed is None]
    if numbers:
        frame = _valid_frame(tsv).astype(object)
        frame.loc[1, numbers[0]] = "many"
        frame.to_csv(path, sep="\t", index=False)
        with pytest.raises(ArtifactError, match=rf"a.tsv: column '{numbers[0]}' is not a number .* on lines \[3\]"):
            tsv.read(path)


def test_repeated_columns_are_numbered_from_0_without_a_gap_and_each_checked(tmp_path: Path):
    tsv, path = robustcert.workflow.patch.CERTIFY_TSV, tmp_path / "certify.tsv"
    frame = _valid_frame(tsv).assign(count_2=[1, 2, 3])
    tsv.write(frame, path)
    assert tsv.read(path, rows=3)["count_2"].tolist() == [1, 2, 3]
    frame.drop(columns="count_1").to_csv(path, sep="\t", index=False)
    with pytest.raises(ArtifactError, match=r"certify.tsv: not a patch certify TSV: columns .*'count_0', 'count_2'\]"):
        tsv.read(path)
    frame.drop(columns=["count_1", "count_2"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(ArtifactError, match=r"certify.tsv: not a patch certify TSV: fewer than 2 columns count_"):
        tsv.read(path)
    frame.assign(count_1=[0, -1, 0]).to_csv(path, sep="\t", index=False)
    with pytest.raises(ArtifactError, match=r"certify.tsv: column 'count_1' is below 0 on lines \[3\]"):
        tsv.read(path)


def test_allowed_values_and_minimums_are_checked(tmp_path: Path):
    tsv, path = robustcert.evaluate.CERTIFICATE, tmp_path / "c.tsv"
    frame = _valid_frame(tsv)
    frame.loc[2, "correct"] = 2
    tsv.write(frame, path)
    with pytest.raises(ArtifactError, match=r"column 'correct' is not one of \[0, 1\] on lines \[4\]"):
        tsv.read(path)
    frame = _valid_frame(tsv)
    frame.loc[0, "predict"] = -3
    tsv.write(frame, path)
    with pytest.raises(ArtifactError, match=r"column 'predict' is below -1"):
        tsv.read(path)


@pytest.mark.parametrize("name", NPZ)
def test_a_corrupted_npz_is_one_error_naming_the_file(tmp_path: Path, name: str):
    npz, path = FORMATS[name], tmp_path / "a.npz"
    arrays = _valid_arrays(npz)
    npz.write(path, **arrays)
    assert sorted(npz.read(path)) == sorted(arrays)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArtifactError, match=r"a.npz: not a readable .npz file"):
        npz.read(path)
    path.write_text("a text file where an npz belongs\n")
    with pytest.raises(ArtifactError, match=r"a.npz: not a readable .npz file \(not a zip archive"):
        npz.read(path)
    first = next(iter(npz.arrays))
    artifacts.save_npz(path, **{k: v for k, v in arrays.items() if k != first})
    with pytest.raises(ArtifactError, match=rf"a.npz: missing arrays \['{first}'\]"):
        npz.read(path)
    artifacts.save_npz(path, **{**arrays, first: np.ones((1,) * 6, np.complex64)})
    with pytest.raises(ArtifactError, match=rf"a.npz: array '{first}' is complex64"):
        npz.read(path)
    floats = [k for k, a in npz.arrays.items() if "f" in a.kinds and a.finite]
    if floats:
        artifacts.save_npz(path, **{**arrays, floats[0]: np.full_like(arrays[floats[0]], np.nan)})
        with pytest.raises(ArtifactError, match=rf"a.npz: array '{floats[0]}' holds \d+ NaN"):
            npz.read(path)


def test_scores_of_fewer_models_than_the_defense_are_refused(tmp_path: Path):
    path = tmp_path / "scores.npz"
    scores = {"logits": np.zeros((5, 3, 10), np.float32), "labels": np.zeros(5, np.int64),
              "base_accuracy": np.zeros(3), "triggered_logits": np.zeros((0, 3, 10), np.float32),
              "triggered_index": np.zeros(0, np.int64), "target": np.int64(-1)}
    robustcert.evaluate.save_scores(path, scores)
    assert robustcert.evaluate.load_scores(path, models=3)["logits"].shape == (5, 3, 10)
    with pytest.raises(ArtifactError, match=r"scores.npz: logits of 3 models, the defense has 4"):
        robustcert.evaluate.load_scores(path, models=4)


def test_a_text_file_or_truncated_checkpoint_names_the_file(tmp_path: Path):
    path = tmp_path / "model.pt"
    artifacts.save_checkpoint(path, {"format": "robustcert.shard/1", "w": torch.ones(3)})
    whole = path.read_bytes()
    for broken in (b"not a checkpoint\n", whole[: len(whole) // 2], b""):
        path.write_bytes(broken)
        with pytest.raises(ArtifactError, match=r"model.pt: not a readable checkpoint"):
            artifacts.load_checkpoint(path, "robustcert.shard/1")


def test_same_content_same_bytes_and_no_temporary_name_inside(tmp_path: Path):
    torch.manual_seed(0)
    state = torch.nn.Linear(4, 3).state_dict()
    artifacts.save_checkpoint(tmp_path / "a.pt", {"format": "x", "state": state})
    artifacts.save_checkpoint(tmp_path / "b.pt", {"format": "x", "state": state})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert b".a.pt" not in (tmp_path / "a.pt").read_bytes()
    artifacts.save_npz(tmp_path / "a.npz", x=np.arange(4))
    os.utime(tmp_path / "a.npz", (0, 0))
    artifacts.save_npz(tmp_path / "b.npz", x=np.arange(4))
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_files_get_the_mode_the_umask_allows(tmp_path: Path):
    previous = os.umask(0o022)
    try:
        artifacts.save_npz(tmp_path / "a.npz", x=np.arange(2))
        assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        artifacts.write_tsv(pd.DataFrame({"a": [1]}), tmp_path / "a.tsv")
        assert (tmp_path / "a.tsv").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)


def test_a_full_disk_says_so_naming_the_path(tmp_path: Path, monkeypatch):
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(OSError, match=r"disk full .* while writing .*model.pt"):
        artifacts.save_checkpoint(tmp_path / "model.pt", {"format": "x"})
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
