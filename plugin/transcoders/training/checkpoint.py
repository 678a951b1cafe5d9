"""Crash-safe checkpoints around sparsify's Trainer.

Two workarounds for sparsify 1.3.3, kept here; drop each when sparsify fixes it:
- it writes a checkpoint in place, file by file, so a run killed mid-save leaves a
  folder that mixes two steps. We save into a staging folder and swap it in with
  renames.
- it saves inside its batch loop before counting the batch just trained, so the
  `global_step` in state.pt is one short and a resume trains that batch twice. We
  record the number of batches actually done.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch.distributed as dist
from sparsify import Trainer

STAGING = ".staging"


def _rank_zero() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def checkpoint_dir(save_dir: str | Path, run_name: str) -> Path:
    """Where sparsify's Trainer writes the checkpoint of run `run_name`."""
    return Path(save_dir) / run_name


def recover(save_dir: str | Path, run_name: str) -> Path | None:
    """The last complete checkpoint of `run_name`, finishing an interrupted swap.

    Returns None when there is none to resume from.
    """
    final = checkpoint_dir(save_dir, run_name)
    previous = Path(save_dir) / STAGING / f"{run_name}.previous"
    if not final.exists() and previous.exists():
        os.replace(previous, final)
    return final if (final / "state.pt").is_file() else None


class AtomicTrainer(Trainer):
    """sparsify's Trainer whose checkpoints are replaced atomically."""

    def save(self) -> None:
        """sparsify's save, into a staging folder swapped in by renames."""
        real_dir = self.cfg.save_dir
        staging_root = Path(real_dir) / STAGING
        staged = checkpoint_dir(staging_root, self.cfg.run_name)
        if _rank_zero():
            shutil.rmtree(staged, ignore_errors=True)
        if dist.is_initialized():
            dist.barrier()

        step = self.global_step
        finished = step >= len(self.dataset) // self.cfg.batch_size
        self.cfg.save_dir = str(staging_root)
        self.global_step = step if finished else step + 1
        try:
            super().save()
        finally:
            self.cfg.save_dir = real_dir
            self.global_step = step

        if _rank_zero():
            # Record the real location, not the staging one, in sparsify's config.
            self.cfg.save_json(str(staged / "config.json"))
            final = checkpoint_dir(real_dir, self.cfg.run_name)
            previous = staging_root / f"{self.cfg.run_name}.previous"
            shutil.rmtree(previous, ignore_errors=True)
            if final.exists():
                os.replace(final, previous)
            os.replace(staged, final)
            shutil.rmtree(previous, ignore_errors=True)
        if dist.is_initialized():
            dist.barrier()
