"""What every client shares: prompt shapes, generation settings, token log-probs.

Delphi's scorers read `Response.logprobs` as one entry per generated token with
`.token` and `.top_logprobs` (each `.token`, `.logprob`); Delphi defines those types in
its vLLM module, so the clients here use these equivalents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

Messages = list[dict[str, str]]
Prompt = Union[str, Messages]


@dataclass
class TopLogprob:
    token: str
    """Decoded text of a candidate token."""
    logprob: float
    """Its natural-log probability under the model (before temperature)."""


@dataclass
class TokenLogprobs:
    token: str
    """Decoded text of the generated token."""
    logprob: float
    """Its natural-log probability."""
    top_logprobs: list[TopLogprob] = field(default_factory=list)
    """The most likely tokens at this position, most likely first."""


@dataclass(frozen=True)
class Generation:
    """Per-request settings, from the keyword arguments Delphi passes to `generate`."""

    max_tokens: int
    """Most tokens to generate."""
    temperature: float = 0.0
    """0 is greedy decoding."""
    logprobs: bool = False
    """Return the log-prob of every generated token."""
    top_logprobs: int = 0
    """With `logprobs`, also return this many most likely tokens per position."""
    stop: tuple[str, ...] = ()
    """End generation at the first of these strings (not included in the text)."""

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], max_tokens: int) -> "Generation":
        """Parse `generate(**kwargs)`; unknown names are an error, not silently ignored."""
        kwargs = dict(kwargs)
        stop = kwargs.pop("stop", None) or ()
        settings = cls(
            max_tokens=int(kwargs.pop("max_tokens", kwargs.pop("max_new_tokens", max_tokens))),
            temperature=float(kwargs.pop("temperature", 0.0)),
            logprobs=bool(kwargs.pop("logprobs", False)),
            top_logprobs=int(kwargs.pop("top_logprobs", 0) or 0),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
        )
        if kwargs:
            raise TypeError(
                f"Unsupported generation arguments {sorted(kwargs)}; supported: "
                "max_tokens, temperature, logprobs, top_logprobs, stop"
            )
        if settings.temperature < 0 or settings.max_tokens < 1 or settings.top_logprobs < 0:
            raise ValueError(f"Invalid generation settings: {settings}")
        return settings


def as_messages(prompt: Prompt) -> Messages:
    """A bare string is one user message, as in the OpenAI chat API."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)
