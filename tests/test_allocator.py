"""The training heap setting: a large block freed by one step is reused by the next
instead of being page-faulted afresh (checked in subprocesses: it is process-wide).
The heap reaches its steady state after a few steps, so the last step is counted."""

import platform
import subprocess
import sys

import pytest

from transcoders.training.allocator import keep_freed_memory

PROBE = """
import resource, sys
import torch
from transcoders.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x, w = torch.randn(2048, 256), torch.randn(8192, 256)
for step in range(6):  # the temporaries of a coder step: 64 MiB pre-activations
    before = faults()
    pre = x @ w.T
    top = pre.relu().topk(32, dim=-1)
    del pre, top
print(faults() - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.split()[-1])  # importing sparsify may print first


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_freed_block_is_reused_without_page_faults():
    fresh, kept = _faults("default"), _faults("keep")
    assert fresh > 10_000  # glibc maps the 64 MiB anew every step
    assert kept < fresh / 10


@pytest.mark.skipif(platform.libc_ver()[0] == "glibc", reason="checks the non-glibc path")
def test_other_c_libraries_are_left_alone():
    assert keep_freed_memory() is False
