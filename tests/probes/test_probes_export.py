"""Probes of `transcoders export`."""

from __future__ import annotations

from click.testing import CliRunner
from probe import probe
from sparsify import SparseCoder

from transcoders.architectures import get
from transcoders.cli import main


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # Progress bars of model loading may precede it on stderr; the error is one line.
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert result.output.rstrip().endswith(errors[0]), result.output
    return errors[0]


def save(tmp_path, arch: str):
    coder = SparseCoder(16, get(arch).coder_config(k=2, num_latents=32))
    coder.save_to_disk(tmp_path / "run" / arch / "layers.0.mlp")
    return tmp_path / "run"


@probe("export", "`--to saelens` of a transcoder", "one-line error: SAELens has no top-k transcoder; use `--to circuit-tracer`")
def test_saelens_refuses_transcoders(tmp_path):
    run = save(tmp_path, "transcoder")
    line = one_line_error(CliRunner().invoke(main, ["export", str(run), "--to", "saelens", str(tmp_path / "out")]))
    assert "--to circuit-tracer" in line


@probe("export", "`--to circuit-tracer` of an SAE", "one-line error: circuit-tracer needs transcoders")
def test_circuit_tracer_refuses_saes(tmp_path):
    run = save(tmp_path, "sae")
    line = one_line_error(CliRunner().invoke(main, ["export", str(run), "--to", "circuit-tracer", str(tmp_path / "out")]))
    assert "needs transcoders" in line


@probe("export", "OUT that is not empty", "one-line error naming `--overwrite`; nothing is replaced")
def test_export_keeps_a_non_empty_out(tmp_path):
    run = save(tmp_path, "transcoder")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    line = one_line_error(CliRunner().invoke(main, ["export", str(run), "--to", "circuit-tracer", str(tmp_path / "out")]))
    assert "--overwrite" in line and (tmp_path / "out" / "mine.txt").read_text() == "keep"


@probe("export", "`--to circuit-tracer` of a coder on `layers.0.self_attn`", "one-line error: circuit-tracer's transcoders replace MLPs only")
def test_circuit_tracer_refuses_non_mlp_hookpoints(tmp_path):
    SparseCoder(16, get("transcoder").coder_config(k=2, num_latents=32)).save_to_disk(
        tmp_path / "run" / "transcoder" / "layers.0.self_attn")
    line = one_line_error(CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--to", "circuit-tracer", str(tmp_path / "out")]))
    assert "MLPs only" in line


@probe("export", "`--verify` without the second environment", "one-line error naming `make circuits-env`")
def test_verify_without_the_circuits_env(tmp_path, monkeypatch):
    run = save(tmp_path, "transcoder")
    monkeypatch.setenv("TRANSCODERS_CIRCUITS_PYTHON", str(tmp_path / "no-such-python"))
    result = CliRunner().invoke(main, ["export", str(run), "--to", "circuit-tracer", str(tmp_path / "out"),
                                       "--model", "embedded", "--verify"])
    assert "make circuits-env" in one_line_error(result)


@probe("export", "`--verify` with a `--model` the coders were not trained on", "one-line error naming `--model`")
def test_verify_with_the_wrong_model(tmp_path, tiny_lm_dir):
    run = save(tmp_path, "transcoder")  # width 16; the tiny Llama's MLPs are 32 wide
    result = CliRunner().invoke(main, ["export", str(run), "--to", "circuit-tracer", str(tmp_path / "out"),
                                       "--model", str(tiny_lm_dir), "--verify"])
    line = one_line_error(result)
    assert "--model" in line and "width 16" in line
