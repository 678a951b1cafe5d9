"""Explainers beside Delphi's `DefaultExplainer`: a compact prompt for small local
models, and a model-free baseline that names a latent's top activating tokens."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .delphi_compat import import_delphi

import_delphi()
from delphi.explainers import DefaultExplainer  # noqa: E402
from delphi.explainers.explainer import ExplainerResult  # noqa: E402
from delphi.latents import ActivatingExample, LatentRecord  # noqa: E402

# What Delphi's explainers return when the model's answer has no explanation in it.
UNPARSED = "Explanation could not be parsed."

COMPACT_SYSTEM = (
    "You name the pattern in text examples. In each example the words between << and >> "
    "are where a hidden feature is active. Reply with one short line: "
    "[EXPLANATION]: followed by what the marked words have in common."
)
COMPACT_SHOTS = (
    (
        "Example 1: and he was <<over the moon>> to find\n"
        "Example 2: we'll be laughing <<till the cows come home>>! Pro\n"
        "Example 3: there's more <<than meets the eye>>! I'd",
        "[EXPLANATION]: Common idioms in text conveying positive sentiment.",
    ),
    (
        "Example 1: she said to <<her>> brother that\n"
        "Example 2: gave <<him>> the letter and\n"
        "Example 3: told <<them>> to wait",
        "[EXPLANATION]: Pronouns that are the object of a verb.",
    ),
)


@dataclass
class CompactExplainer(DefaultExplainer):
    """Delphi's default explainer with a short prompt that small models (100M-1B
    parameters) can follow: a three-sentence instruction, two short worked examples,
    highlighted text without per-token activation lists."""

    activations: bool = False
    max_words: int = 30
    """Longer answers are treated as failed parses: small models that ramble have not
    produced a one-line explanation."""

    def _build_prompt(self, examples: list[ActivatingExample]) -> list[dict]:
        shown = "\n".join(
            f"Example {i + 1}: {self._highlight(ex.str_tokens, ex.activations.tolist())}"
            for i, ex in enumerate(examples)
        )
        messages = [{"role": "system", "content": COMPACT_SYSTEM}]
        for user, assistant in COMPACT_SHOTS:
            messages += [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]
        return messages + [{"role": "user", "content": shown}]

    def parse_explanation(self, text: str) -> str:
        match = re.search(r"\[EXPLANATION\]:?\s*(.+)", text)
        line = match.group(1).strip() if match else ""
        if not line or len(line.split()) > self.max_words:
            return UNPARSED
        return line


@dataclass
class TopTokensExplainer:
    """Model-free baseline: the explanation lists the tokens on which the latent is
    most active in its training examples, most frequent first. Anything an LLM
    explainer adds should beat this."""

    n_tokens: int = 5

    async def __call__(self, record: LatentRecord) -> ExplainerResult:
        counts = Counter(_peak_token(ex) for ex in record.train)
        top = ", ".join(f'"{tok}"' for tok, _ in counts.most_common(self.n_tokens))
        return ExplainerResult(record=record, explanation=f"The tokens {top}")


def _peak_token(example: ActivatingExample) -> str:
    token = example.str_tokens[int(example.activations.argmax())]
    # Whitespace-only tokens (newlines, indentation) are shown escaped.
    return token.strip() or repr(token)
