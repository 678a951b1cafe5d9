"""Test-only: run a command line and SIGKILL it at the Nth call of one function, so a
kill lands at a chosen point of the run rather than after a guessed delay.

    python tests/kill_at.py MODULE:ATTR N PROGRAM [ARGS...]

ATTR may be dotted (`Class.method`); it is replaced where callers look it up, so
name the module that calls it. PROGRAM runs as `python -m PROGRAM ARGS...`
(`transcoders`, `reproductions.table1`).
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import subprocess
import sys


def killed(
    target: str, n: int, program: str, args: list[str], env: dict | None = None, cwd=None
) -> None:
    """Run `program` with `target` killing it at its `n`th call; check it died so."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    done = subprocess.run(
        [sys.executable, __file__, target, str(n), program, *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _main() -> None:
    target, n, program, *args = sys.argv[1:]
    module, attr = target.split(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    real = getattr(owner, name)
    calls = 0

    def dying(*a, **kw):
        nonlocal calls
        calls += 1
        if calls == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)

    setattr(owner, name, dying)
    sys.argv = [program, *args]
    runpy.run_module(program, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
