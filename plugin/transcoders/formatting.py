"""How numbers are written for people: intervals and Markdown tables.

The CLI, the browser, the reproductions, the benchmarks and the docs hook all write
through these, so a confidence interval reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def interval(
    value: float | None, low: float | None, high: float | None, *, digits: int = 3,
    missing: str = "n/a",
) -> str:
    """`value [low, high]` with `digits` decimals; `missing` when there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(
    header: Sequence, rows: Iterable[Sequence], cell: Callable[[Any], str] = str
) -> str:
    """`rows` under `header` as a Markdown table, every cell (header too) written by `cell`."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
