"""Reading and writing the files that pass between rules, with checks.

Every intermediate file is an ``.npz`` (numpy arrays, no pickles), a TSV, or a torch checkpoint
that loads with ``weights_only=True``. Each format is declared once, next to the code that writes
it, as a :class:`TsvFormat` (its columns: kind, allowed values, whether NaN may appear) or an
:class:`NpzFormat` (its arrays: dtype kind, dimensions, finiteness); ``read`` checks a file against
its declaration, and the row or model count the config implies where the reader knows it, and
raises :class:`ArtifactError`, naming the file and what is wrong, instead of failing deep inside
numpy, pandas or torch. Writers write to a temporary file and rename it, so a killed job never
leaves a half-written artifact under the final name; the same content gives the same bytes (no
time stamps, no temporary names inside archives), files get the mode the umask allows, and a full
disk is reported naming the path.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class ArtifactError(ValueError):
    """An input file is missing, truncated, foreign or inconsistent."""


# every declared format by name (tests corrupt each one); filled as the modules that declare them load
FORMATS: dict[str, TsvFormat | NpzFormat] = {}


def _register(declared: TsvFormat | NpzFormat) -> None:
    if declared.name in FORMATS and FORMATS[declared.name] != declared:
        raise ValueError(f"two file formats are named {declared.name!r}")
    FORMATS[declared.name] = declared


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed onto it when the block succeeds, with the
    mode the umask gives a new file; a full disk is an OSError that says so and names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(err.errno, f"disk full (or quota exceeded) while writing {path}") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# one fixed time stamp for every archive member, so that the same arrays give the same bytes
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | Path, **arrays: Any) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed npz (what ``np.savez`` writes, without its time
    stamps), atomically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), member.getvalue())
    write_bytes(path, buffer.getvalue())


def load_npz(path: str | Path, required: Iterable[str]) -> dict[str, np.ndarray]:
    """All arrays of the npz at ``path``; an :class:`ArtifactError` if unreadable or incomplete."""
    path = Path(path)
    _require_zip(path, ".npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ArtifactError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from None
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}; found {sorted(arrays)}")
    return arrays


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """``torch.save`` of a dict of tensors and plain values, atomically; saved through memory, so that
    no file name ends up inside the archive and the same weights give the same bytes."""
    import torch  # here, not at the top: the many light jobs that never touch a model start faster

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())


def load_weights_only(path: str | Path) -> Any:
    """What a torch file holds, read with ``weights_only=True`` on the CPU (ours, or one trained
    elsewhere, perhaps in torch's legacy non-zip format); a missing, truncated or code-carrying file is
    an :class:`ArtifactError` naming it."""
    import torch

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            IndexError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{path}: not a readable checkpoint ({first_line})") from None


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` whose ``format`` is ``kind``.

    Loaded with ``weights_only=True``: a checkpoint cannot run code. A truncated file, a file of
    another kind or a foreign checkpoint is an :class:`ArtifactError`.
    """
    _require_zip(Path(path), "checkpoint")
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != kind:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ArtifactError(f"{path}: expected a {kind!r} checkpoint, found {found!r}")
    return payload


def _require_zip(path: Path, what: str) -> None:
    """Refuse a file that is missing or is no zip archive (npz files and checkpoints are)."""
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"{path}: not a readable {what} (not a zip archive: truncated, or another kind of file)")


