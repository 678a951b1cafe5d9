"""The base class of errors caused by input the user can fix.

The CLI prints these as one-line messages instead of tracebacks; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input, named with what to do about it."""


class FileSystemError(UserError, OSError):
    """A path the command may not write to, or no room left to write."""


_WRITABLE = "choose a location you can write to, or fix its permissions"
_ADVICE = {
    errno.EACCES: f"permission denied: {_WRITABLE}",
    errno.EPERM: f"operation not permitted: {_WRITABLE}",
    errno.EROFS: "read-only file system: choose a location on a writable disk",
    errno.ENOSPC: "no space left on the device: free some space, or write elsewhere",
    errno.EDQUOT: "disk quota exceeded: free some space, or write elsewhere",
}


def file_system_error(err: OSError) -> FileSystemError | None:
    """`err` as a one-line error naming the path and what to do, when it is one the
    user can fix (permissions, read-only or full disk); None for any other OSError,
    which is a bug and keeps its traceback. Command lines call this on OSErrors that
    escape a command."""
    advice = _ADVICE.get(err.errno)
    if advice is None:
        return None
    return FileSystemError(advice if err.filename is None else f"{err.filename}: {advice}")
