"""One model forward per batch for all architectures, instead of one each.

sparsify's Trainer trains one architecture at a time and runs the subject model for
every batch, so training three architectures on the same tokens runs the same
forward three times. Here the activations at the hookpoints are recorded once, and
each Trainer gets an `ActivationReplay` in place of the model: a module with the
same hookpoint names whose forward feeds the recorded input and output through
them, so sparsify's own hooks see exactly what the real model would have given.

Rows are found by their token ids: a row's activations depend only on its tokens
(the model is causal and each row is a whole context), so equal rows share them.
Replay is used only while the recording fits `REPLAY_BUDGET_BYTES`; beyond that,
`train` falls back to the truncated live forward.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..activations import module_io
from .sites import Scales, SiteModel

REPLAY_BUDGET_BYTES = 4 * 2**30


def replay_bytes(rows: int, ctx_len: int, widths: dict[str, tuple[int, int]], itemsize: int) -> int:
    """Memory a recording of `rows` rows would take."""
    return rows * ctx_len * itemsize * sum(d_in + d_out for d_in, d_out in widths.values())


class ActivationReplay(SiteModel):
    """A stand-in for the subject model that replays recorded hookpoint activations,
    multiplied by `scales` where given."""

    def __init__(
        self,
        model: nn.Module,
        hookpoints: list[str],
        rows: Dataset,
        batch_size: int,
        scales: Scales | None = None,
    ):
        super().__init__(model, hookpoints, scales)
        self.tokens = rows[:]["input_ids"]
        self.row_of = {row.numpy().tobytes(): i for i, row in enumerate(self.tokens)}
        parts: dict[str, dict[str, list[Tensor]]] = {
            name: {"input": [], "output": []} for name in hookpoints
        }
        for start in tqdm(range(0, len(rows), batch_size), desc="Recording activations"):
            acts = module_io(model, hookpoints, self.tokens[start : start + batch_size].to(self._device))
            for name in hookpoints:
                for site in ("input", "output"):
                    parts[name][site].append(acts[name][site])
        self.recorded = {
            name: {site: torch.cat(chunks) for site, chunks in sites.items()}
            for name, sites in parts.items()
        }

    @property
    def dummy_inputs(self) -> dict[str, Tensor]:
        """sparsify probes widths with a forward on these: a recorded row."""
        return {"input_ids": self.tokens[:1]}

    def forward(self, input_ids: Tensor, **_) -> None:
        """Feed each row's recorded activations through the hookpoint modules."""
        try:
            index = [self.row_of[row.cpu().numpy().tobytes()] for row in input_ids]
        except KeyError as err:
            raise RuntimeError("ActivationReplay got a row it did not record") from err
        for name in self.hookpoints:
            recorded = self.recorded[name]
            self.feed(name, recorded["input"][index], recorded["output"][index])
