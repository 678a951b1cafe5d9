"""Bad input to `train` and `evaluate`: each is refused with one `Error:` line naming
the flag or file and what to do, and the Python API raises the same error.

Range checks live in the config dataclasses, so most of these fail before any
model is loaded; the corpus and permission probes run the tiny random model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from sparsify import SparseCoder, SparseCoderConfig

from transcoders.checkpoints import CheckpointError, find
from transcoders.cli import main
from transcoders.errors import file_system_error
from transcoders.evaluation import EvalConfig
from transcoders.run import Manifest
from transcoders.training import TrainingConfig
from transcoders.validation import ConfigError

from conftest import tiny_llama, tiny_tokenizer
from probe import probe, unprivileged

MLP = "layers.1.mlp"
# Small enough that a tiny-model run gets past every range check quickly.
TINY_TRAIN = ["--hookpoints", MLP, "--k", "4", "--expansion-factor", "2", "--tokens", "512",
              "--eval-tokens", "64", "--ctx-len", "32", "--batch-size", "4", "--device", "cpu"]  # fmt: skip


def cli(*args) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The command's one `Error:` line, after checking it failed as a user error."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a bug
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert result.output.rstrip().endswith(errors[0])
    return errors[0]


@pytest.fixture
def train_refuses(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    """The CLI's error for `args`, which the API's TrainingConfig(**api) must raise
    too. The API goes first, and the CLI runs on the tiny model, so that a check
    gone missing fails fast instead of training the embedded default."""

    def refuses(args: list, api: dict) -> str:
        out = tmp_path / "run"
        with pytest.raises(ConfigError) as err:
            TrainingConfig(out=str(out), **api)
        result = cli("train", "--out", out, "--model", tiny_lm_dir, "--dataset",
                     tiny_corpus_dir, *TINY_TRAIN, *args)  # fmt: skip
        line = error_line(result)
        assert line == f"Error: {err.value}"
        assert not out.exists()
        return line

    return refuses


def evaluate_refuses(tmp_path: Path, args: list, api: dict) -> str:
    """The CLI's error for `args`; the API's EvalConfig(**api) must raise the same."""
    with pytest.raises(ConfigError) as err:
        EvalConfig(run_dir=str(tmp_path), **api)
    line = error_line(cli("evaluate", tmp_path, *args))
    assert line == f"Error: {err.value}"
    return line


def save_coder(folder: Path, d_in: int = 32, **cfg) -> Path:
    """A real sparsify coder on disk, as wide as the tiny model's MLP output."""
    SparseCoder(d_in, SparseCoderConfig(**{"k": 4, "num_latents": 64, **cfg})).save_to_disk(folder)
    return folder


# --- train's options ------------------------------------------------------------


@probe("train", "`--k 0` or `--k -3`", "one-line error naming `--k`: must be a positive number")
@pytest.mark.parametrize("k", [0, -3])
def test_train_rejects_k_below_one(train_refuses, k):
    assert "--k must be a positive number" in train_refuses(["--k", k], dict(k=k))


@probe("train", "`--ctx-len 0`, `--batch-size 0` or negative, `--tokens 0`, `--eval-tokens 0`",
       "one-line error naming the flag: must be a positive number")  # fmt: skip
@pytest.mark.parametrize("field, value", [
    ("ctx_len", 0), ("batch_size", 0), ("batch_size", -2), ("tokens", 0), ("eval_tokens", -1),
])  # fmt: skip
def test_train_rejects_sizes_below_one(train_refuses, field, value):
    flag = "--" + field.replace("_", "-")
    line = train_refuses([flag, value], {field: value})
    assert f"{flag} must be a positive number" in line


@probe("train", "`--lr -1`, `--lr 0`, `--lr nan`",
       "one-line error naming `--lr`: must be a positive number")
@pytest.mark.parametrize("lr", ["-1", "0", "nan", "inf"])
def test_train_rejects_a_learning_rate_that_is_not_positive(train_refuses, lr):
    line = train_refuses(["--lr", lr], dict(lr=float(lr)))
    assert "--lr must be a positive number" in line


@probe("train", "`--save-every 0`", "one-line error naming `--save-every`")
def test_train_rejects_save_every_zero(train_refuses):
    assert "--save-every" in train_refuses(["--save-every", 0], dict(save_every=0))


@probe("train", "`--seed -1`", "one-line error naming `--seed`: must be zero or more")
def test_train_rejects_negative_seed(train_refuses):
    assert "--seed must be zero or more" in train_refuses(["--seed", -1], dict(seed=-1))