def read_tsv(path: str | Path, **options: Any) -> pd.DataFrame:
    """A TSV written by :func:`write_tsv`; a missing or unreadable file is an :class:`ArtifactError`."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", **options)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not a readable TSV ({type(err).__name__}: {err})") from None


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a TSV atomically (floats at full, shortest round-trip precision)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False)


@dataclass(frozen=True)
class Column:
    """One column of a TSV format: ``kind`` "int", "float" or "str"; the ``allowed`` values (any, if
    None); whether NaN (an empty cell) may appear; the smallest value of a number; whether a float
    must be finite."""

    kind: str = "float"
    allowed: tuple[Any, ...] | None = None
    nan: bool = False
    minimum: float | None = None
    finite: bool = True


@dataclass(frozen=True)
class Repeated:
    """Columns ``<prefix>0 … <prefix>{n−1}`` of one kind after the declared ones (one per class, say):
    at least ``minimum`` of them."""

    prefix: str
    column: Column
    minimum: int = 1

    def names(self, count: int) -> list[str]:
        """The names of ``count`` such columns."""
        return [f"{self.prefix}{i}" for i in range(count)]


@dataclass(frozen=True)
class TsvFormat:
    """A TSV passed between rules: its columns in order (``optional`` ones may be there or not), then
    its ``repeated`` columns, if any."""

    name: str
    columns: Mapping[str, Column]
    optional: Mapping[str, Column] = field(default_factory=dict)
    repeated: Repeated | None = None

    def __post_init__(self) -> None:
        _register(self)

    def write(self, frame: pd.DataFrame, path: str | Path) -> None:
        """Write the declared columns of ``frame`` (in declared order) atomically."""
        names = [*self.columns, *(c for c in self.optional if c in frame.columns)]
        write_tsv(frame[names + self._repeated_names(frame.columns)], path)

    def _repeated_names(self, found: Iterable[str]) -> list[str]:
        if self.repeated is None:
            return []
        return self.repeated.names(sum(name.startswith(self.repeated.prefix) for name in found))

    def read(self, path: str | Path, rows: int | None = None, min_rows: int = 0) -> pd.DataFrame:
        """The file checked against the format: its header, every cell, and ``rows`` rows when given."""
        import pandas as pd

        _require_complete_text(path)
        frame = read_tsv(path, dtype=str, keep_default_na=False)
        found = list(frame.columns)
        expected = [*self.columns, *(c for c in self.optional if c in found), *self._repeated_names(found)]
        if found != expected:
            raise ArtifactError(f"{path}: not a {self.name} TSV: columns {found}, expected {expected}")
        if self.repeated is not None and len(self._repeated_names(found)) < self.repeated.minimum:
            raise ArtifactError(f"{path}: not a {self.name} TSV: fewer than {self.repeated.minimum} columns "
                                f"{self.repeated.prefix}…")
        if rows is not None and len(frame) != rows:
            raise ArtifactError(f"{path}: {len(frame)} rows, the config implies {rows} ({self.name})")
        if len(frame) < min_rows:
            raise ArtifactError(f"{path}: {len(frame)} rows, a {self.name} TSV has at least {min_rows}")
        repeated = {n: self.repeated.column for n in self._repeated_names(found)} if self.repeated else {}
        kinds = {**self.columns, **self.optional, **repeated}
        checked = {name: _checked_column(path, name, frame[name], kinds[name]) for name in found}
        return pd.DataFrame(checked, index=frame.index)


@dataclass(frozen=True)
class Array:
    """One array of an npz format: its dtype kinds (numpy's ``dtype.kind`` letters: "u", "i", "f",
    "b", "U"), its number of dimensions (any, if None), and whether a float may be NaN or infinite."""

    kinds: str
    ndim: int | None = None
    finite: bool = True


@dataclass(frozen=True)
class NpzFormat:
    """An npz passed between rules: its arrays by name."""

    name: str
    arrays: Mapping[str, Array]

    def __post_init__(self) -> None:
        _register(self)

    def write(self, path: str | Path, **arrays: Any) -> None:
        """Write exactly the declared arrays, deterministically and atomically."""
        if set(arrays) != set(self.arrays):
            raise ValueError(f"a {self.name} npz holds {sorted(self.arrays)}, got {sorted(arrays)}")
        save_npz(path, **{name: arrays[name] for name in self.arrays})

    def read(self, path: str | Path) -> dict[str, np.ndarray]:
        """The arrays of the file, each checked against its declaration."""
        arrays = load_npz(path, self.arrays)
        for name, spec in self.arrays.items():
            value = arrays[name]
            if value.dtype.kind not in spec.kinds or (spec.ndim is not None and value.ndim != spec.ndim):
                raise ArtifactError(f"{path}: array {name!r} is {value.dtype} of shape {value.shape}; a {self.name} "
                                    f"npz holds dtype kind {'/'.join(spec.kinds)} with {spec.ndim} dimensions")
            if spec.finite and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ArtifactError(f"{path}: array {name!r} holds {int((~np.isfinite(value)).sum())} NaN or "
                                    f"infinite values")
        return arrays


def _require_complete_text(path: str | Path) -> None:
    """Refuse a text file that is not UTF-8 or does not end with a newline (cut mid-line)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ArtifactError(f"{path}: not a text file (byte {err.start} is not UTF-8)") from None
    if not data:
        raise ArtifactError(f"{path}: empty file (not even a header)")
    if not data.endswith(b"\n"):
        raise ArtifactError(f"{path}: the last line is cut (no final newline): truncated file?")


