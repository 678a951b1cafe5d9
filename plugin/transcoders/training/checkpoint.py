"""Crash-safe, resumable checkpoints around sparsify's Trainer.

Workarounds for sparsify 1.3.3, kept here; drop each when sparsify fixes it:
- it writes a checkpoint in place, file by file, so a run killed mid-save leaves a
  folder that mixes two steps. We save into a staging folder and swap it in with
  renames.
- it saves inside its batch loop before counting the batch just trained, so the
  `global_step` in state.pt is one short and a resume trains that batch twice. We
  record the number of batches actually done.
- it saves again after its loop, although nothing changed since the last batch's
  save: with the schedule-free optimizer each save moves the weights to their
  average and back, which rounds them, so a run killed between the two saves would
  resume to other weights. We skip a save of a step already saved.
- its schedule-free optimizer is in train mode while the weights are saved as their
  average (`optimizer.eval()`), but `load_state` loads that average into a trainer
  whose optimizer thinks it is in train mode, so a resumed run trains from other
  weights than the uninterrupted one. We move the loaded weights back to the
  training point, exactly as the save did.
- its `fit()` cannot resume a checkpoint saved after the last batch: it asks
  `datasets` for rows past the end (IndexError). `finished` tells `train` to skip it.
- safetensors writes weights 0600: we give the checkpoint the umask's permissions.

With `coder_scales` (training on normalised activations, `training/normalize.py`)
every saved checkpoint is folded back to raw scale, and a resume unfolds it.

It also stops a diverging run: every training loss and, after every optimizer step,
every weight must be finite, else `TrainingDiverged` names the step instead of
training on NaN.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from schedulefree import ScheduleFreeWrapper
from sparsify import Trainer

from ..atomic import respect_umask
from ..errors import UserError
from .normalize import fold_file, unfold_

STAGING = ".staging"


class TrainingDiverged(UserError, ArithmeticError):
    """The loss or the weights stopped being finite numbers."""


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
    """sparsify's Trainer whose checkpoints are replaced atomically and resume exactly.

    `on_save(step)` is called on rank zero after each checkpoint is in place.
    `coder_scales` (hookpoint -> (s_in, s_out)) says the coders train on activations
    scaled by those factors; each checkpoint is then saved folded to raw scale.
    """

    def __init__(
        self,
        *args,
        on_save: Callable[[int], None] | None = None,
        coder_scales: dict[str, tuple[float, float]] | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.on_save = on_save
        self.coder_scales = coder_scales or {}
        self.saved_step = -1
        self.num_batches = len(self.dataset) // self.cfg.batch_size
        for optimizer in self.optimizers:
            optimizer.step = self._checked(optimizer.step)
        for coder in self.saes.values():
            coder.register_forward_hook(self._check_loss)

    def _diverged(self, what: str) -> TrainingDiverged:
        lr = self.optimizers[0].param_groups[0]["lr"]
        # End the line of fit()'s progress bar, which stays open as the error unwinds.
        print(file=sys.stderr)
        return TrainingDiverged(
            f"{self.cfg.run_name}: training diverged at step {self.global_step + 1} of "
            f"{self.num_batches}: {what} (NaN or inf) at learning rate {lr:.3g}. Lower "
            "--lr and start again (with --overwrite if this run saved checkpoints)."
        )

    def _check_loss(self, _coder, _inputs, output) -> None:
        if not output.fvu.isfinite():
            raise self._diverged("the training loss is no longer finite")

    def _checked(self, step: Callable) -> Callable:
        @functools.wraps(step)  # keeps the marks torch's LR schedulers put on it
        def checked_step(*args, **kwargs):
            result = step(*args, **kwargs)
            weights = [p for coder in self.saes.values() for p in coder.parameters()]
            if not torch.stack([p.isfinite().all() for p in weights]).all():
                raise self._diverged("the weights are no longer finite")
            return result

        return checked_step

    @property
    def finished(self) -> bool:
        """Whether every batch has been trained (a resume has nothing left to fit)."""
        return self.global_step >= self.num_batches

    def load_state(self, path: str) -> None:
        """sparsify's load_state, with the weights moved back to the training point."""
        super().load_state(path)
        self.saved_step = self.global_step
        for name, (s_in, s_out) in self.coder_scales.items():
            unfold_(self.saes[name], s_in, s_out)
        for optimizer in self.optimizers:
            if isinstance(optimizer, ScheduleFreeWrapper):
                # The file holds the averaged weights that `optimizer.eval()` gave the
                # save; `train()` undoes that as it did right after the save.
                optimizer.train_mode = False
                optimizer.train()

    def save(self) -> None:
        """sparsify's save, into a staging folder swapped in by renames."""
        step = self.global_step
        done = step if self.finished else step + 1
        if done == self.saved_step:
            return
        real_dir = self.cfg.save_dir
        staging_root = Path(real_dir) / STAGING
        staged = checkpoint_dir(staging_root, self.cfg.run_name)
        if _rank_zero():
            shutil.rmtree(staged, ignore_errors=True)
        if dist.is_initialized():
            dist.barrier()

        self.cfg.save_dir = str(staging_root)
        self.global_step = done
        try:
            super().save()
        finally:
            self.cfg.save_dir = real_dir
            self.global_step = step
        self.saved_step = done

        if _rank_zero():
            for name, (s_in, s_out) in self.coder_scales.items():
                fold_file(staged / name, s_in, s_out)
            # Record the real location, not the staging one, in sparsify's config.
            self.cfg.save_json(str(staged / "config.json"))
            respect_umask(staged)
            final = checkpoint_dir(real_dir, self.cfg.run_name)
            previous = staging_root / f"{self.cfg.run_name}.previous"
            shutil.rmtree(previous, ignore_errors=True)
            if final.exists():
                os.replace(final, previous)
            os.replace(staged, final)
            shutil.rmtree(previous, ignore_errors=True)
            if self.on_save is not None:
                self.on_save(done)
        if dist.is_initialized():
            dist.barrier()
