"""Durable file writes shared by every L2D room (memory builds, training records, calc files):
write under a temporary name, fsync, rename, fsync the folder, so a reader or a crash sees
the old file or the new one, never half of one."""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib

# Errors that mean the disk (or the user's quota) is full: a rerun after freeing space resumes.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def naming(path: pathlib.Path):
    """Re-raise an OSError that names no file (a write's ENOSPC, say: ``[Errno 28] No space
    left on device`` alone) as the same error naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def fsync_dir(folder: pathlib.Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not on every platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via ``path.tmp``, fsync and rename (then fsync the folder)."""
    tmp = path.with_name(path.name + ".tmp")
    with naming(tmp), open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