@probe("train", "`--auxk-alpha -0.1` or `nan`, `--dead-tokens 0`, `--k-decay-steps -1`",
       "one-line error naming the flag")
@pytest.mark.parametrize("field, value, rule", [
    ("auxk_alpha", -0.1, "must be zero or more"),
    ("auxk_alpha", float("nan"), "must be zero or more"),
    ("dead_tokens", 0, "must be a positive number"),
    ("k_decay_steps", -1, "must be zero or more"),
])  # fmt: skip
def test_train_rejects_bad_dead_latent_options(train_refuses, field, value, rule):
    flag = "--" + field.replace("_", "-")
    assert f"{flag} {rule}" in train_refuses([flag, value], {field: value})


@probe("train", "`--expansion-factor 0` or negative, `--num-latents -1`",
       "one-line error naming the flag")
@pytest.mark.parametrize("field, value, rule", [
    ("expansion_factor", 0, "must be a positive number"),
    ("expansion_factor", -4, "must be a positive number"),
    ("num_latents", -1, "must be zero or more"),
])  # fmt: skip
def test_train_rejects_a_width_below_one(train_refuses, field, value, rule):
    flag = "--" + field.replace("_", "-")
    assert f"{flag} {rule}" in train_refuses([flag, value], {field: value})


@probe("train", "`--num-latents 4 --k 8`",
       "one-line error before loading the model: lower `--k` or raise `--num-latents`")
def test_train_rejects_k_above_num_latents(train_refuses):
    line = train_refuses(["--num-latents", 4, "--k", 8], dict(num_latents=4, k=8))
    assert "--k 8 is more than --num-latents 4" in line


@probe("train", "`--k 65` where `--expansion-factor` gives 64 latents",
       "one-line error naming `--k`, `--expansion-factor` and `--num-latents`")
