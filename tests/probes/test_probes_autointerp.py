"""Probes of `transcoders autointerp`: bad options, a hanging or babbling endpoint,
damaged files in the output folder, two runs at once, and kills, each on a tiny
random model through the real command line (or a real subprocess for kills)."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from kill_at import killed
from probe import probe

from tests.autointerp.local_server import Server, Silent, completion
from tests.autointerp.tiny_autointerp import cli_args, tiny_options, tiny_world

pytest.importorskip("delphi")

from transcoders import runlock  # noqa: E402
from transcoders.autointerp import cache, explanations, pipeline, scores, state  # noqa: E402
from transcoders.autointerp.config import AutointerpConfig  # noqa: E402
from transcoders.autointerp.settings import check_same_settings  # noqa: E402
from transcoders.cli import main  # noqa: E402
from transcoders.errors import UserError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("autointerp-probes")
    return root, tiny_world(root)


@pytest.fixture(scope="module")
def reference(world):
    """An uninterrupted offline run (top-tokens, embedding): its options, output
    folder and results."""
    root, run = world
    options = tiny_options(root, root / "reference")
    pipeline.run_autointerp(run, AutointerpConfig(**options))
    return options, root / "reference", results(root / "reference")


def results(out: Path) -> dict:
    """What a run produced: every explanation, score and pairing file's bytes, and
    the summary without its config (which names the output folder)."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for pattern in ("*/explanations/*.txt", "*/scores/*/*.txt", "*/shuffled_donors.json")
        for p in out.glob(pattern)
    }
    summary = json.loads((out / "summary.json").read_text())
    del summary["config"]
    return {"files": files, "summary": summary}


def autointerp(run: Path, options: dict, *extra: str):
    return CliRunner().invoke(main, ["autointerp", str(run), *cli_args(options), *extra])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], result.output


def copy_of(reference, tmp_path: Path) -> tuple[dict, Path]:
    options, out, _ = reference
    shutil.copytree(out, tmp_path / "out")
    return {**options, "out": str(tmp_path / "out")}, tmp_path / "out"


# --- options ---------------------------------------------------------------------


@probe("autointerp", "`--concurrency 0`, `--concurrency -1`, `--latents -1`, `--example-ctx-len 0`, "
       "`--timeout 0`, `--retries -1`, `--max-unparsed 1.5`, `--ctx-len 60`",
       "one-line error naming the flag, before anything is loaded")
@pytest.mark.parametrize("flag,value", [
    ("--concurrency", "0"), ("--concurrency", "-1"), ("--latents", "-1"),
    ("--example-ctx-len", "0"), ("--tokens", "0"), ("--n-boot", "0"), ("--timeout", "0"),
    ("--retries", "-1"), ("--max-unparsed", "1.5"), ("--ctx-len", "60"), ("--scorers", ","),
])
def test_bad_numbers_are_one_line_errors(tmp_path, flag, value):
    result = CliRunner().invoke(main, ["autointerp", str(tmp_path), flag, value])
    assert_one_line_error(result, flag)
    assert not (tmp_path / "autointerp").exists()


@probe("autointerp", "`--test-examples 25` (10 quantiles); `--scorers detection --non-activating 22` "
       "(5 examples per prompt)",
       "one-line error naming the flags, before anything is loaded: every latent gets the "
       "same test examples from each quantile and every judge prompt is full")
@pytest.mark.parametrize("args,named", [
    (["--test-examples", "25"], "--n-quantiles"),
    (["--scorers", "detection", "--non-activating", "22"], "--examples-per-prompt"),
])
def test_uneven_test_examples_are_one_line_errors(tmp_path, args, named):
    result = CliRunner().invoke(main, ["autointerp", str(tmp_path), *args])
    assert_one_line_error(result, named)
    assert not (tmp_path / "autointerp").exists()


@probe("autointerp", "`--latents 0` on a finished output folder",
       "one-line error naming `--latents`; the previous `summary.json` is untouched")
