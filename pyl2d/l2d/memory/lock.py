"""Crash- and concurrency-safe files for the item memory folder.

A build holds an exclusive ``flock`` on ``<folder>/.build.lock`` (non-blocking: a second
build fails at once, naming the holder's pid, instead of interleaving its shards with the
first one's). Readers only probe the lock, so they never block a build. Files are written
under a temporary name, fsynced and renamed (:mod:`pyl2d.l2d._files`), so a reader or a crash sees the old file or the
new one, never half of one. Without ``fcntl`` (Windows) there is no lock.
"""
from __future__ import annotations

import errno
import os
import pathlib
import stat

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS
    fcntl = None

LOCK_FILE = ".build.lock"


class MemoryBusyError(BlockingIOError):
    """Another process is building this memory folder."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def _holder(lock_path: pathlib.Path) -> str:
    try:
        pid = lock_path.read_text(errors="replace").strip()[:20]
    except OSError:
        pid = ""
    return pid or "unknown"


def _busy(folder: pathlib.Path) -> MemoryBusyError:
    return MemoryBusyError(f"memory folder {folder} is being built by another process "
                           f"(pid {_holder(folder / LOCK_FILE)}); wait for it to finish or stop it")


def _check_regular(fd: int, path: pathlib.Path) -> None:
    """A ValueError (which MemoryFormatError is) unless ``fd`` is a regular file."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise ValueError(f"{path} is not a regular file (a FIFO, device or socket in the lock's place); "
                         "remove it")


class BuildLock:
    """``with BuildLock(folder):`` the exclusive right to write ``folder`` (created if needed)."""

    def __init__(self, folder: str | pathlib.Path):
        self.folder = pathlib.Path(folder)
        self._fd: int | None = None

    def __enter__(self) -> "BuildLock":
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"memory folder {self.folder} is a file, not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        try:  # never through a symlink: the build truncates this file
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError(f"{self.folder / LOCK_FILE} is a symlink; remove it") from None
            raise
        try:
            _check_regular(fd, self.folder / LOCK_FILE)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(self.folder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def check_not_building(folder: str | pathlib.Path) -> None:
    """MemoryBusyError if a build holds ``folder``'s lock right now (probed, not held)."""
    folder = pathlib.Path(folder)
    if fcntl is None:
        return
    try:  # non-blocking: opening a FIFO put in the lock's place must not wait for a writer
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return  # no lock file: never built by this version, or a read-only copy
    try:
        _check_regular(fd, folder / LOCK_FILE)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _busy(folder) from None
    finally:
        os.close(fd)
