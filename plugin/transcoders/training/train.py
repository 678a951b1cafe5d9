"""Training every architecture with sparsify's Trainer on one shared token stream."""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
import torch.distributed as dist
from datasets import Dataset
from sparsify import SparseCoder, TrainConfig
from torch import Tensor, nn

from .. import architectures
from ..architectures import Architecture
from ..data import CorpusError, load_corpus, load_model, tokenize
from ..errors import UserError
from ..hookpoints import check_applicable, module_widths, resolve_hookpoints
from ..run import (
    COMPLETE, MANIFEST_FILE, TRAINING, CheckpointError, Manifest, coder_dir, has_manifest,
)
from ..runlock import LOCK_FILE, hold
from .allocator import keep_freed_memory
from .checkpoint import STAGING, AtomicTrainer, recover
from .config import TrainingConfig
from .heldout import heldout_fvu
from .normalize import SCALE_BATCHES, ScaledLive, coder_scales, estimate_scales
from .replay import REPLAY_BUDGET_BYTES, ActivationReplay, replay_bytes
from .truncate import truncated


class RunDirError(UserError, ValueError):
    """The output directory holds something this run must not overwrite."""


def _versions() -> dict[str, str]:
    found = {}
    for pkg in ("transcoders", "eai-sparsify", "eai-delphi", "torch", "transformers", "datasets"):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "not installed"
    return found


def _hardware(device: torch.device) -> dict[str, str | int]:
    info: dict[str, str | int] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 0,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if dist.is_initialized():
        info["world_size"] = dist.get_world_size()
    return info


def _entries(out: Path) -> list[Path]:
    """What `out` holds, apart from the lock file of `runlock.hold`."""
    return [p for p in out.iterdir() if p.name != LOCK_FILE] if out.is_dir() else []


def _refuse_foreign(out: Path) -> None:
    if not has_manifest(out) and _entries(out):
        raise RunDirError(
            f"{out} is not empty and holds no {MANIFEST_FILE}: not a transcoders run. "
            "Choose an empty or new directory."
        )


def _holds_results(out: Path) -> bool:
    """Whether `out` holds anything trained or computed, which replacing would lose:
    any folder (checkpoints, evaluation output) or file besides the manifest, or a
    checkpoint caught mid-swap in the staging folder."""
    staging = out / STAGING
    return any(p.name not in (MANIFEST_FILE, STAGING) for p in _entries(out)) or (
        staging.is_dir() and any(p.name.endswith(".previous") for p in staging.iterdir())
    )


def _clear(out: Path) -> None:
    """Empty `out`, keeping the lock file this process holds."""
    for entry in _entries(out):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def prepare_run_dir(cfg: TrainingConfig, *, resume: bool, overwrite: bool) -> Manifest:
    """Check `cfg.out` is safe to write to; return the manifest to continue from.

    A run that failed before training anything (bad input, say) is replaced
    without asking: there is nothing in it to lose.
    """
    out = Path(cfg.out)
    _refuse_foreign(out)
    try:
        old = Manifest.read(out)
    except CheckpointError as err:
        raise RunDirError(
            f"{err}. It is left as it is: move it away or choose another --out."
        ) from err
    if old is None:
        return Manifest()
    if overwrite or not _holds_results(out):
        _clear(out)
        return Manifest()
    if old.identity != cfg.identity():
        recorded = old.identity or {}
        diff = sorted(k for k, v in cfg.identity().items() if recorded.get(k) != v)
        raise RunDirError(
            f"{out} holds a different run (differs in: {', '.join(diff)}). "
            "Pass --overwrite to replace it, or choose another --out."
        )
    if resume:
        return old
    if not old.unfinished(cfg.architectures):
        raise RunDirError(
            f"{out} already holds this run, complete. Pass --overwrite to retrain."
        )
    raise RunDirError(
        f"{out} holds an unfinished run of this config. Pass --resume to "
        "continue from its last checkpoint, or --overwrite to start again."
    )


