"""One writer per run or output directory at a time.

Two commands writing the same folder would interleave checkpoints, caches and
manifests and both report success. `hold(dir)` takes an exclusive `flock` on
`<dir>/.lock` for as long as the command runs; a second command gets a clear error
naming the holder's PID. The kernel drops the lock when the process dies, so a
killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_FILE = ".lock"


class DirectoryInUse(UserError, RuntimeError):
    """Another process is writing the same directory."""


@contextmanager
def hold(directory: str | Path) -> Iterator[None]:
    """Hold the lock on `directory` (created if missing) for the `with` block."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DirectoryInUse(
                f"{directory} is in use by PID {holder}: wait for it to finish, "
                "or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
