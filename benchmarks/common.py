"""What every benchmark shares: alternating A/B timing, medians, machine and load
records, and the JSON result files the performance page is generated from."""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import torch
from sparsify import TrainConfig

from transcoders import architectures
from transcoders.atomic import write_json

RESULTS = Path(__file__).parent / "results"


def load() -> list[float]:
    """1, 5 and 15 minute load averages: the machine is shared, so every figure
    carries the load it was measured under."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """Where the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = 0.0
    versions = {}
    for pkg in ("torch", "transformers", "eai-sparsify", "eai-delphi", "transcoders"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(mem_gb, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "versions": versions,
    }


def alternate(a: Callable[[], list[float]], b: Callable[[], list[float]], repeats: int) -> dict:
    """Run `a` and `b` in turn (A B A B ...), each returning a list of samples (e.g.
    step times), so that load changes on the shared machine hit both alike.

    Returns the samples of each, the median of each, and the load beside each run.
    """
    samples: dict[str, list[float]] = {"a": [], "b": []}
    loads: dict[str, list[list[float]]] = {"a": [], "b": []}
    for _ in range(repeats):
        for name, fn in (("a", a), ("b", b)):
            loads[name].append(load())
            samples[name].extend(fn())
    return {
        "a": {"median": statistics.median(samples["a"]), "samples": samples["a"], "load": loads["a"]},
        "b": {"median": statistics.median(samples["b"]), "samples": samples["b"], "load": loads["b"]},
    }


class Timestamps:
    """Forward pre-hook that records when each forward of a module starts; the gaps
    between consecutive starts are whole training steps as the Trainer runs them."""

    def __init__(self, module: torch.nn.Module):
        self.times: list[float] = []
        self.handle = module.register_forward_pre_hook(lambda *_: self.times.append(time.perf_counter()))

    def mark(self) -> None:
        """Record a time by hand (the end of the last step)."""
        self.times.append(time.perf_counter())

    def gaps(self, skip: int) -> list[float]:
        """Durations of the steps after the first `skip`."""
        return [b - a for a, b in zip(self.times, self.times[1:])][skip:]

    def remove(self) -> None:
        self.handle.remove()


def save(name: str, result: dict, results_dir: Path = RESULTS) -> Path:
    """Write `<results_dir>/<name>.json` atomically, stamped with machine and time."""
    path = Path(results_dir) / f"{name}.json"
    write_json(path, {
        "benchmark": name,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        **result,
    })
    return path


def train_config(arch: str, hookpoint: str, save_dir: str, *, k: int, expansion_factor: int,
                 batch_size: int) -> TrainConfig:
    """sparsify's TrainConfig for one benchmarked fit: one coder of `arch` at
    `hookpoint`, seed 0, no checkpoint before the end, no wandb."""
    return TrainConfig(
        architectures.get(arch).coder_config(k=k, expansion_factor=expansion_factor),
        batch_size=batch_size,
        hookpoints=[hookpoint],
        init_seeds=[0],
        save_dir=save_dir,
        run_name=arch,
        save_every=10**9,
        log_to_wandb=False,
    )
