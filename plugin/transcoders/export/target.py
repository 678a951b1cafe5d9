"""The half of the export that runs where circuit-tracer and SAELens are installed
(`.venv-circuits`, built by `make circuits-env`): it imports them, torch and
safetensors, never sparsify or the rest of this plugin.

`load_transcoder_set` and `load_layer` load a circuit-tracer export with
circuit-tracer's own file loader and give each transcoder sparsify's activation,
ReLU followed by circuit-tracer's `TopK` (circuit-tracer 0.5.0's loader would build
a plain ReLU). Run as a module it computes, for `api.verify`, each exported coder's
output and latents on given inputs with the target library:

    python -m transcoders.export.target circuit-tracer|saelens EXPORT inputs.st outputs.st
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file


def _config(folder: Path) -> dict:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    if config.get("activation_function") != "relu_topk":
        raise ValueError(f"{folder}/config.yaml is not a `transcoders export` set")
    return config


def load_layer(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
               lazy_decoder: bool = False):
    """One exported `layer_{i}.safetensors` as a circuit-tracer SingleLayerTranscoder."""
    from circuit_tracer.transcoder.activation_functions import TopK
    from circuit_tracer.transcoder.single_layer_transcoder import load_relu_transcoder

    path = Path(path)
    config = _config(path.parent)
    layer = int(re.fullmatch(r"layer_(\d+)\.safetensors", path.name).group(1))
    transcoder = load_relu_transcoder(
        str(path), layer, device=torch.device(device), dtype=dtype,
        lazy_encoder=False, lazy_decoder=lazy_decoder,
    )
    transcoder.activation_function = torch.nn.Sequential(torch.nn.ReLU(), TopK(config["k"]))
    return transcoder


def load_transcoder_set(folder: str | Path, device: str = "cpu",
                        dtype: torch.dtype = torch.float32, lazy_decoder: bool = False):
    """An exported folder as a circuit-tracer TranscoderSet (every layer from 0 up)."""
    from circuit_tracer.transcoder import TranscoderSet

    folder = Path(folder)
    config = _config(folder)
    layers = [load_layer(folder / f, device, dtype, lazy_decoder) for f in config["transcoders"]]
    return TranscoderSet(
        {t.layer_idx: t for t in layers},
        feature_input_hook=config["feature_input_hook"],
        feature_output_hook=config["feature_output_hook"],
        scan=config["scan"],
    )


@torch.no_grad()
def _run_circuit_tracer(export: Path, coders: dict, inputs: dict) -> dict:
    outputs = {}
    for key, file in coders.items():
        transcoder, x = load_layer(export / file), inputs[key]
        outputs[f"{key}/latents"] = transcoder.encode(x)
        outputs[f"{key}/output"] = transcoder(x)
        # The sparse path circuit-tracer's attribution takes (no position zeroed).
        sparse, _ = transcoder.encode_sparse(x, zero_positions=slice(0, 0))
        outputs[f"{key}/output_sparse"] = transcoder.decode_sparse(sparse, x)[0]
    return outputs


@torch.no_grad()
def _run_saelens(export: Path, coders: dict, inputs: dict) -> dict:
    from sae_lens import SAE

    outputs = {}
    for key, folder in coders.items():
        sae, x = SAE.load_from_disk(str(export / folder)), inputs[key]
        latents = sae.encode(x)
        outputs[f"{key}/latents"] = latents
        outputs[f"{key}/output"] = sae.decode(latents)
    return outputs


def main(target: str, export: str, inputs: str, outputs: str) -> None:
    export_dir = Path(export)
    record = json.loads((export_dir / "export.json").read_text())
    coders = {k: v for info in record["exported"].values() for k, v in info["coders"].items()}
    run = _run_circuit_tracer if target == "circuit-tracer" else _run_saelens
    result = run(export_dir, coders, load_file(inputs))
    save_file({k: v.contiguous() for k, v in result.items()}, outputs)


if __name__ == "__main__":
    main(*sys.argv[1:])