def _device(name: str) -> torch.device:
    if dist.is_initialized():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def init_distributed() -> bool:
    """Join the process group when launched by torchrun, as sparsify's CLI does."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is None or dist.is_initialized():
        return dist.is_initialized()
    torch.cuda.set_device(int(local_rank))
    dist.init_process_group("nccl", timeout=timedelta(hours=12))
    return True


def train(
    cfg: TrainingConfig, *, resume: bool = False, overwrite: bool = False
) -> Manifest:
    """Train every architecture in `cfg` on the same tokens; return the manifest.

    Checkpoints land in the run layout of `transcoders.run`, and the
    manifest records each architecture's status: `training` with the last saved step
    while it trains, `complete` once it is trained and its held-out FVU computed. An
    interrupted run keeps the architectures it finished, and `resume=True` continues
    the one it was on to the same weights an uninterrupted run gives. The process
    (rank zero under torchrun) holds `<out>/.lock` throughout, so a second run into
    the same folder is refused. On glibc it also keeps freed memory in the process
    heap for the rest of the process (`training/allocator.py`).
    """
    rank_zero = not dist.is_initialized() or dist.get_rank() == 0
    out = Path(cfg.out)
    if rank_zero:
        # Before taking the lock, so a refused folder does not get a lock file.
        _refuse_foreign(out)
    with hold(out) if rank_zero else nullcontext():
        return _train(cfg, resume=resume, overwrite=overwrite, rank_zero=rank_zero)


def _recover(out: Path, arch: str, rank_zero: bool) -> Path | None:
    """The checkpoint to resume `arch` from; rank zero finishes an interrupted swap
    before the other ranks look."""
    if rank_zero:
        recover(out, arch)
    if dist.is_initialized():
        dist.barrier()
    return recover(out, arch)


def _finite_or_none(value: float) -> float | None:
    """A JSON-safe FVU: none where the held-out activations have no variance."""
    return value if math.isfinite(value) else None


def _train(
    cfg: TrainingConfig, *, resume: bool, overwrite: bool, rank_zero: bool
) -> Manifest:
    archs = [architectures.get(name) for name in cfg.architectures]
    manifest = prepare_run_dir(cfg, resume=resume, overwrite=overwrite) if rank_zero else None
    if dist.is_initialized():
        dist.barrier()
    if manifest is None:
        # The manifest rank zero continues from, so that every rank skips the same
        # finished architectures and folds with the same scales.
        manifest = Manifest.read(cfg.out) or Manifest()

    device = _device(cfg.device)
    model, tokenizer = load_model(cfg.model, device=device)
    hookpoints = resolve_hookpoints(model, cfg.hookpoints)
    widths = module_widths(model, hookpoints)
    num_latents = {
        hp: cfg.num_latents or d_out * cfg.expansion_factor
        for hp, (_, d_out) in widths.items()
    }
    for arch in archs:
        check_applicable(arch, widths, min(num_latents.values()), cfg.k)
    train_rows, eval_rows, scale_ids = _rows(cfg, tokenizer)

    # The inputs are valid: from here on the folder is this run's.
    manifest.format = 1
    manifest.identity = cfg.identity()
    manifest.config = {**cfg.to_dict(), "hookpoints": hookpoints}
    manifest.hookpoint_patterns = cfg.hookpoints
    manifest.train_tokens = len(train_rows) * cfg.ctx_len
    manifest.eval_tokens = len(eval_rows) * cfg.ctx_len
    manifest.versions = _versions()
    manifest.hardware = _hardware(device)

    live_model = truncated(model, hookpoints) if cfg.truncate else model
    if cfg.normalize:
        # A resumed run keeps the scales its checkpoints were folded with.
        manifest.normalization = manifest.normalization or estimate_scales(
            live_model, hookpoints, list(scale_ids.to(device).split(cfg.batch_size))
        )
    run = _Run(cfg, manifest, rank_zero, device, hookpoints, num_latents,
               live_model, train_rows, eval_rows)
    run.write()
    todo = [a for a in archs if manifest.status(a.name) != COMPLETE]
    # Replay whenever the run has several architectures, even if one is left: a
    # resumed run then gets the same activations as the uninterrupted one (on GPU
    # sparsify's fit() turns on TF32 matmuls, which a live forward would use).
    itemsize = next(model.parameters()).element_size()
    recording = replay_bytes(len(train_rows), cfg.ctx_len, widths, itemsize)
    if todo and len(archs) > 1 and recording <= REPLAY_BUDGET_BYTES:
        run.record_activations()

    keep_freed_memory()
    for arch in archs:
        if arch in todo:
            run.train(arch, resume=resume)
        else:
            print(f"{arch.name}: already complete, skipping")
    return manifest


def _rows(cfg: TrainingConfig, tokenizer) -> tuple[Dataset, Dataset, Tensor]:
    """This rank's training rows, the held-out rows, and the token ids the
    normalisation scales are estimated on."""
    train_rows = tokenize(
        load_corpus(cfg.dataset, "train", hf_split=cfg.dataset_split),
        tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.tokens, seed=cfg.seed,
    )
    eval_rows = tokenize(
        load_corpus(cfg.dataset, "eval", hf_split=cfg.eval_split),
        tokenizer, ctx_len=cfg.ctx_len, max_tokens=cfg.eval_tokens, seed=cfg.seed,
    )
    # The first batches of the whole stream, before sharding: every rank estimates
    # the normalisation scales on the same rows, so all agree on them.
    scale_ids = train_rows[: SCALE_BATCHES * cfg.batch_size]["input_ids"]
    if dist.is_initialized():
        world = dist.get_world_size()
        train_rows = train_rows.select(range(len(train_rows) - len(train_rows) % world))
        train_rows = train_rows.shard(world, dist.get_rank())
    if len(train_rows) < cfg.batch_size:
        raise CorpusError(
            f"{len(train_rows)} training sequences is less than one batch "
            f"({cfg.batch_size}); raise --tokens or lower --batch-size"
        )
    return train_rows, eval_rows, scale_ids


@dataclass
class _Run:
    """One run's model, rows and manifest, shared by the architectures it trains."""

    cfg: TrainingConfig
    manifest: Manifest
    rank_zero: bool
    device: torch.device
    hookpoints: list[str]
    num_latents: dict[str, int]
    live_model: nn.Module
    """The model (truncated after the last hookpoint unless `cfg.truncate` is off)."""
    train_rows: Dataset
    eval_rows: Dataset
    replay: ActivationReplay | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    def write(self) -> None:
        if self.rank_zero:
            self.manifest.write(self.out)

    def record_activations(self) -> None:
        """Run the model over the training rows once, for every architecture to replay."""
        start = time.perf_counter()
        self.replay = ActivationReplay(
            self.live_model, self.hookpoints, self.train_rows, self.cfg.batch_size,
            scales=self.manifest.normalization,
        )
        self.manifest.activation_recording_s = time.perf_counter() - start

    def _forward(self) -> tuple[nn.Module, str]:
        """The module sparsify's Trainer hooks, and how it gets its activations."""
        if self.replay is not None:
            return self.replay, "replay"
        forward = "truncated" if self.cfg.truncate else "full"
        scales = self.manifest.normalization
        return (self.live_model if scales is None else ScaledLive(self.live_model, scales)), forward

    def train(self, arch: Architecture, *, resume: bool) -> None:
        """Train `arch` (from its last checkpoint when resuming), then measure its
        held-out FVU; the manifest follows every save."""
        out, records = self.out, self.manifest.architectures
        train_cfg = self._trainer_config(arch)
        scales = self.manifest.normalization
        scaled = coder_scales(arch, scales) if scales else None
        train_model, forward = self._forward()
        print(f"\n== {arch.name}: {arch.description}")
        previous = _recover(out, arch.name, self.rank_zero) if resume else None
        # Wall time of earlier sessions, up to the checkpoint this one resumes from.
        earlier = records.get(arch.name, {}).get("wall_time_s", 0.0) if previous else 0.0
        start = time.perf_counter()
        record = {
            "status": TRAINING,
            "description": arch.description,
            "reads": arch.reads,
            "coder_config": train_cfg.sae.to_dict(),
            "num_latents": self.num_latents,
            "forward": forward,
            # (s_in, s_out) per hookpoint, already folded into the checkpoints.
            "training_scales": {h: list(s) for h, s in scaled.items()} if scaled else None,
        }

        def saved(step: int) -> None:
            record.update(step=step, wall_time_s=earlier + time.perf_counter() - start)
            self.write()

        trainer = AtomicTrainer(
            train_cfg, self.train_rows, train_model, on_save=saved, coder_scales=scaled
        )
        if previous is not None:
            trainer.load_state(str(previous))
        resumed_step = trainer.global_step
        record.update(
            step=resumed_step, steps=trainer.num_batches, resumed_from_step=resumed_step,
            wall_time_s=earlier,
        )
        records[arch.name] = record
        self.write()

        if trainer.finished:
            # Killed after its last checkpoint: sparsify's fit() cannot start past the
            # end of the data, and there is nothing left to train.
            print(f"{arch.name}: all {trainer.num_batches} steps were already trained")
        else:
            trainer.fit()
        wall = earlier + time.perf_counter() - start
        if self.rank_zero:
            self._complete(arch, record, wall)
        if dist.is_initialized():
            dist.barrier()

    def _trainer_config(self, arch: Architecture) -> TrainConfig:
        """sparsify's config for training `arch` into this run."""
        cfg = self.cfg
        return TrainConfig(
            arch.coder_config(
                k=cfg.k, expansion_factor=cfg.expansion_factor, num_latents=cfg.num_latents
            ),
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            hookpoints=self.hookpoints,
            init_seeds=[cfg.seed],
            save_dir=str(self.out),
            run_name=arch.name,
            save_every=cfg.save_every,
            auxk_alpha=cfg.auxk_alpha,
            dead_feature_threshold=cfg.dead_tokens,
            k_decay_steps=cfg.k_decay_steps,
            log_to_wandb=False,
        )

    def _complete(self, arch: Architecture, record: dict, wall: float) -> None:
        """Measure the trained coders' held-out FVU and mark `arch` complete."""
        coders = {
            hp: SparseCoder.load_from_disk(coder_dir(self.out, arch.name, hp), device=self.device)
            for hp in self.hookpoints
        }
        fvu = heldout_fvu(self.live_model, arch, coders, self.eval_rows, self.cfg.batch_size)
        record.update(
            status=COMPLETE,
            wall_time_s=wall,
            fvu={hp: _finite_or_none(v) for hp, v in fvu.items()},
        )
        self.write()
        print(f"{arch.name}: held-out FVU {fvu} in {wall:.1f} s")
