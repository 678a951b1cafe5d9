"""Finding and loading the sparse coders in a run directory.

A run directory (`transcoders.run` owns its layout) names each coder's architecture
by folder. A plain sparsify checkpoint directory (`<dir>/<hookpoint>/...`, or one hookpoint's
folder) works too: its architecture is inferred from `cfg.json` by the rules in
`transcoders.hub`, or given with `reads`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from natsort import natsorted
from safetensors import SafetensorError
from sparsify import SparseCoder, SparseCoderConfig

from . import architectures, hub
from .architectures import Architecture, Site
from .run import CONFIG_FILE, WEIGHTS_FILE, CheckpointError


@dataclass(frozen=True)
class Checkpoint:
    """One trained coder on disk."""

    path: Path
    """Folder holding cfg.json and sae.safetensors."""

    architecture: Architecture
    hookpoint: str
    """Module name relative to the model's `base_model`, e.g. `layers.6.mlp`."""

    ambiguous: bool = False
    """cfg.json does not say what the coder reads (no `transcode` key, no skip
    connection) and neither does the folder: `hub.identify` measures it."""

    input_centred: bool | None = None
    """For a coder reading the module input: whether it subtracts `b_dec` from its
    input (sparsify before Feb 2025), as `hub.identify` measured it; None: as its
    cfg.json implies (sparsify centres when `transcode` is false or missing)."""

    def reading(self, site: Site) -> Checkpoint:
        """This checkpoint as the built-in architecture that reads `site`."""
        if site == "output" and _read_config(self.path).get("skip_connection"):
            raise CheckpointError(
                f"{self.path / CONFIG_FILE} has a skip connection, which maps the module "
                "input to its output: the coder reads the input, not the output"
            )
        name = "sae" if site == "output" else _transcoder_name(_read_config(self.path))
        return Checkpoint(self.path, architectures.get(name), self.hookpoint)

    def config(self) -> SparseCoderConfig:
        """The coder's sparsify config, with a clear error for a corrupt file."""
        data = _read_config(self.path)
        data.pop("d_in", None)
        return SparseCoderConfig.from_dict(data, drop_extra_fields=True)

    def d_in(self) -> int:
        """The coder's input width, from cfg.json."""
        return int(_read_config(self.path)["d_in"])

    def load(self, device: str | torch.device = "cpu") -> SparseCoder:
        """Load through sparsify; a coder reading the module input comes back in
        sparsify's current transcoder form, computing what `input_centred` says."""
        coder = self.load_saved(device)
        if self.architecture.reads == "input":
            hub.as_transcoder(coder, self.input_centred)
        return coder

    def load_saved(self, device: str | torch.device = "cpu") -> SparseCoder:
        """Load through sparsify as cfg.json says, naming the file if it is truncated
        or corrupt."""
        _read_config(self.path)
        try:
            return SparseCoder.load_from_disk(self.path, device=device)
        except (SafetensorError, OSError, RuntimeError, StopIteration) as err:
            raise CheckpointError(
                f"Could not load {self.path / WEIGHTS_FILE}: {err}"
            ) from err


def _read_config(path: Path) -> dict:
    file = path / CONFIG_FILE
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{file} is missing") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or "d_in" not in data:
        raise CheckpointError(f"{file} is not a sparsify coder config (no 'd_in')")
    # sparsify fills a missing k or width with its own defaults (k=32), which would
    # silently evaluate a different coder than the one trained.
    missing = [] if "k" in data else ["'k'"]
    if not data.get("num_latents") and "expansion_factor" not in data:
        missing.append("'num_latents' or 'expansion_factor'")
    if missing:
        raise CheckpointError(
            f"{file} lacks {' and '.join(missing)}, which sparsify would fill in with "
            "its defaults: restore the cfg.json saved with these weights"
        )
    return data


def _is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def find(run_dir: str | Path, reads: Site | None = None) -> list[Checkpoint]:
    """Every coder under `run_dir`, sorted by architecture then hookpoint. `reads`
    says what the coders of a plain sparsify directory read, overriding cfg.json."""
    root = Path(run_dir)
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a directory")
    if reads not in (None, "input", "output"):
        raise CheckpointError(f"--reads is 'input' or 'output', got {reads!r}")

    found = []
    if _is_checkpoint(root):
        return [at(root, root.name, reads=reads)]

    for cfg in root.rglob(CONFIG_FILE):
        folder = cfg.parent
        rel = folder.relative_to(root).parts
        # Skip sparsify's `best/` copies and our in-progress staging folders.
        if any(part.startswith(".") or part == "best" for part in rel):
            continue
        if not _is_checkpoint(folder):
            raise CheckpointError(f"{folder} has {CONFIG_FILE} but no {WEIGHTS_FILE}")
        if len(rel) == 2:
            if reads is not None:
                raise CheckpointError(
                    f"--reads is for plain sparsify directories, but {root} names each "
                    f"coder's architecture by folder ({rel[0]}/): leave --reads out"
                )
            found.append(at(folder, rel[1], rel[0]))
        elif len(rel) == 1:
            found.append(at(folder, rel[0], reads=reads))
    if not found:
        raise CheckpointError(
            f"No checkpoints in {root}: expected <arch>/<hookpoint>/{CONFIG_FILE} "
            f"and {WEIGHTS_FILE} (run `transcoders train` first)"
        )
    return natsorted(found, key=lambda c: (c.architecture.name, c.hookpoint))


def _transcoder_name(cfg: dict) -> str:
    return "skip-transcoder" if cfg.get("skip_connection") else "transcoder"


def at(
    folder: Path, hookpoint: str, arch_name: str | None = None, reads: Site | None = None
) -> Checkpoint:
    """The coder in `folder`. Its architecture is `arch_name` where the layout names
    it (cfg.json may not contradict it), else what `reads` or cfg.json says (see
    `transcoders.hub`), else left `ambiguous` for `hub.identify` to measure."""
    cfg = _read_config(folder)
    said = hub.reads_from_config(cfg)
    if arch_name is None:
        unknown = Checkpoint(folder, architectures.get("sae"), hookpoint, ambiguous=True)
        if reads or said:
            return unknown.reading(reads or said)
        return unknown

    arch = architectures.get(arch_name)
    # An old-format cfg.json (no `transcode`) says nothing; the folder decides.
    if said is not None and arch.reads != said:
        raise CheckpointError(
            f"{folder}: folder says '{arch.name}' (reads the module {arch.reads}) "
            f"but cfg.json says transcode={cfg.get('transcode')}, "
            f"skip_connection={cfg.get('skip_connection', False)}"
        )
    return Checkpoint(folder, arch, hookpoint)
