"""Delphi `Client`s for explainer and scorer models, and `make_client` to pick one.

Client specs understood by `make_client`:

- `local:embedded`, `local:<hub id or path>`: `LocalClient`, transformers in-process.
- `http://host:port/v1@<model>` (or `https://...`): `HTTPClient` for any
  OpenAI-compatible server, e.g. a local `vllm serve` or llama.cpp `llama-server`.
- `openai:<model>`: the OpenAI API, key in $OPENAI_API_KEY.
- `openrouter:<model>`: OpenRouter, key in $OPENROUTER_API_KEY.
- `vllm:<hub id or path>`: Delphi's own vLLM `Offline` client (needs vllm and a GPU).
"""

from __future__ import annotations

import os

from ..delphi_compat import import_delphi, vllm_available
from .base import TokenLogprobs, TopLogprob
from .http import EndpointError, HTTPClient
from .local import LocalClient

HOSTED = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    "openrouter": ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
}
SPEC_HELP = (
    "Use local:embedded, local:<hub id or path>, http://host:port/v1@<model>, "
    "openai:<model>, openrouter:<model> or vllm:<model>."
)


def is_http(spec: str) -> bool:
    """Whether `spec` names an HTTP endpoint, the one kind with timeouts and retries."""
    return spec.partition(":")[0] in ("http", "https", *HOSTED)


def make_client(spec: str, **kwargs):
    """Build a Delphi client from a spec string; `kwargs` go to the client's constructor."""
    scheme, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(f"Unknown client spec {spec!r}. {SPEC_HELP}")
    if scheme == "local":
        return LocalClient(rest, **kwargs)
    if scheme in ("http", "https"):
        base_url, at, model = spec.rpartition("@")
        if not at or not model:
            raise ValueError(
                f"HTTP client spec {spec!r} must end in @<model>, e.g. "
                "http://127.0.0.1:8000/v1@Qwen/Qwen2.5-7B-Instruct"
            )
        return HTTPClient(model, base_url, **kwargs)
    if scheme in HOSTED:
        base_url, key_env = HOSTED[scheme]
        key_env = kwargs.pop("api_key_env", key_env)
        if not os.environ.get(key_env):
            raise ValueError(
                f"{scheme}:{rest} needs an API key in the environment variable {key_env}"
            )
        return HTTPClient(rest, base_url, api_key_env=key_env, **kwargs)
    if scheme == "vllm":
        if not vllm_available():
            raise ImportError(
                f"{spec!r} uses Delphi's vLLM Offline client, but vllm is not installed. "
                "On a GPU machine: pip install 'transcoders[gpu]'. Without a GPU use "
                "local:<model> or an http:// endpoint instead."
            )
        import_delphi()
        from delphi.clients import Offline

        return Offline(rest, **kwargs)
    raise ValueError(f"Unknown client scheme {scheme!r} in {spec!r}. {SPEC_HELP}")


__all__ = [
    "EndpointError",
    "HTTPClient",
    "LocalClient",
    "TokenLogprobs",
    "TopLogprob",
    "make_client",
]
