"""Small durable-file helpers: full writes, directory fsync, atomic create-by-rename."""

from __future__ import annotations

import os

__all__ = ["write_all", "fsync_dir", "write_file_atomically", "read_file"]


def write_all(fd: int, *chunks: bytes) -> None:
    """Write every chunk, in one writev() when the kernel takes it all (it does for
    regular files unless interrupted by a fatal signal or an I/O error)."""
    total = sum(len(c) for c in chunks)
    n = os.writev(fd, chunks) if len(chunks) > 1 else os.write(fd, chunks[0])
    if n == total:
        return
    rest = b"".join(chunks)[n:]
    while rest:
        n = os.write(fd, rest)
        rest = rest[n:]


def fsync_dir(path: str) -> None:
    """Make a create, rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(dirpath: str, name: str, *chunks: bytes) -> None:
    """Create dirpath/name with the given contents so that after a crash it either
    does not exist or is complete: write `name.tmp`, fsync it, rename, fsync the
    directory. Leftover `*.tmp` files are removed when a storage opens."""
    final = os.path.join(dirpath, name)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, *chunks)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
    fsync_dir(dirpath)


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
