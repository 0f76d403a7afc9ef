# Copyright 2026 The glyffuser developers. Licensed under the Apache License, Version 2.0.
"""Atomic writes: every file or folder glyffuser writes is built under a temporary name beside its target and
renamed into place, so a reader (or a killed run) sees the old version or the complete new one, never half.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def move_into_place(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the finished `tmp` onto `target`. A file replaces atomically; a folder cannot be renamed over a
    non-empty one, so an existing target folder is moved aside first and deleted afterwards."""
    tmp, target = Path(tmp), Path(target)
    if not target.is_dir() or target.is_symlink():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    os.replace(tmp, target)
    _remove(old)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` to write a file or folder to; rename it onto `path` on success.

    The temporary name is hidden and keeps the suffix (`.name.tmp-1a2b3c.png`: writers infer the format from
    it). The writer creates it, so it gets the usual umask permissions (mkstemp/mkdtemp would make it owner-
    only). The parent folder is created. On error the temporary file or folder is removed and `path` is left
    untouched.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp-{uuid.uuid4().hex[:12]}{target.suffix}")
    try:
        yield tmp
        move_into_place(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