def test_train_rejects_k_above_the_latents_of_the_model(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    result = cli("train", "--out", tmp_path / "run", "--model", tiny_lm_dir,
                 "--dataset", tiny_corpus_dir, *TINY_TRAIN, "--k", 65)  # fmt: skip
    line = error_line(result)
    assert "--k 65 is larger than the number of latents (64)" in line
    assert "--expansion-factor" in line


@probe("train", "`--device bogus`", "one-line error naming `--device` and the valid choices")
def test_train_rejects_an_unknown_device(train_refuses):
    line = train_refuses(["--device", "bogus"], dict(device="bogus"))
    assert "--device 'bogus' is not a device: use auto, cpu, cuda or cuda:N" in line


@probe("train", "`--device cuda` without CUDA, `--device cuda:N` past the last card, `--device mps` without MPS",
       "one-line error naming `--device` before anything loads")
def test_train_rejects_a_cuda_device_this_machine_lacks(train_refuses):
    missing = f"cuda:{torch.cuda.device_count()}"
    line = train_refuses(["--device", missing], dict(device=missing))
    assert line.startswith(f"Error: --device {missing}: this machine has")
    if not torch.cuda.is_available():
        line = train_refuses(["--device", "cuda"], dict(device="cuda"))
        assert "no CUDA device; use cpu" in line
    if not torch.backends.mps.is_available():
        line = train_refuses(["--device", "mps"], dict(device="mps"))
        assert "no MPS device; use cpu" in line


@probe("train", "`--arch ,` or `--hookpoints ,`",
       "one-line error: the flag names nothing")
@pytest.mark.parametrize("flag, field", [("--arch", "architectures"), ("--hookpoints", "hookpoints")])
def test_train_rejects_an_empty_list(train_refuses, flag, field):
    line = train_refuses([flag, ","], {field: []})
    assert f"{flag} names nothing" in line


@probe("train", "`--arch sae,sae`", "one-line error: `--arch` names sae more than once")
def test_train_rejects_an_architecture_named_twice(train_refuses):
    archs = ["sae", "transcoder", "sae"]
    line = train_refuses(["--arch", ",".join(archs)], dict(architectures=archs))
    assert line == "Error: --arch names sae more than once"


def test_api_rejects_blank_names():
    with pytest.raises(ConfigError, match="--hookpoints has an empty name"):
        TrainingConfig(out="run", hookpoints=["layers.1.mlp", " "])


# --- evaluate's options ---------------------------------------------------------


@probe("evaluate", "`--tokens 0`, `--ctx-len 0` (or negative)",
       "one-line error naming the flag; zero does not mean the manifest's value")
@pytest.mark.parametrize("field, value", [("tokens", 0), ("tokens", -64), ("ctx_len", 0)])
def test_evaluate_rejects_zero_instead_of_using_the_manifest(tmp_path, field, value):
    flag = "--" + field.replace("_", "-")
    line = evaluate_refuses(tmp_path, [flag, value], {field: value})
    assert f"{flag} must be a positive number" in line


@probe("evaluate", "`--model ''`, `--dataset ' '`, `--eval-split ''`",
       "one-line error naming the flag; empty does not mean the run's value")
@pytest.mark.parametrize("field, value", [("model", ""), ("dataset", " "), ("eval_split", "")])
def test_evaluate_rejects_an_empty_name(tmp_path, field, value):
    flag = "--" + field.replace("_", "-")
    line = evaluate_refuses(tmp_path, [flag, value], {field: value})
    assert f"{flag} is empty" in line


def test_unset_fields_come_from_the_manifest():
    manifest = Manifest(config={"model": "m", "ctx_len": 64, "eval_tokens": 640, "seed": 3})
    resolved = EvalConfig(run_dir="run", device="cpu").resolve(manifest)
    assert (resolved.ctx_len, resolved.tokens, resolved.seed) == (64, 640, 3)
    resolved = EvalConfig(run_dir="run", tokens=128, ctx_len=16, device="cpu").resolve(manifest)
    assert (resolved.ctx_len, resolved.tokens) == (16, 128)


@probe("evaluate", "`--batch-size 0` or negative", "one-line error naming `--batch-size`")
@pytest.mark.parametrize("value", [0, -1])
def test_evaluate_rejects_batch_size_below_one(tmp_path, value):
    line = evaluate_refuses(tmp_path, ["--batch-size", value], dict(batch_size=value))
    assert "--batch-size must be a positive number" in line


@probe("evaluate", "`--seed -1`", "one-line error naming `--seed`")
def test_evaluate_rejects_negative_seed(tmp_path):
    assert "--seed must be zero or more" in evaluate_refuses(tmp_path, ["--seed", -1], dict(seed=-1))


@probe("evaluate", "`--device bogus`, `--device cuda` without CUDA",
       "one-line error naming `--device`")
def test_evaluate_rejects_a_device_this_machine_lacks(tmp_path):
    assert "is not a device" in evaluate_refuses(tmp_path, ["--device", "bogus"], dict(device="bogus"))
    missing = f"cuda:{torch.cuda.device_count()}"
    line = evaluate_refuses(tmp_path, ["--device", missing], dict(device=missing))
    assert f"--device {missing}: this machine has" in line


@probe("evaluate", "`--tokens 100` with 256-token sequences",
       "one-line error: ask for at least `--ctx-len` tokens, or lower `--ctx-len`")
def test_evaluate_tokens_below_one_sequence(tmp_path, tiny_lm_dir, tiny_corpus_dir):
    save_coder(tmp_path / "run" / "sae" / MLP)
    result = cli("evaluate", tmp_path / "run", "--model", tiny_lm_dir, "--dataset",
                 tiny_corpus_dir, "--tokens", 100, "--ctx-len", 256, "--device", "cpu")  # fmt: skip
    line = error_line(result)
    assert line.startswith("Error: 100 tokens is less than one 256-token row: ask for at least --ctx-len")


# --- reading corpora and checkpoints -------------------------------------------


@probe("train", "a binary or non-UTF-8 `.txt` file in the `--dataset` folder",
       "one-line error naming the file: convert it to UTF-8 or move it out")
@pytest.mark.parametrize("content", [b"caf\xe9 \xff\xfe", b"\x00\x01\x02" * 50])
def test_train_names_a_file_that_is_not_text(tmp_path, tiny_lm_dir, tiny_corpus_dir, content):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus_dir, corpus)
    (corpus / "doc03.txt").write_bytes(content)
    result = cli("train", "--out", tmp_path / "run", "--model", tiny_lm_dir,
                 "--dataset", corpus, *TINY_TRAIN)  # fmt: skip
    line = error_line(result)
    assert f"{corpus / 'doc03.txt'} " in line
    assert "move it out of the corpus folder" in line


@probe("train", "`--dataset` a single text file",
       "one-line error: nothing can be held out, pass a folder of several files as `--dataset`")
