"""The settings guard: one output folder holds the results of one set of settings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from .config import AutointerpConfig
from .state import AutointerpError

SETTINGS_FILE = "settings.json"
# Settings that change no explanation or score already on disk.
_RESUMABLE = {
    "latents", "scorers", "architectures", "hookpoints", "out", "concurrency", "device",
    "n_boot", "timeout", "retries", "max_unparsed",
}
# How test examples are drawn, recorded with the settings so that scores made with the
# earlier rule (quantiles over all examples, the explainer's dropped afterwards) are
# never resumed as if made with this one.
TEST_SAMPLING = "fixed count by quantile of the held-out examples"


def folder_settings(cfg: AutointerpConfig, model: str | None, dataset: str | None) -> dict:
    """The settings every explanation and score in one output folder was made with:
    all but those that change nothing already on disk."""
    return {
        k: v for k, v in {**asdict(cfg), "model": model, "dataset": dataset,
                          "test_sampling": TEST_SAMPLING}.items()
        if k not in _RESUMABLE
    }


def check_same_settings(out: Path, cfg: AutointerpConfig, model: str, dataset: str) -> dict:
    """Refuse to mix results of different settings in one folder: a rerun resumes only
    the run that wrote it (more latents or scorers are fine). Returns the settings."""
    settings = folder_settings(cfg, model, dataset)
    file = out / SETTINGS_FILE
    if file.is_file():
        # Not recomputed like the other files: it is what ties every explanation and
        # score in `out` to its settings, and only the user knows whether to keep them.
        try:
            old = json.loads(file.read_bytes())
        except (OSError, ValueError, RecursionError):
            old = None
        if not isinstance(old, dict):
            raise AutointerpError(
                f"{file} is damaged (not a JSON object), so the results in {out} cannot "
                f"be matched to the settings that made them: delete {out} to start over, "
                "or pass another --out"
            )
        changed = sorted(k for k in settings.keys() | old.keys() if settings.get(k) != old.get(k))
        if changed:
            raise AutointerpError(
                f"{out} holds results made with other settings ({', '.join(changed)} "
                f"differ, see {file}); pass another --out, or delete {out} to start over"
            )
    return settings
