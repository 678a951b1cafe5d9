"""The architecture registry: which sparse coders can be trained, and how.

An architecture is a named recipe for sparsify's `SparseCoderConfig`. It also says
which activation of the hooked module the coder reads (its input or its output); the
coder always predicts the module's output. Evaluation and latent caching use that to
pick the right activation for every checkpoint.

Third-party packages add entries through the entry-point group
`transcoders.architectures`; each entry point names an `Architecture` instance.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal, Mapping

from sparsify import SparseCoderConfig

from .errors import UserError

ENTRY_POINT_GROUP = "transcoders.architectures"

Site = Literal["input", "output"]


@dataclass(frozen=True)
class Architecture:
    """A named way to configure a sparsify sparse coder."""

    name: str
    """Registry key, used on the command line and as the run subdirectory."""

    description: str
    """One line for `transcoders architectures`."""

    coder_defaults: Mapping[str, Any] = field(default_factory=dict)
    """`SparseCoderConfig` fields that define the architecture (e.g. `transcode`)."""

    @property
    def reads(self) -> Site:
        """Which activation of the hooked module the coder encodes."""
        return "input" if self.coder_defaults.get("transcode", False) else "output"

    @property
    def predicts(self) -> Site:
        """Which activation the coder reconstructs: always the module's output."""
        return "output"

    def coder_config(self, **overrides: Any) -> SparseCoderConfig:
        """Build sparsify's config; `overrides` (k, num_latents, ...) may not redefine
        the fields that make the architecture what it is."""
        clash = {k for k in overrides if k in self.coder_defaults}
        if clash:
            raise ValueError(
                f"Architecture '{self.name}' fixes {sorted(clash)}; "
                "register a new architecture instead of overriding them."
            )
        known = {f.name for f in dataclasses.fields(SparseCoderConfig)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(
                f"Unknown SparseCoderConfig field(s) {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        return SparseCoderConfig(**{**self.coder_defaults, **overrides})


BUILTIN = (
    Architecture(
        "sae",
        "Sparse autoencoder: reconstructs the module's output from itself.",
        {"transcode": False},
    ),
    Architecture(
        "transcoder",
        "Transcoder: predicts the module's output from its input.",
        {"transcode": True},
    ),
    Architecture(
        "skip-transcoder",
        "Transcoder plus an affine skip term W_skip @ x (sparsify's skip_connection).",
        {"transcode": True, "skip_connection": True},
    ),
)


class UnknownArchitecture(UserError, KeyError):
    """Raised for a name that no built-in or plugin architecture has."""

    def __str__(self) -> str:
        return str(self.args[0])


def available() -> dict[str, Architecture]:
    """Every architecture: the built-ins, then those registered by entry points."""
    registry = {arch.name: arch for arch in BUILTIN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        arch = ep.load()
        if not isinstance(arch, Architecture):
            raise TypeError(
                f"Entry point '{ep.name}' in group '{ENTRY_POINT_GROUP}' "
                f"({ep.value}) must name an Architecture, got {type(arch).__name__}"
            )
        if arch.name in registry:
            raise ValueError(
                f"Architecture '{arch.name}' from entry point {ep.value} "
                "is already registered"
            )
        registry[arch.name] = arch
    return registry


def get(name: str) -> Architecture:
    """Look up one architecture, with the known names in the error."""
    registry = available()
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownArchitecture(
            f"Unknown architecture '{name}'. Known: {', '.join(registry)}.{hint}"
        )
    return registry[name]

