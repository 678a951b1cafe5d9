"""`python -m benchmarks [NAME ...]` (`make bench`): run the benchmarks, write
`benchmarks/results/<name>.json` after each, then regenerate docs/performance.md.

Every benchmark measures the plugin and its baseline in alternation in the same run,
so the ratios it prints hold even on a shared, noisy machine. Heavy: run it `nice`.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from . import report  # noqa: E402
from .common import RESULTS, save  # noqa: E402


def _training():
    from .training import TrainingBench, run
    return run(TrainingBench())


def _replay():
    from .replay import ReplayBench, run
    return run(ReplayBench())


def _coder_flops():
    from .coder_flops import CoderFlopsBench, run
    return run(CoderFlopsBench())


def _caching():
    from .caching import CachingBench, run
    return run(CachingBench())


def _autointerp():
    from .autointerp import AutointerpBench, run
    return run(AutointerpBench())


def _dead_latents():
    from .dead_latents import DeadLatentsBench, run
    return run(DeadLatentsBench())


BENCHMARKS = {
    "training": _training,
    "replay": _replay,
    "coder_flops": _coder_flops,
    "caching": _caching,
    "autointerp": _autointerp,
    "dead_latents": _dead_latents,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        start = time.perf_counter()
        result = BENCHMARKS[name]()
        result["wall_s"] = time.perf_counter() - start
        print(f"{name}: wrote {save(name, result)} in {result['wall_s']:.0f} s", flush=True)
    print(f"wrote {report.write(RESULTS)}")


if __name__ == "__main__":
    main()
