"""Reading autointerp's own files back without trusting them.

Everything autointerp writes is derived: a cache, explanations, scores, the control
pairing. Writes are atomic, so a kill never leaves half a file, but a disk fault or a
hand edit can. A derived file that does not read back as what it should hold is
reported in one warning line naming it and then recomputed; it never crashes the run
and is never used. What cannot be recomputed stops the run with an `AutointerpError`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..errors import UserError

log = logging.getLogger("transcoders.autointerp")


class AutointerpError(UserError):
    """Autointerp cannot go on; finished latents are on disk and a rerun resumes."""


def read_json(file: Path, kind: type, redo: str) -> Any | None:
    """The JSON value in `file` if it is a `kind`; None if the file is missing, or
    (with a warning naming it and saying `redo`) unreadable or of another type."""
    if not file.is_file():
        return None
    try:
        value = json.loads(file.read_bytes())
    except (OSError, ValueError, RecursionError) as err:
        distrust(file, f"is not valid JSON ({err})", redo)
        return None
    if not isinstance(value, kind):
        distrust(file, f"holds a JSON {type(value).__name__}, not a {kind.__name__}", redo)
        return None
    return value


def distrust(file: Path, problem: str, redo: str) -> None:
    """Warn that `file` is not used because of `problem`, and what happens instead."""
    log.warning("%s %s; %s", file, problem, redo)
