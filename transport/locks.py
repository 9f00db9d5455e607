"""Named exclusive locks on the head node, held by the transport's own user (`Command.lock`).

A lock is `flock(2)` on a regular file in a directory that only the transport's user can write
(`/run/slurm-graphql`, mode 0755, when it runs as root). Users cannot create, replace or link
anything there, so a lock cannot be turned into a FIFO that hangs its taker, nor into a symlink
to a file of theirs. The directory and the file are still checked on every use: a directory
that is a symlink, is owned by someone else or is group/other writable is refused, and the file
is opened with O_NOFOLLOW and O_NONBLOCK and must be a regular file of ours. `flock(1)` on the
same path (the ssm:// script) takes the same lock, so local:// and ssm:// servers on one head
node exclude each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import AsyncIterator

from transport.errors import TransportUnavailable

ROOT_LOCK_DIR = "/run/slurm-graphql"
_POLL_FIRST, _POLL_MAX = 0.005, 0.1


class UnsafeLockDirectory(TransportUnavailable):
    """The lock directory is not a directory only the transport's user can write."""


def lock_directory(is_root: bool) -> str:
    """The default directory: /run/slurm-graphql as root, a private one in TMPDIR otherwise."""
    if is_root:
        return ROOT_LOCK_DIR
    return os.path.join(tempfile.gettempdir(), f"slurm-graphql-{os.geteuid()}")


def _open_directory(path: str) -> int:
    """The lock directory, made if missing, as an fd; refused unless only we can write it."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeLockDirectory(f"cannot open the lock directory {path}: {exc}") from exc
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.close(fd)
        raise UnsafeLockDirectory(
            f"refusing the lock directory {path}: it must be owned by UID {os.geteuid()} "
            "and writable by no one else"
        )
    return fd


def open_lock(directory: str, name: str) -> int:
    """The lock file `name` in `directory`, created if missing, as an fd (not yet locked)."""
    directory_fd = _open_directory(directory)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(f"{name}.lock", flags, 0o600, dir_fd=directory_fd)
    except OSError as exc:
        raise UnsafeLockDirectory(f"cannot open the lock {name} in {directory}: {exc}") from exc
    finally:
        os.close(directory_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise UnsafeLockDirectory(f"refusing the lock {name}: not a regular file of ours")
    return fd


@contextlib.asynccontextmanager
async def hold_lock(directory: str, name: str) -> AsyncIterator[None]:
    """Hold the exclusive lock `name` for the body; waits (without blocking the loop) until free.

    The caller's deadline bounds the wait: cancelling it closes the file and so drops the lock.
    """
    # Opened in the loop's thread (a few syscalls on a local directory), so that a cancelled
    # request can never leave a descriptor behind in a worker thread.
    fd = open_lock(directory, name)
    try:
        delay = _POLL_FIRST
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _POLL_MAX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
