"""Marks a test as a probe: one bad input, kill or corruption a user could meet.

    @probe("train", "`--k 0`", "one-line error naming `--k`")
    def test_k_zero(...): ...

The docs' troubleshooting page lists every probe in `tests/probes/test_*.py` as a
table, read from these decorators (docs/gen/tables.py parses them; arguments must be
string literals), so the page cannot claim an answer that no test checks.
"""

from __future__ import annotations

from typing import Callable

import pytest


def probe(command: str, tried: str, answer: str) -> Callable:
    """Record what a user ran (`command`, `tried`) and what they now get (`answer`)."""
    return pytest.mark.probe(command=command, tried=tried, answer=answer)
