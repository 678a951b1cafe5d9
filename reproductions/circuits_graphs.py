"""The half of `python -m reproductions.circuits` that runs in `.venv-circuits`
(circuit-tracer 0.5.0, transformers 4): attribution graphs, circuit-tracer's
replacement and completeness scores, and the top-token agreement of the replacement
model with the real one, for each exported transcoder set.

    python -m reproductions.circuits_graphs SPEC.json

SPEC names the model folder, the exported sets, the prompts, the held-out tokens
and where to write; the result is SPEC's `out`/scores.json and the graph files
circuit-tracer's frontend serves (`graphs/<slug>.json`, `graphs/graph-metadata.json`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from circuit_tracer import ReplacementModel, attribute
from circuit_tracer.graph import compute_graph_scores, prune_graph
from circuit_tracer.utils.create_graph_files import create_graph_files
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from transcoders.atomic import write_json
from transcoders.export.target import load_transcoder_set


@torch.no_grad()
def replacement_logits(model, transcoders, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits with every MLP's output replaced by its transcoder's prediction from the
    MLP's input (the replacement model without error terms)."""
    def hook_for(layer: int):
        return lambda module, inputs, output: transcoders[layer](inputs[0])

    handles = [mlp.register_forward_hook(hook_for(i))
               for i, mlp in enumerate(m.mlp for m in model.model.layers)]
    try:
        return model(input_ids).logits
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def agreement(model, transcoders, input_ids: torch.Tensor) -> float:
    """Fraction of positions where the replacement model's top token is the model's."""
    real = model(input_ids).logits.argmax(-1)
    replaced = replacement_logits(model, transcoders, input_ids).argmax(-1)
    return float((real == replaced).float().mean())


def main(spec_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    out = Path(spec["out"])
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    hf_model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32).eval()
    heldout = load_file(spec["heldout"])["input_ids"]
    scores = {}
    for arch, folder in spec["sets"].items():
        transcoders = load_transcoder_set(folder)
        scores[arch] = {"heldout_top_token_agreement": agreement(hf_model, transcoders, heldout),
                        "prompts": {}}
        model = ReplacementModel.from_pretrained_and_transcoders(
            spec["model"], transcoders, backend="nnsight", device=torch.device("cpu"),
            dtype=torch.float32)
        for slug, prompt in spec["prompts"].items():
            ids = model.ensure_tokenized(prompt)
            start = time.perf_counter()
            graph = attribute(prompt, model, max_n_logits=spec["max_n_logits"],
                              batch_size=spec["batch_size"],
                              max_feature_nodes=spec["max_feature_nodes"])
            wall = time.perf_counter() - start
            replacement, completeness = compute_graph_scores(graph)
            node_mask, edge_mask, _ = prune_graph(graph, spec["node_threshold"], spec["edge_threshold"])
            real = hf_model(ids[None]).logits[0, -1]
            replaced = replacement_logits(hf_model, transcoders, ids[None])[0, -1]
            scores[arch]["prompts"][slug] = {
                "prompt": prompt,
                "replacement_score": replacement,
                "completeness_score": completeness,
                "model_top_token": tokenizer.decode(real.argmax()),
                "replacement_top_token": tokenizer.decode(replaced.argmax()),
                "top_token_agrees": bool(real.argmax() == replaced.argmax()),
                "prompt_top_token_agreement": agreement(hf_model, transcoders, ids[None]),
                "active_features": int(graph.active_features.shape[0]),
                "attributed_features": int(graph.selected_features.shape[0]),
                "pruned_nodes": int(node_mask.sum()),
                "pruned_edges": int(edge_mask.sum()),
                "attribution_s": wall,
            }
            create_graph_files(graph, slug=f"{arch}-{slug}", output_path=str(out / "graphs"),
                               scan=graph.scan, node_threshold=spec["node_threshold"],
                               edge_threshold=spec["edge_threshold"])
            print(f"{arch} {slug}: replacement {replacement:.3f}, completeness "
                  f"{completeness:.3f}, {wall:.0f} s", flush=True)
        del model
    write_json(out / "scores.json", scores)  # last: marks the stage finished


if __name__ == "__main__":
    main(*sys.argv[1:])
