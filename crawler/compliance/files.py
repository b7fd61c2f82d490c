"""Replacing a file so that a reader sees the old one or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def replaced_atomically(path: Path, *, tag: str = "tmp", keep_mode: bool = False) -> Iterator[TextIO]:
    """Write the new content of ``path`` to the handle; on leaving, it is synced and renamed over ``path``.

    The temporary file (``.NAME.PID.TAG`` beside it) is removed if anything
    fails, and then ``path`` is untouched. ``keep_mode`` gives the new file
    the old one's permissions.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{tag}")
    mode = path.stat().st_mode & 0o777 if keep_mode else None
    try:
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