def test_train_single_file_corpus_names_an_option_that_exists(tmp_path, tiny_lm_dir):
    text = tmp_path / "one.txt"
    text.write_text("Shall I compare thee to a summer's day?\n" * 200)
    result = cli("train", "--out", tmp_path / "run", "--model", tiny_lm_dir,
                 "--dataset", text, *TINY_TRAIN)  # fmt: skip
    line = error_line(result)
    assert f"{text} is a single file" in line
    assert "pass as --dataset a folder of several .txt/.md files" in line


@probe("evaluate", "`--dataset` a single text file",
       "one-line error: nothing can be held out, pass a folder of several files as `--dataset`")
def test_evaluate_single_file_corpus(tmp_path, tiny_lm_dir):
    save_coder(tmp_path / "run" / "sae" / MLP)
    text = tmp_path / "one.txt"
    text.write_text("words " * 500)
    result = cli("evaluate", tmp_path / "run", "--model", tiny_lm_dir, "--dataset", text,
                 "--device", "cpu")  # fmt: skip
    assert "pass as --dataset a folder of several .txt/.md files" in error_line(result)


@probe("evaluate", "a `cfg.json` without `k` (or without `num_latents` and `expansion_factor`)",
       "one-line error naming the file; sparsify's default k=32 is not assumed")
@pytest.mark.parametrize("drop, named", [
    (["k"], "'k'"),
    (["num_latents", "expansion_factor"], "'num_latents' or 'expansion_factor'"),
])  # fmt: skip
def test_evaluate_names_a_cfg_json_sparsify_would_fill_with_defaults(tmp_path, drop, named):
    coder = save_coder(tmp_path / "sae" / MLP)
    cfg_file = coder / "cfg.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if k not in drop}))
    line = error_line(cli("evaluate", tmp_path, "--model", "unused", "--device", "cpu"))
    assert line == (
        f"Error: {cfg_file} lacks {named}, which sparsify would fill in with its "
        "defaults: restore the cfg.json saved with these weights"
    )
    with pytest.raises(CheckpointError, match="lacks"):
        find(tmp_path)


def test_a_width_from_the_expansion_factor_alone_is_complete(tmp_path):
    coder = save_coder(tmp_path / MLP, num_latents=0, expansion_factor=2)
    cfg = json.loads((coder / "cfg.json").read_text())
    del cfg["num_latents"]
    (coder / "cfg.json").write_text(json.dumps(cfg))
    assert find(tmp_path)[0].load().num_latents == 64


# --- outputs that cannot be written ---------------------------------------------


@probe("train", "`--out` inside a read-only directory",
       "one-line error naming the path: permission denied, choose a location you can write to")
def test_train_into_a_read_only_directory(shared_dir, tiny_corpus_dir):
    model = shared_dir / "model"
    tiny_llama().save_pretrained(model)
    tiny_tokenizer().save_pretrained(model)
    corpus = shutil.copytree(tiny_corpus_dir, shared_dir / "corpus")
    for path in [model, corpus, *model.iterdir(), *corpus.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    with unprivileged():
        result = cli("train", "--out", locked / "run", "--model", model,
                     "--dataset", corpus, *TINY_TRAIN, "--arch", "sae")  # fmt: skip
    line = error_line(result)
    assert line.startswith(f"Error: {locked / 'run'}")
    assert "permission denied: choose a location you can write to" in line


def test_file_system_errors_the_user_can_fix_become_one_line():
    denied = file_system_error(PermissionError(13, "Permission denied", "/runs/x"))
    assert str(denied) == (
        "/runs/x: permission denied: choose a location you can write to, or fix its permissions"
    )
    full = file_system_error(OSError(28, "No space left on device"))
    assert str(full) == "no space left on the device: free some space, or write elsewhere"
    assert "read-only file system" in str(file_system_error(OSError(30, "Read-only", "/ro")))
    # Anything else is a bug and keeps its traceback.
    assert file_system_error(FileNotFoundError(2, "No such file", "/x")) is None


@probe("evaluate", "a read-only run directory",
       "one-line error naming the directory, before the model runs")
def test_evaluate_refuses_a_read_only_run_before_the_model_runs(shared_dir):
    run = shared_dir / "run"
    coder = save_coder(run / "sae" / MLP)
    for path in (run / "sae", coder, *coder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    run.chmod(0o555)
    with unprivileged():
        # The model is never loaded: this name would fail if it were.
        result = cli("evaluate", run, "--model", "no/such-model", "--device", "cpu")
    line = error_line(result)
    assert line.startswith(f"Error: {run} is not writable")
    assert "evaluation.json" in line
