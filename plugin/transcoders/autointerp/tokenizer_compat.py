"""Per-token decoding for Delphi under transformers 5.

Why this module exists: Delphi 0.1.3 builds each example's `str_tokens` with
`tokenizer.batch_decode(tokens)` on a 1-D tensor, relying on transformers 4 decoding
every id as its own sequence. transformers 5 decodes a 1-D input as one sequence and
returns a single joined string, which breaks every explainer and scorer (one "token"
per example). `PerTokenDecoding` restores the old behaviour for 1-D inputs only.

When it can go: once Delphi decodes tokens one by one itself (or pins transformers<5).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase


class PerTokenDecoding:
    """A tokenizer proxy whose `batch_decode` of a flat id sequence returns one string
    per id; everything else is the wrapped tokenizer's."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer

    def __getattr__(self, name: str):
        return getattr(self.tokenizer, name)

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        if isinstance(sequences, torch.Tensor) and sequences.dim() == 1:
            sequences = sequences[:, None]
        elif isinstance(sequences, (list, tuple)) and sequences and isinstance(sequences[0], int):
            sequences = [[i] for i in sequences]
        return self.tokenizer.batch_decode(sequences, **kwargs)
