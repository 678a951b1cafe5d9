"""`python -m reproductions.circuits` end to end on the tiny Llama: training on every
MLP, export, circuit-tracer's attribution in the second environment, graph files,
scores and the picture."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess

import pytest

from reproductions import circuits, presets
from transcoders.export.api import CircuitsEnvMissing, circuits_python

try:
    circuits_python()
    NO_ENV = None
except CircuitsEnvMissing as err:
    NO_ENV = str(err)


@pytest.mark.skipif(NO_ENV is not None, reason=f"{NO_ENV}")
def test_circuits_on_the_tiny_model(tiny_lm_dir, tiny_corpus_dir, tmp_path):
    preset = dataclasses.replace(
        presets.get("embedded-all-layers"), model=str(tiny_lm_dir), dataset=str(tiny_corpus_dir),
        k=4, expansion_factor=2, train_tokens=8 * 64 * 2, eval_tokens=128, device="cpu",
    )
    prompts = {"sonnet": "Shall I compare", "may": "darling buds of"}
    results = circuits.run(preset, tmp_path / "out", tmp_path / "work", prompts)
    assert results["export_max_relative_error"] < 1e-4
    for arch in ("transcoder", "skip-transcoder"):
        scores = results["scores"][arch]
        assert 0 <= scores["heldout_top_token_agreement"] <= 1
        for slug, p in scores["prompts"].items():
            assert 0 <= p["replacement_score"] <= 1 and 0 <= p["completeness_score"] <= 1
            graph = json.loads((tmp_path / "out" / "graphs" / f"{arch}-{slug}.json").read_text())
            assert graph["metadata"]["prompt"].endswith(prompts[slug]) and graph["nodes"]
    listed = json.loads((tmp_path / "out" / "graphs" / "graph-metadata.json").read_text())
    assert len(listed["graphs"]) == 4
    assert (tmp_path / "out" / "circuits.png").stat().st_size > 10_000
    assert "skip-transcoder" in (tmp_path / "out" / "circuits.md").read_text()

    # circuit-tracer's own server hands its frontend the graph and the graph list.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (
        "import sys, urllib.request\n"
        "from circuit_tracer.frontend.local_server import serve\n"
        "server = serve(sys.argv[1], port=int(sys.argv[2]))\n"
        "for path in ('graph_data/graph-metadata.json', 'graph_data/transcoder-sonnet.json', 'index.html'):\n"
        "    with urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[2]}/{path}') as r:\n"
        "        print(path, r.status, len(r.read()))\n"
        "server.stop()\n"
    )
    done = subprocess.run([str(circuits_python()), "-c", script, str(tmp_path / "out" / "graphs"), str(port)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()] == ["200"] * 3
