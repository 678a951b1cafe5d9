"""The run directory: where a run's coders live, and its manifest.

    <run>/manifest.json                            `Manifest`
    <run>/<architecture>/<hookpoint>/cfg.json      sparsify's coder config
    <run>/<architecture>/<hookpoint>/sae.safetensors
    <run>/evaluation.json, evaluation.csv          `transcoders evaluate`
    <run>/autointerp/                              `transcoders autointerp` (default)

Below each architecture is sparsify's own checkpoint layout, so sparsify loads every
coder. A plain sparsify directory (`<dir>/<hookpoint>/...`) has no manifest.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from .atomic import write_text
from .errors import UserError

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
MANIFEST_FILE = "manifest.json"
COMPLETE = "complete"
"""Status of an architecture whose training and held-out FVU are done."""
TRAINING = "training"
"""Status while an architecture trains; its record's `step` is the last saved step."""


class CheckpointError(UserError, ValueError):
    """A run or checkpoint directory that is missing, truncated or inconsistent."""


def coder_dir(run_dir: str | Path, architecture: str, hookpoint: str) -> Path:
    """Where the coder of `architecture` at `hookpoint` lives in a run."""
    return Path(run_dir) / architecture / hookpoint


def autointerp_dir(run_dir: str | Path) -> Path:
    """Where autointerp writes a run's results unless told otherwise."""
    return Path(run_dir) / "autointerp"


def has_manifest(folder: str | Path) -> bool:
    """Whether `folder` is a run of this plugin rather than a plain sparsify folder."""
    return (Path(folder) / MANIFEST_FILE).exists()


@dataclass
class Manifest:
    """A run's `manifest.json`: how it was trained and how far each architecture got.

    Written by `transcoders train` and by the hub import; every stage after training
    reads it for the run's model, data and settings."""

    format: int | None = None
    """Version of this layout; 1 for runs of `transcoders train`."""

    identity: dict[str, Any] | None = None
    """The settings that make two runs the same run (`TrainingConfig.identity`)."""

    config: dict[str, Any] = field(default_factory=dict)
    """The training config, with `hookpoints` resolved to module names."""

    hookpoint_patterns: list[str] | None = None
    """The hookpoints as given, before globs were expanded."""

    train_tokens: int | None = None
    """Tokens each architecture trains on."""

    eval_tokens: int | None = None
    """Held-out tokens of the FVU in each record."""

    versions: dict[str, str] | None = None
    """Versions of the packages that trained the run."""

    hardware: dict[str, Any] | None = None
    """Platform, CPU count, device (and GPU, world size)."""

    architectures: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per architecture: `status` (`training` or `complete`) and what training
    recorded (step, steps, wall time, held-out FVU, training scales), or for a hub
    import the repository it came from."""

    normalization: dict[str, Any] | None = None
    """Per hookpoint, the input and output scales the coders trained with."""

    activation_recording_s: float | None = None
    """Seconds spent recording activations for replay, when they were replayed."""

    @classmethod
    def read(cls, run_dir: str | Path) -> Manifest | None:
        """`run_dir`'s manifest; None for a folder without one (plain sparsify)."""
        file = Path(run_dir) / MANIFEST_FILE
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{file} is not valid JSON ({err})") from err
        records = data.get("architectures", {}) if isinstance(data, dict) else None
        config = data.get("config", {}) if isinstance(data, dict) else None
        if (
            not isinstance(records, dict)
            or not all(isinstance(r, dict) for r in records.values())
            or not isinstance(config, dict)
        ):
            raise CheckpointError(
                f"{file} is not a transcoders manifest (expected a JSON object whose "
                "'architectures' maps names to objects)"
            )
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def write(self, run_dir: str | Path) -> None:
        """Write atomically as strict JSON (NaN has no JSON spelling)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False, default=str)
        write_text(Path(run_dir) / MANIFEST_FILE, text + "\n")

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, in the order of the file."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    def status(self, architecture: str) -> str | None:
        """`training`, `complete`, or None when the run has no record of it."""
        return self.architectures.get(architecture, {}).get("status")

    def unfinished(self, architectures: Iterable[str]) -> list[str]:
        """Those of `architectures` this run does not mark complete."""
        return sorted(a for a in set(architectures) if self.status(a) != COMPLETE)


def warn_unfinished(manifest: Manifest | None, architectures: Iterable[str]) -> None:
    """Warn on stderr about each of `architectures` whose training did not complete
    (its last saved checkpoint is what will be used). Nothing without a manifest."""
    if manifest is None:
        return
    for name in manifest.unfinished(architectures):
        record = manifest.architectures.get(name, {})
        at = f" at step {record['step']} of {record['steps']}" if "steps" in record else ""
        print(
            f"Warning: training of '{name}' did not complete{at}; its last saved "
            "checkpoint is used.",
            file=sys.stderr,
        )