def test_latents_zero_keeps_the_summary(world, reference, tmp_path):
    options, out = copy_of(reference, tmp_path)
    before = (out / "summary.json").read_bytes()
    assert_one_line_error(autointerp(world[1], {**options, "latents": 0}), "--latents")
    assert (out / "summary.json").read_bytes() == before


# --- endpoints -------------------------------------------------------------------


@probe("autointerp", "an HTTP explainer or judge that accepts the connection and never answers",
       "`Error: … Gave up on … after N attempts; last error: no answer within T s` after "
       "(retries + 1) × `--timeout` + backoff: 63 s with the defaults")
@pytest.mark.parametrize("role", ["explainer", "judge"])
def test_a_silent_endpoint_fails_within_its_timeouts(world, tmp_path, role):
    silent = Silent()
    endpoint = {"explainer": f"{silent.url}@m"} if role == "explainer" else {
        "scorers": ["detection"], "scorer_model": f"{silent.url}@m"}
    try:
        options = tiny_options(world[0], tmp_path / "out", architectures=["sae"],
                               timeout=0.5, retries=1, **endpoint)
        start = time.monotonic()
        result = autointerp(world[1], options)
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert_one_line_error(result, "Gave up on", "after 2 attempts", "no answer within 0.5 s",
                          "--timeout", "rerun the same command")
    # 2 × 0.5 s + 1 s backoff, plus caching the tiny model; far below 6 × 120 s.
    assert 2.0 <= elapsed < 30
    # One request per latent in flight (--concurrency 8), each retried once: a judge
    # does not go on to a latent's next prompt once its endpoint has given up.
    assert 1 <= len(silent.accepted) <= 2 * 8


@probe("autointerp", "an explainer whose answers hold no explanation (garbage, or a list)",
       "unusable answers are never saved: past `--max-unparsed` (0.5) the run stops with "
       "`N of M explanations could not be parsed`; below it they are counted in the summary; "
       "a rerun asks again for exactly those")
def test_unusable_explanations_are_asked_again(world, tmp_path):
    server = Server()
    good, bad = completion("[EXPLANATION]: the token w7"), completion("I cannot tell.")
    options = tiny_options(world[0], tmp_path / "out", architectures=["sae"], explainer=f"{server.url}@m")
    explanations = tmp_path / "out" / "sae" / "explanations"
    try:
        server.script = [completion(["[EXPLANATION]: in a list"]), bad]  # then bad for the rest
        assert_one_line_error(autointerp(world[1], options), "6 of 6 explanations could not be parsed",
                              "--max-unparsed")
        assert not list(explanations.glob("*.txt"))

        server.script, server.requests = [bad, good], []  # the first answer fails, the rest parse
        result = autointerp(world[1], options)
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 6
        assert "1 of 6 explanations could not be parsed" in result.output
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["failed_explanations"][0]["failed_parse"] == 1
        assert summary["groups"][0]["latents"] == 5
        assert len(list(explanations.glob("*.txt"))) == 5

        server.script, server.requests = [good], []
        result = autointerp(world[1], options)
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 1  # only the unparsed latent
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["failed_explanations"][0]["failed_parse"] == 0
        assert summary["groups"][0]["latents"] == 6
    finally:
        server.close()


# --- damaged files ---------------------------------------------------------------


def _first(out: Path, pattern: str) -> Path:
    return sorted(out.glob(pattern))[0]


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:-100])


def _score_of_another(out: Path, arch: str, scorer: str) -> Path:
    """A score file that does not use the explanation `_first` damages: redoing that
    explanation rightly redoes the scores made with it, without a warning."""
    first = _first(out, f"{arch}/explanations/*.txt").stem
    donors = json.loads((out / arch / "shuffled_donors.json").read_text())
    latent = next(k for k in sorted(donors) if first not in (k, donors[k]))
    return out / arch / "scores" / scorer / f"{latent}.txt"


