"""Exporting trained coders to circuit-tracer and SAELens, and checking that the
target library computes the same function.

`api.export(run, to, out)` writes the target format; `api.verify(...)` runs the
target library on real activations in the second environment (`.venv-circuits`,
built by `make circuits-env`) and compares. `target.py` is the half that runs in
that environment: it imports torch, safetensors, circuit-tracer and SAELens but not
sparsify, so this package imports nothing at import time.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy, so that `transcoders.export.target` imports in .venv-circuits, which has
    # no sparsify.
    if name in ("export", "verify", "FORMATS", "ExportError"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
