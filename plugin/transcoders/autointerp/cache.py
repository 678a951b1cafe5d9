"""Latent caching for a run directory, in the on-disk format of Delphi's `LatentCache`.

Differences from `delphi.latents.LatentCache`, none visible in the files it writes:

- Each checkpoint encodes the activation its architecture reads (`Architecture.reads`):
  SAEs the hooked module's output, transcoders its input. Delphi picks one site for
  every coder with a single `transcode` flag, so it cannot cache both kinds in one pass.
- The forward pass stops once the last hookpoint has fired: later layers and the LM
  head never run.
- Memory is bounded: nonzero activations are held in a buffer of `buffer_size` entries
  per coder, appended to raw files on disk whenever it fills, and the final safetensors
  splits are written by streaming those files. Delphi keeps every activation in memory
  until the end.

Layout: `<out>/<arch>/latents/<hookpoint>/<start>_<end>.safetensors` plus `config.json`
(each `<out>/<arch>` is one Delphi results folder, so `LatentDataset(raw_dir=<out>/<arch>
/latents)` reads it), and `<out>/<arch>/log/hookpoint_firing_counts.pt` as Delphi writes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..activations import base_of, record
from ..atomic import atomic_path, write_json
from ..checkpoints import WEIGHTS_FILE, Checkpoint
from .state import distrust, read_json

# Delphi's threshold for a nonzero activation (delphi/latents/cache.py).
NONZERO = 1e-5
CONFIG_FILE = "config.json"
FIRING_COUNTS_FILE = "hookpoint_firing_counts.pt"
SPLIT_TENSORS = ("activations", "locations", "tokens")
RECACHE = "caching latents again"
_CHUNK_ROWS = 1 << 20

_SAFETENSORS_DTYPES = {
    np.dtype(np.uint16): "U16",
    np.dtype(np.uint32): "U32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
}


class _StopForward(Exception):
    """Raised by a hook once every hookpoint has fired, to skip the rest of the model."""


@dataclass
class CacheReport:
    """What a caching pass did, for tests and for the memory claim."""

    n_sequences: int = 0
    flushes: int = 0
    """How many times a coder's buffer was written to disk."""
    peak_buffer_entries: int = 0
    """Most nonzero activations held in memory for one coder at once."""


def latents_dir(out_dir: Path, arch: str) -> Path:
    return Path(out_dir) / arch / "latents"


