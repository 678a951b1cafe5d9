"""Probes of `python -m reproductions.table1`: bad presets, damaged stage records,
a second run on the same folder, a kill between stages, and a run from outside the
repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from kill_at import killed
from probe import probe, unprivileged

from reproductions import presets, table1
from transcoders import runlock

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str):
    return CliRunner().invoke(table1.main, list(args))


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for needle in needles:
        assert needle in lines[0]


def _timeless(data):
    """`data` without wall times and file paths, the only values a rerun may change."""
    if isinstance(data, dict):
        return {
            k: _timeless(v) for k, v in data.items()
            if "wall_time" not in k and k not in ("checkpoint", "config")
        }
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


def _same_numbers(a: dict, b: dict) -> None:
    """Same table, comparisons, evaluation and autointerp numbers (paths may differ)."""
    for key in ("table", "comparisons", "evaluation", "autointerp"):
        assert _timeless(a[key]) == _timeless(b[key]), key


@probe("table1", "`--latents -1`", "one-line error naming `--latents` (0 skips autointerp)")
def test_negative_latents_is_an_error():
    _one_line_error(_cli("--preset", "smoke", "--latents", "-1"), "--latents")


@probe("table1", "`--k 0`, `--train-tokens 0`, `--ctx-len -5`", "one-line error naming the flag")
@pytest.mark.parametrize("flag,value", [("--k", "0"), ("--train-tokens", "0"), ("--ctx-len", "-5")])
def test_non_positive_sizes_are_errors(flag, value):
    _one_line_error(_cli("--preset", "smoke", flag, value), flag)


@probe("table1", "`--hookpoints ,` or `--architectures ,`", "one-line error: names nothing")
@pytest.mark.parametrize("flag", ["--hookpoints", "--architectures"])
def test_empty_lists_are_errors(flag):
    _one_line_error(_cli("--preset", "smoke", flag, ","), flag, "names nothing")


@probe("table1", "a second table1 on the same `--work` while one runs", "one-line error: in use by PID")
def test_second_run_on_the_same_work_folder_is_refused(tmp_path):
    with runlock.hold(tmp_path / "work"):
        result = _cli("--preset", "smoke", "--work", str(tmp_path / "work"))
    _one_line_error(result, "in use by PID", str(os.getpid()))


@pytest.mark.integration
@probe("table1", "`stages.json` damaged (not JSON)", "warning; each stage checks its output, same table")
def test_damaged_stage_records_are_recomputed(smoke_table1, tmp_path, capsys):
    results, work = smoke_table1
    copy = shutil.copytree(work, tmp_path / "work")
    (copy / "stages.json").write_text('{"train": {"key": ')
    again = table1.run(presets.get("smoke"), tmp_path / "out", copy)
    assert "stages.json is damaged" in capsys.readouterr().out
    _same_numbers(again, results)


@pytest.mark.integration
@probe("table1", "`evaluation.json` in the stage cache edited or corrupted", "recomputed, same table")
def test_edited_evaluation_is_recomputed(smoke_table1, tmp_path, capsys):
    results, work = smoke_table1
    copy = shutil.copytree(work, tmp_path / "work")
    (evaluation,) = copy.glob("train-*/evaluation.json")
    data = json.loads(evaluation.read_text())
    data["results"][0]["fvu"] = 0.0
    evaluation.write_text(json.dumps(data))
    again = table1.run(presets.get("smoke"), tmp_path / "out", copy)
    assert "changed since the stage wrote it" in capsys.readouterr().out
    _same_numbers(again, results)


@pytest.mark.integration
@probe("table1", "killed (SIGKILL) between training and evaluation; run from outside the repository",
       "the rerun reuses the training and gives the uninterrupted table")
def test_kill_between_stages_then_rerun_from_anywhere(smoke_table1, tmp_path):
    results, _ = smoke_table1
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    args = ["--preset", "smoke"]
    killed("transcoders.evaluation:evaluate", 1, "reproductions.table1", args, cwd=outside)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the installed package must be enough
    done = subprocess.run([sys.executable, "-m", "reproductions.table1", *args], cwd=outside,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[train] cached" in done.stdout
    # Everything went under the current folder's runs/, nothing into the repository.
    assert {p.name for p in outside.iterdir()} == {"runs"}
    rerun = json.loads((outside / "runs/smoke/results/results.json").read_text())
    _same_numbers(rerun, results)


@probe("table1", "`--work` inside a read-only directory", "one-line error naming the folder: permission denied")
def test_unwritable_work_is_one_line(shared_dir):
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    with unprivileged():
        result = _cli("--preset", "smoke", "--work", str(locked / "work"))
    _one_line_error(result, str(locked / "work"), "permission denied")