# (file, damage) pairs; each set is applied at once and redone in one rerun. The
# cache is separate because redoing it redoes everything made from it.
DAMAGE = {
    "results": [
        (lambda out: _first(out, "sae/explanations/*.txt"), lambda f: f.write_text("{not json")),
        (lambda out: _score_of_another(out, "sae", "embedding"), lambda f: f.write_bytes(b"\x00\xff")),
        (lambda out: out / "sae" / "shuffled_donors.json", lambda f: f.write_text("{")),
        (lambda out: _first(out, "transcoder/explanations/*.txt"), lambda f: f.write_text('["a", "list"]')),
        (lambda out: _score_of_another(out, "transcoder", "embedding_shuffled"),
         lambda f: f.write_text('{"an": "object"}')),
    ],
    "cache": [
        (lambda out: out / "sae" / "latents" / "layers.1.mlp" / "config.json", lambda f: f.write_text("nope")),
        (lambda out: _first(out, "transcoder/latents/*/*.safetensors"), _truncate),
    ],
}


@probe("autointerp", "an explanation, score, `shuffled_donors.json` or cache `config.json` that is "
       "not valid JSON or of the wrong type; a truncated cache `.safetensors`",
       "one `Warning:` line naming the file; it is recomputed and the results equal an "
       "undamaged run's")
@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_derived_files_are_reported_and_redone(world, reference, tmp_path, damage):
    options, out = copy_of(reference, tmp_path)
    damaged = []
    for choose, harm in DAMAGE[damage]:
        file = choose(out)
        harm(file)
        damaged.append(file)
    result = autointerp(world[1], options)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warned = [line for line in result.output.splitlines() if line.startswith(f"Warning: {out}")]
    assert sorted(line.split()[1] for line in warned) == sorted(map(str, damaged)), result.output
    assert results(out) == reference[2]


@probe("autointerp", "an autointerp `settings.json` that is not valid JSON (or not an object)",
       "one-line error naming the file: delete the output folder or pass another `--out` "
       "(results cannot be matched to their settings)")
@pytest.mark.parametrize("content", ["{", "[]"])
def test_damaged_settings_are_an_error(world, reference, tmp_path, content):
    options, out = copy_of(reference, tmp_path)
    (out / "settings.json").write_text(content)
    assert_one_line_error(autointerp(world[1], options), f"{out / 'settings.json'} is damaged",
                          f"delete {out}", "--out")
    assert results(out)["files"] == reference[2]["files"]  # nothing deleted or redone


@probe("autointerp", "two `transcoders autointerp` writing the same `--out` at once",
       "the second gets `Error: … is in use by PID …`")
def test_second_writer_is_refused(world, reference, tmp_path):
    options, out = copy_of(reference, tmp_path)
    with runlock.hold(out):
        assert_one_line_error(autointerp(world[1], options), f"in use by PID {os.getpid()}")


# --- kills -----------------------------------------------------------------------


def killed_run(world, options: dict, function: str, n: int) -> None:
    module, _, attr = function.rpartition(".")
    killed(f"{module}:{attr}", n, "transcoders", ["autointerp", str(world[1]), *cli_args(options)],
           env={"OMP_NUM_THREADS": "1"})


@probe("autointerp", "`kill -9` while caching latents, then the same command",
       "the rerun recaches and finishes with results identical to an uninterrupted run")
def test_kill_mid_cache_then_rerun(world, reference, tmp_path):
    options = {**reference[0], "out": str(tmp_path / "out")}
    # The 4th of 10 cache files (5 splits × 2 architectures) is never written.
    killed_run(world, options, "transcoders.autointerp.cache._stream_safetensors", 4)
    assert len(list((tmp_path / "out").glob("*/latents/*/*.safetensors"))) == 3
    assert not list((tmp_path / "out").glob("*/latents/*/config.json"))
    result = autointerp(world[1], options)
    assert result.exit_code == 0, result.output
    assert results(tmp_path / "out") == reference[2]


