"""Probes of `transcoders browse`: a run without autointerp results, and results that
belong to another run, each through the real command line."""

from __future__ import annotations

import json

from click.testing import CliRunner
from probe import probe

from tests.autointerp.tiny_autointerp import tiny_run
from transcoders.cli import main


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output
    return result.output


@probe("browse", "a run with no autointerp results", "one-line error naming the folder, `transcoders autointerp`, `--autointerp` and the run's other autointerp folders")
def test_browse_without_autointerp_results(tmp_path):
    out = one_line_error(["browse", str(tmp_path)])
    assert str(tmp_path / "autointerp") in out and "transcoders autointerp" in out and "--autointerp" in out
    # Results written elsewhere under the run (make run's autointerp-<hash>) are named.
    (tmp_path / "autointerp-1234").mkdir()
    (tmp_path / "autointerp-1234" / "summary.json").write_text("{}")
    assert "holds autointerp-1234" in one_line_error(["browse", str(tmp_path)])


@probe("browse", "`--autointerp` with another run's results", "one-line error naming the coder the run lacks")
def test_browse_results_of_another_run(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "summary.json").write_text(json.dumps({"config": {}, "groups": []}))
    (results / "latents.csv").write_text(
        "architecture,hookpoint,latent,frequency,firing_count,explanation\n"
        "sae,layers.1.mlp,3,0.1,10,x\n")
    tiny_run(tmp_path / "run", archs=("transcoder",), hookpoints=("layers.1.mlp",), num_latents=8)
    out = one_line_error(["browse", str(tmp_path / "run"), "--autointerp", str(results)])
    assert "sae/layers.1.mlp" in out and "no such coder" in out
