"""`--pretrained`: EleutherAI's released checkpoints instead of training.

The stage around `transcoders.hub.import_released`, which downloads the preset's
hookpoints of each released repository (or finds them in the local HF cache when
offline), checks every coder that reads the module input for sparsify's legacy input
centring, and makes a run directory of them that evaluation and autointerp read like
any trained run.
"""

from __future__ import annotations

from pathlib import Path

from transcoders import hub
from transcoders.errors import UserError

from .presets import PRETRAINED, Preset
from .stages import Stages, config_key


def pretrained_stage(stages: Stages, preset: Preset) -> Path:
    """Import the released checkpoints for `preset` (once); returns the run dir."""
    repos = PRETRAINED.get(preset.name)
    if repos is None:
        raise UserError(
            f"--pretrained has released checkpoints for: {', '.join(PRETRAINED)}; "
            f"not for preset '{preset.name}'"
        )
    key = config_key({"repos": repos, "model": preset.model, "hookpoints": preset.hookpoints})
    run_dir = stages.out / f"pretrained-{key}"

    def work() -> None:
        hub.import_released(
            repos, run_dir, model=preset.model, hookpoints=preset.hookpoints,
            dataset=preset.dataset, eval_split=preset.eval_split, ctx_len=preset.ctx_len,
            seed=preset.seed,
        )

    stages.run("pretrained", key, run_dir / hub.IMPORT_RECORD, work)
    return run_dir
