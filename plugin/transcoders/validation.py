"""Checks on config values, shared by the dataclass configs and so by CLI and API.

Each check names the option as the command line spells it (`k` -> `--k`), since
that is what most users typed; API users recognise the field name inside it.
"""

from __future__ import annotations

import math

import torch

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A config value outside its allowed range."""


def flag(field: str) -> str:
    """The command-line spelling of a config field; a name already spelled as a flag
    (`--arch` for the field `architectures`) is kept."""
    return field if field.startswith("--") else "--" + field.replace("_", "-")


def positive(field: str, value: int | float) -> None:
    """`value` must be a finite number above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise ConfigError(f"{flag(field)} must be a positive number, got {value!r}")


def non_negative(field: str, value: int | float) -> None:
    """`value` must be a finite number at or above zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or (
        isinstance(value, float) and not math.isfinite(value)
    ):
        raise ConfigError(f"{flag(field)} must be zero or more, got {value!r}")


def non_empty(field: str, values: list[str]) -> None:
    """`values` must name at least one thing, and no blank one."""
    if not values:
        raise ConfigError(f"{flag(field)} names nothing: give at least one value")
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{flag(field)} has an empty name in {values!r}")


def device(field: str, name: str) -> None:
    """`name` must be `auto` or a torch device this machine has."""
    if name == "auto":
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{flag(field)} {name!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{flag(field)} {name}: this machine has no CUDA device; use cpu")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{flag(field)} {name}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag(field)} mps: this machine has no MPS device; use cpu")
    elif dev.type not in ("cpu", "mps"):
        raise ConfigError(f"{flag(field)} {name!r}: use auto, cpu, cuda or cuda:N")
