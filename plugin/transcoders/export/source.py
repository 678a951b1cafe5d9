"""What an export reads: the coders of a run and the model they were trained on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import Checkpoint, find
from ..errors import UserError
from ..run import Manifest

MLP_HOOKPOINT = re.compile(r"^layers\.(\d+)\.mlp$")


class ExportError(UserError, ValueError):
    """A run, or a coder in it, that the chosen target cannot represent exactly."""


@dataclass(frozen=True)
class Source:
    """The coders of one run directory (plugin run, sparsify folder or import)."""

    run: Path
    model: str | None
    """The subject model from the run's manifest (or `--model`); None if unknown."""

    checkpoints: list[Checkpoint]

    def architectures(self) -> dict[str, list[Checkpoint]]:
        """Checkpoints grouped by architecture name, in hookpoint order."""
        groups: dict[str, list[Checkpoint]] = {}
        for ckpt in self.checkpoints:
            groups.setdefault(ckpt.architecture.name, []).append(ckpt)
        return groups


def read_source(run: str | Path, model: str | None = None) -> Source:
    """Find every coder under `run`; the model comes from `model` or the manifest."""
    run = Path(run)
    checkpoints = find(run)
    if model is None and (manifest := Manifest.read(run)) is not None:
        model = manifest.config.get("model")
    return Source(run, model, checkpoints)


def mlp_layer(ckpt: Checkpoint) -> int:
    """The layer index of a `layers.N.mlp` hookpoint; other hookpoints are refused."""
    match = MLP_HOOKPOINT.match(ckpt.hookpoint)
    if match is None:
        raise ExportError(
            f"{ckpt.path}: hookpoint '{ckpt.hookpoint}' is not an MLP "
            "(layers.N.mlp); circuit-tracer's transcoders replace MLPs only"
        )
    return int(match.group(1))
