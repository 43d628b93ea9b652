"""Reading and writing the files that pass between rules, with checks.

Every intermediate file is an ``.npz`` (numpy arrays, no pickles), a TSV, or a torch checkpoint
that loads with ``weights_only=True``. Each reader checks that the file is what it claims to be
and raises :class:`ArtifactError`, naming the file and the problem, instead of failing deep inside
numpy or torch. Writers write to a temporary file and rename it, so a killed job never leaves a
half-written artifact under the final name.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class ArtifactError(ValueError):
    """An input file is missing, truncated, foreign or inconsistent."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that is renamed onto it when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npz(path: str | Path, **arrays: Any) -> None:
    """Write ``arrays`` to ``path`` (uncompressed npz), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: np.asarray(value) for name, value in arrays.items()})


def load_npz(path: str | Path, required: Iterable[str]) -> dict[str, np.ndarray]:
    """All arrays of the npz at ``path``; an :class:`ArtifactError` if unreadable or incomplete."""
    path = Path(path)
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
    """``torch.save`` of a dict of tensors and plain values, atomically."""
    import torch  # here, not at the top: the many light jobs that never touch a model start faster

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_weights_only(path: str | Path) -> Any:
    """What a torch file holds, read with ``weights_only=True`` on the CPU (ours, or one trained
    elsewhere); a missing, truncated or code-carrying file is an :class:`ArtifactError` naming it."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtifactError(f"{path}: not a readable checkpoint ({first_line})") from None


def load_checkpoint(path: str | Path, kind: str) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` whose ``format`` is ``kind``.

    Loaded with ``weights_only=True``: a checkpoint cannot run code. A truncated file, a file of
    another kind or a foreign checkpoint is an :class:`ArtifactError`.
    """
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != kind:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ArtifactError(f"{path}: expected a {kind!r} checkpoint, found {found!r}")
    return payload


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
