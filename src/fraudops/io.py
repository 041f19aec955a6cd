"""Atomic file writes: a stage that fails never leaves a half-written output behind."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Args:
        path: The final destination. Its folder is created if missing.

    Yields:
        A temporary file path in the same folder, so the final rename is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to Parquet at ``path`` through a temporary file and a rename."""
    return _write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to CSV at ``path`` through a temporary file and a rename."""
    return _write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_json_atomic(payload: object, path: str | Path) -> Path:
    """Write ``payload`` as indented, key-sorted JSON through a temporary file and a rename."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return _write_atomic(path, lambda tmp: tmp.write_text(text))


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    return _write_atomic(path, lambda tmp: tmp.write_text(text))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in blocks (``sha256`` for models, ``md5`` as DVC)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
