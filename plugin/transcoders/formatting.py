"""How numbers are written for people: intervals and Markdown tables.

The CLI, the browser, the reproductions, the benchmarks and the docs hook all write
through these, so a confidence interval reads the same everywhere.
"""

from __future__ import annotations

import math


def interval(
    value: float | None, low: float | None, high: float | None, *, digits: int = 3,
    missing: str = "n/a",
) -> str:
    """`value [low, high]` with `digits` decimals; `missing` when there is no value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
