"""Files people hand us: read only when they are regular files, replaced so a reader never sees half of one."""

from __future__ import annotations

import contextlib
import os
import stat
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


class NotAFile(OSError):
    """A path that is something other than a regular file (a FIFO, a device, a folder...); its message says what."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def not_a_file(path: str | Path) -> str | None:
    """What ``path`` is when it is not a regular file (``is a FIFO (named pipe), not a file``), else None.

    Only ``stat`` is used: a FIFO is never opened (opening one blocks until a
    writer comes) and a device is never read (``/dev/zero`` never ends).
    FileNotFoundError when nothing is there.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        raise
    if stat.S_ISREG(mode):
        return None
    kind = _kind(mode)
    if path.is_symlink():
        return f"is a symbolic link to {os.readlink(path)}, {kind}, not a file"
    return f"is {kind}, not a file"


def read_regular_file(path: str | Path) -> bytes:
    """The bytes of ``path`` if it is a regular file; :class:`NotAFile` saying what it is otherwise.

    Checked before opening and again on the open descriptor (a file swapped
    for a FIFO in between is opened non-blocking and refused, never read).
    """
    what = not_a_file(path)
    if what is not None:
        raise NotAFile(f"{path}: {what}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(f"{path}: is {_kind(mode)}, not a file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
