"""One zero per data dir: an exclusive flock on <data-dir>/LOCK, held for the life of
the process (the kernel releases it when the process dies, also on kill -9). The file
holds the holder's pid, so a refusal can name it."""

from __future__ import annotations

import fcntl
import os

__all__ = ["LOCK_FILE", "DataDirError", "DataDirLock"]

LOCK_FILE = "LOCK"


class DataDirError(Exception):
    """The data dir cannot be used (not a directory, not writable, held by another zero);
    the message says which and what to do."""


class DataDirLock:
    """The held lock of one data dir; `release` (or the process's exit) lets it go."""

    def __init__(self, data_dir: str, fd: int) -> None:
        self.data_dir = data_dir
        self._fd = fd

    @classmethod
    def acquire(cls, data_dir: str) -> DataDirLock:
        """Create the data dir if needed and lock it; DataDirError when another zero holds it."""
        path = os.path.join(data_dir, LOCK_FILE)
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise DataDirError(f"data dir {data_dir} is not a directory")
        try:
            os.makedirs(data_dir, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DataDirError(f"cannot use data dir {data_dir}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirError(f"data dir {data_dir} is in use by another zero{who}; "
                               f"each zero needs its own --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(data_dir, fd)

    def release(self) -> None:
        """Let the data dir go (closing the file drops the flock); a second call does nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
