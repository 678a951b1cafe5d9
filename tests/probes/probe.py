"""Marks a test as a probe: one bad input, kill or corruption a user could meet.

    @probe("train", "`--k 0`", "one-line error naming `--k`")
    def test_k_zero(...): ...

The docs' troubleshooting page lists every probe in `tests/probes/test_*.py` as a
table, read from these decorators (docs/gen/tables.py parses them; arguments must be
string literals), so the page cannot claim an answer that no test checks.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest


def probe(command: str, tried: str, answer: str) -> Callable:
    """Record what a user ran (`command`, `tried`) and what they get (`answer`)."""
    return pytest.mark.probe(command=command, tried=tried, answer=answer)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Act as `nobody` while inside, when running as root (for whom permissions are
    no obstacle), so a read-only directory really refuses writes."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
