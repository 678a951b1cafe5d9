"""Test-only: run autointerp and SIGKILL it at the Nth call of a function, so a kill
lands at a chosen point of the run rather than after a guessed delay.

    python kill_at.py MODULE.FUNCTION N RUN_DIR OPTIONS_JSON

OPTIONS_JSON holds `AutointerpConfig` fields.
"""

import importlib
import json
import os
import signal
import sys


def main() -> None:
    target, n, run_dir, options = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    calls = 0

    def killing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(module, name, killing)
    from transcoders.autointerp.config import AutointerpConfig
    from transcoders.autointerp.pipeline import run_autointerp

    run_autointerp(run_dir, AutointerpConfig(**options))


if __name__ == "__main__":
    main()
