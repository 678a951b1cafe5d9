"""Probes of `transcoders train`: kills, concurrent runs, divergence, odd run folders.

The kill probes run the real command in a subprocess and SIGKILL it at an exact
point: a wrapper patches one function to kill its own process at its Nth call (no
timing), then `--resume` must finish with the weights and held-out FVU of an
uninterrupted run, bit for bit.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from kill_at import killed
from probe import probe
from safetensors.torch import load_file

from transcoders.cli import main
from transcoders.runlock import hold

ARCHS = ("sae", "transcoder")
HOOKPOINT = "layers.1.mlp"

def train_args(out: Path, model_dir: Path, corpus_dir: Path, *extra: str) -> list[str]:
    """Two architectures (so activations are recorded and replayed), 6 steps each,
    a checkpoint after steps 1, 3, 5 and 6."""
    return [
        "train", "--arch", ",".join(ARCHS), "--hookpoints", HOOKPOINT,
        "--model", str(model_dir), "--dataset", str(corpus_dir),
        "--k", "4", "--expansion-factor", "2", "--tokens", str(32 * 4 * 6),
        "--eval-tokens", str(32 * 8), "--ctx-len", "32", "--batch-size", "4",
        "--save-every", "2", "--lr", "2e-4", "--device", "cpu", "--out", str(out), *extra,
    ]  # fmt: skip


def run_cli(args: list[str]):
    return CliRunner().invoke(main, args)


def one_line_error(result, *expected: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    for text in expected:
        assert text in line
    return line


def manifest(out: Path) -> dict:
    # Strict JSON: a NaN or Infinity in the file fails here.
    return json.loads((out / "manifest.json").read_text(), parse_constant=pytest.fail)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_lm_dir, tiny_corpus_dir) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir))
    assert result.exit_code == 0, result.output
    return out


def kill_then_resume(out: Path, model_dir: Path, corpus_dir: Path, target: str, nth: int) -> dict:
    """Kill `transcoders train` at the `nth` call of `target`; return the manifest
    it left behind, after checking `--resume` finishes the run."""
    killed(target, nth, "transcoders", train_args(out, model_dir, corpus_dir))
    left = manifest(out) if (out / "manifest.json").exists() else {}
    result = run_cli(train_args(out, model_dir, corpus_dir, "--resume"))
    assert result.exit_code == 0, result.output
    return left


def assert_same_run(out: Path, reference: Path) -> None:
    done, expected = manifest(out), manifest(reference)
    for arch in ARCHS:
        record = done["architectures"][arch]
        assert record["status"] == "complete"
        assert record["fvu"] == expected["architectures"][arch]["fvu"]
        weights = load_file(out / arch / HOOKPOINT / "sae.safetensors")
        reference_weights = load_file(reference / arch / HOOKPOINT / "sae.safetensors")
        assert weights.keys() == reference_weights.keys()
        for name, tensor in weights.items():
            assert torch.equal(tensor, reference_weights[name]), f"{arch} {name}"


@probe("train", "`kill -9` while recording activations, mid-training, or mid-save, then `--resume`",
       "finishes with weights and held-out FVU identical to an uninterrupted run")
@pytest.mark.parametrize(
    "target, nth, resumes_at",
    [
        # The second batch of the activation recording: nothing trained yet.
        ("transcoders.training.replay:module_io", 2, {}),
        # Before the 5th optimizer step of `sae`, whose last checkpoint is step 3:
        # the schedule-free optimizer's state must resume exactly.
        ("schedulefree:ScheduleFreeWrapper.step", 5, {"sae": 3}),
        # Writing state.pt of the transcoder's checkpoint at step 3 (torch.save calls:
        # 3 per checkpoint, 4 checkpoints of `sae` first): step 1 stays in place.
        ("torch:save", 3 * 4 + 3 + 2, {"sae": "complete", "transcoder": 1}),
    ],
    ids=["recording", "training", "saving"],
)
def test_kill_anywhere_then_resume_matches_uninterrupted(
    tmp_path, tiny_lm_dir, tiny_corpus_dir, uninterrupted, target, nth, resumes_at
):
    out = tmp_path / "run"
    left = kill_then_resume(out, tiny_lm_dir, tiny_corpus_dir, target, nth)
    records = left.get("architectures", {})
    # What the manifest said after the kill: complete, or the last saved step.
    assert {
        a: r["status"] if r["status"] == "complete" else r["step"] for a, r in records.items()
    } == resumes_at
    resumed = manifest(out)["architectures"]
    for arch, at in resumes_at.items():
        if at != "complete":
            assert resumed[arch]["resumed_from_step"] == at
    assert_same_run(out, uninterrupted)


@probe("train", "`kill -9` after the last checkpoint (during the held-out FVU), then `--resume`",
       "skips training, computes the FVU and completes")
def test_kill_after_last_checkpoint_then_resume(tmp_path, tiny_lm_dir, tiny_corpus_dir, uninterrupted):
    out = tmp_path / "run"
    left = kill_then_resume(out, tiny_lm_dir, tiny_corpus_dir,
                            "transcoders.training.train:heldout_fvu", 2)  # fmt: skip
    assert left["architectures"]["transcoder"]["status"] == "training"
    assert left["architectures"]["transcoder"]["step"] == 6
    assert manifest(out)["architectures"]["transcoder"]["resumed_from_step"] == 6
    assert_same_run(out, uninterrupted)


@probe("train", "two runs into the same `--out` at once",
       "the second stops with a one-line error naming the PID that holds the folder")
def test_second_run_into_the_same_out_is_refused(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    out = tmp_path / "run"
    with hold(out):  # what the first run holds while it trains
        result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir))
        one_line_error(result, f"{out} is in use by PID {os.getpid()}")
    assert not (out / "manifest.json").exists()
    # The lock file left behind does not make the folder "not a transcoders run".
    assert run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir)).exit_code == 0


@probe("evaluate", "a run whose training was interrupted mid-architecture",
       "a warning that the architecture did not complete; the manifest says `training` and its last saved step")
def test_half_trained_run_is_flagged(tmp_path, tiny_lm_dir, tiny_corpus_dir, monkeypatch):
    from transcoders.training import checkpoint

    out = tmp_path / "run"
    real_save = checkpoint.Trainer.save
    calls = []

    def interrupted_save(self):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C during the second checkpoint of `sae`
            raise KeyboardInterrupt
        real_save(self)

    monkeypatch.setattr(checkpoint.Trainer, "save", interrupted_save)
    result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir))
    assert result.exit_code == 1 and "Aborted" in result.output
    record = manifest(out)["architectures"]["sae"]
    assert (record["status"], record["step"], record["steps"]) == ("training", 1, 6)

    result = run_cli(["evaluate", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Warning: training of 'sae' did not complete" in result.output


@probe("train", "`--lr 1e38` (training diverges)",
       "one-line error naming the architecture and step, suggesting a lower `--lr`; `manifest.json` stays strict JSON")
def test_divergence_stops_training(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    out = tmp_path / "run"
    result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir, "--lr", "1e38"))
    one_line_error(result, "sae: training diverged at step 2 of 6", "Lower --lr")
    assert manifest(out)["architectures"]["sae"]["status"] == "training"


@probe("train", "the corrected command after a run that failed before saving anything",
       "accepted without `--overwrite` (nothing trained is lost)")
def test_failed_run_is_replaced_by_the_corrected_one(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    out = tmp_path / "run"
    failed = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir, "--lr", "1e38", "--save-every", "50"))
    one_line_error(failed, "diverged at step 2")
    assert (out / "manifest.json").exists()
    result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir))
    assert result.exit_code == 0, result.output
    assert manifest(out)["config"]["lr"] == 2e-4


@pytest.mark.parametrize("content", ["[]", "{not json", '{"architectures": []}'])
@probe("train", "`--out` holding a `manifest.json` that is not a run manifest (a list, not JSON)",
       "one-line error naming the file, which is left untouched, even with `--overwrite`")
def test_foreign_manifest_is_never_overwritten(tmp_path, tiny_lm_dir, tiny_corpus_dir, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(content)
    for extra in ((), ("--overwrite",), ("--resume",)):
        result = run_cli(train_args(out, tiny_lm_dir, tiny_corpus_dir, *extra))
        one_line_error(result, str(out / "manifest.json"), "move it away")
    assert (out / "manifest.json").read_text() == content


@probe("train", "a run folder shared between users (umask 022)",
       "checkpoint files readable by the group and others (safetensors alone writes 0600)")
def test_checkpoints_follow_the_umask(uninterrupted):
    for path in [uninterrupted / arch for arch in ARCHS] + list(uninterrupted.rglob("*")):
        mode = stat.S_IMODE(path.stat().st_mode)
        want = 0o777 if path.is_dir() else 0o666
        assert mode == want & ~current_umask(), path


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@probe("train", "`TRANSCODERS_CACHE` shared between users (umask 022)",
       "the converted embedded model is readable by the group and others (was 0700/0600)")
def test_model_cache_follows_the_umask(tmp_path):
    from conftest import tiny_llama, tiny_tokenizer

    from transcoders.data.model import store

    target = tmp_path / "cache" / "model"
    old = os.umask(0o022)
    try:
        store(tiny_llama(), tiny_tokenizer(), target)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    for file in target.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