def _checked_column(path: str | Path, name: str, text: pd.Series, column: Column) -> pd.Series:
    """The cells of one column converted to its kind; an :class:`ArtifactError` at the first bad one."""
    import pandas as pd

    def bad(mask: pd.Series, why: str) -> ArtifactError:
        rows = [int(i) + 2 for i in text.index[mask][:3]]  # file line numbers (the header is line 1)
        return ArtifactError(f"{path}: column {name!r} {why} on lines {rows}: {list(text[mask][:3])}")

    empty = (text == "") | (text.str.lower().isin(["nan", "na", "null", "none"]) & (column.kind != "str"))
    if empty.any() and not column.nan:
        raise bad(empty, "is empty or NaN")
    if column.kind == "str":
        values: pd.Series = text
    else:
        values = pd.to_numeric(text.where(~empty), errors="coerce")
        if (values.isna() & ~empty).any():
            raise bad(values.isna() & ~empty, f"is not a number ({column.kind})")
        if column.kind == "int":
            if (values.dropna() % 1 != 0).any():
                raise bad(values.notna() & (values % 1 != 0), "is not a whole number")
            values = values.astype("Int64" if column.nan else "int64")
        elif column.finite and np.isinf(values.to_numpy(dtype=float)).any():
            raise bad(pd.Series(np.isinf(values.to_numpy(dtype=float)), index=text.index), "is infinite")
    if column.minimum is not None and (values.dropna() < column.minimum).any():
        raise bad(values.notna() & (values < column.minimum), f"is below {column.minimum}")
    if column.allowed is not None and not values.dropna().isin(column.allowed).all():
        raise bad(values.notna() & ~values.isin(column.allowed), f"is not one of {list(column.allowed)}")
    return values


def require_keys(path: str | Path, frame: pd.DataFrame, expected: pd.MultiIndex) -> None:
    """Refuse a table whose key columns (``expected``'s names) repeat a row, or hold other rows than
    ``expected`` (ids unique and complete)."""
    import pandas as pd

    found = pd.MultiIndex.from_frame(frame[list(expected.names)])
    repeated = found.duplicated()
    if repeated.any():
        raise ArtifactError(f"{path}: rows repeated on lines {_lines(frame, repeated)}: {list(found[repeated][:3])}")
    foreign, missing = found.difference(expected), expected.difference(found)
    names = ", ".join(map(str, expected.names))
    if len(foreign):
        raise ArtifactError(f"{path}: rows the config does not ask for ({names}): {list(foreign[:3])}")
    if len(missing):
        raise ArtifactError(f"{path}: rows missing ({names}): {list(missing[:3])}")


def require_derived(path: str | Path, frame: pd.DataFrame, column: str, derived: Any, source: str,
                    close: bool = False) -> None:
    """Refuse a table whose ``column`` differs, row by row, from ``derived``, what it follows from
    (``source`` says what that is); ``close``: up to float rounding."""
    found, derived = frame[column].to_numpy(), np.asarray(derived)
    if close:
        wrong = ~np.isclose(found.astype(float), derived.astype(float), rtol=1e-9, atol=1e-12)
    else:
        wrong = found != derived
    refuse_rows(path, frame, wrong, f"{column} that does not follow from {source} (found {found[wrong][:3].tolist()}, "
                                    f"recomputed {derived[wrong][:3].tolist()})")


def refuse_rows(path: str | Path, frame: pd.DataFrame, wrong: Any, what: str) -> None:
    """An :class:`ArtifactError` naming the file, ``what`` is wrong and the first lines where ``wrong`` holds."""
    if np.any(wrong):
        raise ArtifactError(f"{path}: {what} on lines {_lines(frame, wrong)}")


def _lines(frame: pd.DataFrame, mask: Any) -> list[int]:
    """The file's line numbers (the header is line 1) of the first three rows of ``mask``."""
    return [int(i) + 2 for i in frame.index[np.asarray(mask)][:3]]
