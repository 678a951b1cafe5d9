"""Explaining latents: each usable explanation saved as it arrives, saved ones reused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import write_text
from .config import AutointerpConfig
from .explainers import UNPARSED
from .runner import run_all
from .sampling import latent_name
from .state import AutointerpError, distrust, read_json


def usable(explanation: Any) -> bool:
    """Whether an explainer's answer is an explanation: Delphi's explainers return
    UNPARSED when the model's text held none."""
    return isinstance(explanation, str) and explanation.strip() not in ("", UNPARSED)


def explain(
    records, explainer, folder: Path, label: str, cfg: AutointerpConfig
) -> tuple[dict, set[str]]:
    """Usable explanations by latent name, loading saved ones and saving each new one,
    and the names explained in this call. Unusable answers are not saved."""
    done, fresh, todo = {}, set(), []
    for record in records:
        file = folder / f"{latent_name(record)}.txt"
        saved = read_json(file, str, "explaining the latent again")
        if usable(saved):
            done[latent_name(record)] = saved
            continue
        if saved is not None:
            distrust(file, "holds no usable explanation", "explaining the latent again")
        todo.append(record)

    async def one(record, bar):
        try:
            result = await explainer(record)
        except Exception as err:
            raise AutointerpError(
                f"The explainer failed on {record.latent}: {err}. Finished latents are "
                f"saved in {folder}; rerun the same command to continue."
            ) from err
        if usable(result.explanation):
            text = json.dumps(result.explanation, ensure_ascii=False)
            write_text(folder / f"{latent_name(record)}.txt", text)
            done[latent_name(record)] = result.explanation
            fresh.add(latent_name(record))
        bar.update()

    run_all(todo, one, f"Explaining {label}", len(records) - len(todo), len(records), cfg)
    return done, fresh