def _config_for(ckpt: Checkpoint, config: dict) -> dict:
    """The config.json of one coder's cache: `config` plus a hash of the coder's
    weights, so a retrained coder is never matched to an old cache."""
    digest = hashlib.sha256()
    with open(ckpt.path / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return {**config, "coder_sha256": digest.hexdigest()}


def is_complete(out_dir: Path, checkpoints: list[Checkpoint], config: dict, n_splits: int) -> bool:
    """Whether a previous pass already cached these checkpoints with this config in
    `n_splits` files each, all intact; every damaged file is reported by a warning."""
    return all([_intact(out_dir, ckpt, config, n_splits) for ckpt in checkpoints])


def _intact(out_dir: Path, ckpt: Checkpoint, config: dict, n_splits: int) -> bool:
    folder = latents_dir(out_dir, ckpt.architecture.name) / ckpt.hookpoint
    if read_json(folder / CONFIG_FILE, dict, RECACHE) != _config_for(ckpt, config):
        return False
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != n_splits:
        distrust(folder, f"holds {len(files)} of {n_splits} latent files", RECACHE)
        return False
    problems = [(file, split_problem(file)) for file in files]
    for file, problem in problems:
        if problem:
            distrust(file, problem, RECACHE)
    return not any(problem for _, problem in problems)


def split_problem(file: Path) -> str | None:
    """What is wrong with a split file, or None. Reads the safetensors header, which
    names every tensor and where it ends, so a truncated file is caught without
    reading the data."""
    try:
        with safe_open(file, "np") as f:
            names = set(f.keys())
    except (SafetensorError, OSError) as err:
        return f"is truncated or corrupt ({err})"
    missing = [name for name in SPLIT_TENSORS if name not in names]
    return f"lacks the tensors {', '.join(missing)}" if missing else None


def split_bounds(width: int, n_splits: int) -> list[tuple[int, int]]:
    """Inclusive latent ranges of the split files, as Delphi computes them."""
    edges = torch.linspace(0, width, steps=n_splits + 1).long().tolist()
    return [(lo, hi - 1) for lo, hi in zip(edges[:-1], edges[1:])]


class _SplitWriter:
    """Buffers one coder's nonzero activations and appends them, split by latent
    range, to raw files; `finish` streams those into Delphi's safetensors splits."""

    def __init__(self, folder: Path, width: int, n_splits: int, buffer_size: int, report):
        self.folder, self.buffer_size, self.report = folder, buffer_size, report
        self.bounds = split_bounds(width, n_splits)
        self.starts = torch.tensor([lo for lo, _ in self.bounds])
        self.staging = folder / ".staging"
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.locations: list[Tensor] = []
        self.activations: list[Tensor] = []
        self.buffered = 0
        self.counts = [0] * len(self.bounds)
        self.max_seq = [0] * len(self.bounds)
        self.max_latent = [0] * len(self.bounds)
        self.firing = torch.zeros(width, dtype=torch.long)

    def add(self, locations: Tensor, activations: Tensor) -> None:
        self.locations.append(locations)
        self.activations.append(activations)
        self.buffered += len(activations)
        self.report.peak_buffer_entries = max(self.report.peak_buffer_entries, self.buffered)
        if self.buffered >= self.buffer_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        locs = torch.cat(self.locations)
        acts = torch.cat(self.activations).half()
        self.locations, self.activations, self.buffered = [], [], 0
        self.report.flushes += 1

        split_of = torch.bucketize(locs[:, 2].contiguous(), self.starts, right=True) - 1
        for s in split_of.unique().tolist():
            mask = split_of == s
            part = locs[mask]
            part[:, 2] -= self.bounds[s][0]
            self.counts[s] += len(part)
            self.max_seq[s] = max(self.max_seq[s], int(part[:, 0].max()))
            self.max_latent[s] = max(self.max_latent[s], int(part[:, 2].max()))
            with open(self.staging / f"{s}.locations", "ab") as f:
                f.write(part.to(torch.int64).numpy().astype(np.uint32).tobytes())
            with open(self.staging / f"{s}.activations", "ab") as f:
                f.write(acts[mask].numpy().tobytes())

    def finish(self, tokens_file: Path, tokens_shape: tuple[int, int]) -> None:
        self.flush()
        for s, (lo, hi) in enumerate(self.bounds):
            # Delphi's rule for the smaller location dtype.
            small = self.max_latent[s] < 2**16 and self.max_seq[s] < 2**16
            loc_dtype = np.dtype(np.uint16 if small else np.uint32)
            n = self.counts[s]
            tensors = [
                ("locations", loc_dtype, (n, 3), self.staging / f"{s}.locations", np.uint32),
                ("activations", np.dtype(np.float16), (n,), self.staging / f"{s}.activations",
                 None),
                ("tokens", np.dtype(np.int64), tokens_shape, tokens_file, None),
            ]
            with atomic_path(self.folder / f"{lo}_{hi}.safetensors") as tmp:
                _stream_safetensors(tmp, tensors)
        shutil.rmtree(self.staging)


def _stream_safetensors(path: Path, tensors) -> None:
    """Write a safetensors file whose tensors are raw files on disk, chunk by chunk,
    so no tensor is ever whole in memory. `tensors` holds (name, dtype, shape, raw
    file, dtype stored in the raw file or None if it is already `dtype`)."""
    header, offset = {}, 0
    for name, dtype, shape, _, _ in tensors:
        size = int(np.prod(shape)) * dtype.itemsize
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for _, dtype, _, raw, stored in tensors:
            if not raw.exists():
                continue
            if stored is None:
                with open(raw, "rb") as f:
                    shutil.copyfileobj(f, out, length=1 << 24)
                continue
            data = np.memmap(raw, dtype=stored, mode="r")
            for i in range(0, len(data), _CHUNK_ROWS):
                out.write(data[i : i + _CHUNK_ROWS].astype(dtype).tobytes())
            del data


def _batches(tokens: Tensor | Dataset, batch_size: int):
    """Full batches only, as Delphi's `LatentCache.load_token_batches` does."""
    for start in range(0, len(tokens) // batch_size * batch_size, batch_size):
        rows = tokens[start : start + batch_size]
        yield rows["input_ids"] if isinstance(rows, dict) else rows


def sparse_locations(
    top_acts: Tensor, top_indices: Tensor, shape: tuple[int, int], first_seq: int
) -> tuple[Tensor, Tensor]:
    """(sequence, position, latent) rows and values of the nonzero activations, in the
    row-major order `torch.nonzero` gives on Delphi's dense latent tensor."""
    indices, order = top_indices.sort(dim=-1)
    acts = top_acts.gather(-1, order)
    keep = acts.abs() > NONZERO
    token, slot = keep.nonzero(as_tuple=True)
    seq, pos = token // shape[1] + first_seq, token % shape[1]
    locations = torch.stack([seq, pos, indices[token, slot]], dim=1).cpu()
    return locations, acts[token, slot].cpu()


@torch.inference_mode()
def cache_latents(
    model: nn.Module,
    checkpoints: list[Checkpoint],
    tokens: Tensor | Dataset,
    out_dir: str | Path,
    *,
    config: dict,
    batch_size: int = 8,
    n_splits: int = 5,
    buffer_size: int = 1 << 20,
) -> CacheReport:
    """Cache every checkpoint's latents on `tokens` (rows of token ids) in one pass.

    `config` is written as each hookpoint's `config.json` (Delphi's `CacheConfig`
    fields plus `model_name`), with the coder's weights hash added. A coder holds at
    most `buffer_size` nonzero activations in memory (plus one batch) before they go
    to disk.
    """
    out_dir = Path(out_dir)
    device = next(model.parameters()).device
    report = CacheReport()
    coders = _open_coders(checkpoints, out_dir, device, n_splits, buffer_size, report)

    staging = out_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tokens_file = staging / "tokens.i64"
    ctx_len = _encode(model, device, tokens, batch_size, coders, tokens_file, report)
    _write(coders, out_dir, config, tokens_file, (report.n_sequences, ctx_len))
    shutil.rmtree(staging)
    return report


def _open_coders(
    checkpoints: list[Checkpoint], out_dir: Path, device: torch.device, n_splits: int,
    buffer_size: int, report
) -> list:
    """(checkpoint, coder, writer) for each checkpoint (they are not hashable), its
    earlier cache removed."""
    coders = []
    for ckpt in checkpoints:
        coder = ckpt.load(device)
        folder = latents_dir(out_dir, ckpt.architecture.name) / ckpt.hookpoint
        (folder / CONFIG_FILE).unlink(missing_ok=True)
        for old in folder.glob("*.safetensors"):  # a damaged or differently split cache
            old.unlink()
        writer = _SplitWriter(folder, coder.num_latents, n_splits, buffer_size, report)
        coders.append((ckpt, coder, writer))
    return coders


def _encode(
    model: nn.Module, device: torch.device, tokens, batch_size: int, coders: list,
    tokens_file: Path, report
) -> int:
    """Run the model over `tokens` batch by batch, handing each coder's nonzero
    activations to its writer and appending the token ids to `tokens_file`; returns
    the context length."""
    hookpoints = sorted({ckpt.hookpoint for ckpt, _, _ in coders})
    base = base_of(model)
    n_batches = len(tokens) // batch_size
    if n_batches == 0:
        raise ValueError(f"Need at least one batch of {batch_size} sequences, got {len(tokens)}")
    ctx_len = 0
    with record(model, hookpoints) as store, open(tokens_file, "wb") as token_out:
        stop_handles = [
            base.get_submodule(hp).register_forward_hook(_stop_when_all(store, hookpoints))
            for hp in hookpoints
        ]
        try:
            for batch in tqdm(_batches(tokens, batch_size), total=n_batches, desc="Caching latents"):
                ctx_len = batch.shape[1]
                store.clear()
                try:
                    base(batch.to(device))
                except _StopForward:
                    pass
                token_out.write(batch.to(torch.int64).numpy().tobytes())
                for ckpt, coder, writer in coders:
                    x = store[ckpt.hookpoint][ckpt.architecture.reads]
                    enc = coder.encode(x.reshape(-1, x.shape[-1]).to(coder.dtype))
                    fired = enc.top_indices[enc.top_acts > 0]
                    writer.firing += torch.bincount(fired.cpu(), minlength=len(writer.firing))
                    writer.add(
                        *sparse_locations(enc.top_acts, enc.top_indices, batch.shape, report.n_sequences)
                    )
                report.n_sequences += len(batch)
        finally:
            for handle in stop_handles:
                handle.remove()
    return ctx_len


def _write(
    coders: list, out_dir: Path, config: dict, tokens_file: Path, tokens_shape: tuple[int, int]
) -> None:
    """Each coder's safetensors splits, each architecture's firing counts, and then
    each hookpoint's config.json."""
    for _, _, writer in coders:
        writer.finish(tokens_file, tokens_shape)
    for arch in {ckpt.architecture.name for ckpt, _, _ in coders}:
        counts = {c.hookpoint: w.firing for c, _, w in coders if c.architecture.name == arch}
        with atomic_path(out_dir / arch / "log" / FIRING_COUNTS_FILE) as tmp:
            torch.save(counts, tmp)
    # config.json last: its presence marks a hookpoint's cache as complete.
    for ckpt, _, writer in coders:
        write_json(writer.folder / CONFIG_FILE, _config_for(ckpt, config))


def _stop_when_all(store: dict, hookpoints: list[str]):
    """A forward hook that ends the forward pass once every hookpoint has recorded.
    It is registered after `record`'s hooks, so it runs after they store."""

    def hook(module, inputs, outputs):
        if len(store) == len(hookpoints):
            raise _StopForward

    return hook