@probe("autointerp", "`kill -9` while scoring, then the same command",
       "the rerun scores only what is missing and finishes with results identical to an "
       "uninterrupted run")
def test_kill_mid_scoring_then_rerun(world, reference, tmp_path):
    options = {**reference[0], "out": str(tmp_path / "out")}
    # Killed right after the 5th score file is written (before its metrics).
    killed_run(world, options, "transcoders.autointerp.scores.latent_metrics", 5)
    assert len(list((tmp_path / "out").glob("*/scores/*/*.txt"))) == 5
    assert not (tmp_path / "out" / "summary.json").exists()
    result = autointerp(world[1], options)
    assert result.exit_code == 0, result.output
    assert results(tmp_path / "out") == reference[2]


# --- fuzz ------------------------------------------------------------------------


def random_json(rng: random.Random, depth: int = 0):
    kinds = ["null", "bool", "int", "float", "str"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == "dict":
        keys = ["activating", "prediction", "probability", "distance", "similarity", "x"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return {"null": None, "bool": rng.random() < 0.5, "int": rng.randrange(-5, 5),
            "float": rng.uniform(-2, 2), "str": rng.choice(["", "yes", "The tokens"])}[kind]


def mutations(rng: random.Random, valid: bytes, n: int):
    """Random bytes, truncations and byte flips of `valid`, and random JSON values."""
    for i in range(n):
        kind = i % 4
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif kind == 1:
            yield valid[: rng.randrange(len(valid))]
        elif kind == 2:
            at = rng.randrange(len(valid))
            yield valid[:at] + bytes([rng.randrange(256)]) + valid[at + 1:]
        else:
            value = random_json(rng)
            if rng.random() < 0.5:  # a score list whose entries have every field, some off
                fields = ("activating", "prediction", "probability", "distance", "similarity")
                value = [{k: random_json(rng, 3) for k in fields} for _ in range(3)]
            yield json.dumps(value).encode()


@probe("autointerp", "fuzzed autointerp state files: random bytes, truncation, byte flips, "
       "JSON of the wrong type, in `settings.json`, explanations, scores, donors, cache "
       "`config.json` and `.safetensors`",
       "a warning and a recompute, or (`settings.json`) a one-line error; never a traceback")
def test_state_readers_never_crash(reference, tmp_path):
    rng = random.Random(0)
    _, out, _ = reference
    cfg = AutointerpConfig(**reference[0])
    model, dataset = cfg.model, cfg.dataset
    target = tmp_path / "file"
    split = _first(out, "sae/latents/*/*.safetensors").read_bytes()
    for name, valid, check in [
        ("score", _first(out, "sae/scores/embedding/*.txt").read_bytes(),
         lambda: scores.read_score(target, "embedding")),
        ("detection score", json.dumps([{"activating": True, "prediction": None, "probability": 0.5}]).encode(),
         lambda: scores.read_score(target, "detection")),
        ("explanation", _first(out, "sae/explanations/*.txt").read_bytes(),
         lambda: str(explanations.usable(state.read_json(target, str, "redo")))),
        ("donors or cache config", (out / "sae" / "shuffled_donors.json").read_bytes(),
         lambda: state.read_json(target, dict, "redo")),
    ]:
        for data in mutations(rng, valid, 200):
            target.write_bytes(data)
            assert check() is None or isinstance(check(), (dict, str)), name
    settings = tmp_path / "settings"
    settings.mkdir()
    for data in mutations(rng, (out / "settings.json").read_bytes(), 200):
        (settings / "settings.json").write_bytes(data)
        try:
            check_same_settings(settings, cfg, model, dataset)
        except UserError:
            pass
    target = tmp_path / "0_6.safetensors"
    for data in mutations(rng, split[:2000], 100):
        target.write_bytes(data + split[2000:] if rng.random() < 0.5 else data)
        assert cache.split_problem(target) is None or isinstance(cache.split_problem(target), str)
