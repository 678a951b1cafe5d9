"""The per-directory lock: a second writer is refused while the first holds it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from transcoders.runlock import DirectoryInUse, hold
from transcoders.validation import ConfigError, device, non_empty, non_negative, positive


def test_second_holder_is_refused_with_the_first_pid(tmp_path):
    with hold(tmp_path):
        code = f"from transcoders.runlock import hold\nwith hold({str(tmp_path)!r}): pass"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0
        assert f"in use by PID {os.getpid()}" in done.stderr
    with hold(tmp_path):  # released on exit, reusable
        pass


def test_lock_dies_with_its_process(tmp_path):
    code = f"import os\nfrom transcoders.runlock import hold\nwith hold({str(tmp_path)!r}): os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with hold(tmp_path):
        pass


def test_same_process_cannot_take_it_twice(tmp_path):
    with hold(tmp_path), pytest.raises(DirectoryInUse):
        with hold(tmp_path):
            pass


@pytest.mark.parametrize("check,value", [
    (positive, 0), (positive, -1), (positive, float("nan")), (positive, float("inf")),
    (non_negative, -1), (non_negative, float("nan")),
])
def test_range_checks_name_the_flag(check, value):
    with pytest.raises(ConfigError, match="--batch-size"):
        check("batch_size", value)


def test_range_checks_accept_good_values():
    positive("k", 1), positive("lr", 1e-4), non_negative("tokens", 0)
    non_empty("architectures", ["sae"]), device("device", "cpu"), device("device", "auto")


@pytest.mark.parametrize("name", ["bogus", "tpu", "cuda:99"])
def test_device_check(name):
    with pytest.raises(ConfigError, match="--device"):
        device("device", name)
