"""`python -m reproductions.table1 --preset NAME --check`: resolve and size a preset
without training, so a GPU run cannot fail on a typo an hour in.

It resolves the model's config and tokenizer (weights are never loaded: the model is
built on the meta device), expands the hookpoints and checks every architecture fits
them, resolves the dataset's training and held-out splits and counts their rows from
metadata, estimates their tokens (rows × mean tokens of the first documents) against
the token budgets, parses the explainer and judge specs, and estimates the disk the
latent cache and checkpoints take and the GPU memory training needs. The first thing
that cannot work stops it with a one-line `UserError`.

What depends on the machine (CUDA, vllm, free disk and GPU memory) is checked where
CUDA is visible, the machine the run is meant for; elsewhere it is reported as a note.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import torch

from transcoders import architectures
from transcoders.autointerp.clients import HOSTED, SPEC_HELP
from transcoders.autointerp.delphi_compat import vllm_available
from transcoders.data import EMBEDDED, load_corpus
from transcoders.data.corpus import hf_split_spans, is_hf
from transcoders.errors import UserError
from transcoders.hookpoints import check_applicable, module_widths, resolve_hookpoints

from .presets import PRETRAINED, Preset

SAMPLE_DOCS = 64
"""Documents of a HF split whose mean token count sizes the split."""

CACHE_BYTES_PER_LATENT = 3 * 4 + 2
"""A cached nonzero activation: (batch, position, latent) as uint32 and a float16."""


class PresetCheckError(UserError):
    """A preset that cannot run as configured."""


def check(preset: Preset, work: Path, *, pretrained: bool = False) -> list[str]:
    """Lines describing what `preset` resolves to; raises `PresetCheckError` (one
    line) for the first thing that cannot work."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(_model_source(preset))
        tokenizer = load_tokenizer(preset)
    except (OSError, ValueError) as err:
        raise PresetCheckError(f"model '{preset.model}' cannot be resolved: {_first_line(err)}") from err
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    lines = [f"model: {preset.model} ({config.model_type}, {config.num_hidden_layers} layers, "
             f"width {config.hidden_size}, {params / 1e6:.0f}M parameters)"]

    hookpoints = resolve_hookpoints(model, list(preset.hookpoints))
    widths = module_widths(model, hookpoints)
    d_in = next(iter(widths.values()))[0]
    latents = preset.num_latents or d_in * preset.expansion_factor
    for arch in preset.architectures:
        check_applicable(architectures.get(arch), widths, latents, preset.k)
    lines.append(f"hookpoints: {len(hookpoints)} ({hookpoints[0]} … {hookpoints[-1]}), "
                 f"widths {sorted(set(widths.values()))}")
    lines.append(f"coders: {', '.join(preset.architectures)}; {latents:,} latents "
                 f"({latents / d_in:g}x), k={preset.k}")
    if pretrained:
        if preset.name not in PRETRAINED:
            raise PresetCheckError(
                f"--pretrained has released checkpoints for: {', '.join(PRETRAINED)}; "
                f"not for preset '{preset.name}'"
            )
        lines.append("released checkpoints: " + ", ".join(PRETRAINED[preset.name].values()))
    lines += budgets(preset, tokenizer, pretrained)
    lines += _clients(preset)
    lines.append(f"autointerp: {preset.latents} latents per coder, {preset.example_ctx_len}-token "
                 f"examples, {preset.n_examples_train} to explain, {preset.n_examples_test} "
                 f"activating and {preset.n_non_activating} non-activating per scorer "
                 f"({', '.join(preset.scorers)})")
    lines += _resources(preset, work, params, d_in, latents, len(hookpoints))
    return lines


def _model_source(preset: Preset) -> str:
    from transcoders.data.model import embedded_model_dir

    return str(embedded_model_dir()) if preset.model == EMBEDDED else preset.model


def load_tokenizer(preset: Preset):
    """The preset model's tokenizer, without its weights."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_model_source(preset))


def budgets(preset: Preset, tokenizer, pretrained: bool = False) -> list[str]:
    """The training and held-out splits, their sizes, and the budgets they must hold."""
    flags = f"--eval-tokens {preset.eval_tokens:,}"
    eval_need = preset.eval_tokens
    if preset.latents:  # autointerp caches on the held-out rows too
        flags += f" and --autointerp-tokens {preset.autointerp_tokens:,}"
        eval_need = max(eval_need, preset.autointerp_tokens)
    needs = [("held-out", preset.eval_split, "eval", eval_need, flags)]
    if not pretrained:
        needs.insert(0, ("training", preset.dataset_split, "train", preset.train_tokens,
                         f"--train-tokens {preset.train_tokens:,}"))
    lines, ranges = [], {}
    for role, expression, kind, need, flags in needs:
        if is_hf(preset.dataset):
            base, spans = hf_split_spans(preset.dataset, expression)
            rows = sum(b - a for a, b in spans)
            tokens = rows * _mean_doc_tokens(preset.dataset, base, tokenizer)
            where = f"{preset.dataset} {expression}: {rows:,} rows, ~{tokens:,.0f} tokens"
            ranges[role] = (base, spans)
        else:
            texts = list(load_corpus(preset.dataset, kind)["text"])
            # As sparsify's chunking counts: documents joined by an end-of-text token,
            # cut into whole ctx_len rows.
            total = sum(len(ids) + 1 for ids in tokenizer(texts)["input_ids"])
            tokens = total // preset.ctx_len * preset.ctx_len
            where = f"{preset.dataset} ({kind} documents): {tokens:,} tokens"
        if tokens < need:
            raise PresetCheckError(
                f"{role} split {where}, fewer than {flags} need: lower the budget or "
                "choose a larger split"
            )
        lines.append(f"{role}: {where}, enough for {flags}")
    if len(ranges) == 2 and ranges["training"][0] == ranges["held-out"][0]:
        overlap = any(a < d and c < b for (a, b), (c, d)
                      in itertools.product(ranges["training"][1], ranges["held-out"][1]))
        if overlap:
            raise PresetCheckError(
                f"held-out rows {preset.eval_split} overlap the training rows "
                f"{preset.dataset_split} of {preset.dataset}: choose disjoint ranges"
            )
    return lines


def _mean_doc_tokens(dataset: str, split: str, tokenizer) -> float:
    from datasets import load_dataset

    try:
        docs = list(load_dataset(dataset, split=split, streaming=True).take(SAMPLE_DOCS))
    except (OSError, ConnectionError):  # offline: what the datasets cache holds
        docs = load_dataset(dataset, split=f"{split}[:{SAMPLE_DOCS}]")
    # +1: sparsify's chunking joins documents with an end-of-text token.
    counts = [len(tokenizer(d["text"])["input_ids"]) + 1 for d in docs]
    if not counts:
        raise PresetCheckError(f"split '{split}' of {dataset} is empty")
    return sum(counts) / len(counts)


def _clients(preset: Preset) -> list[str]:
    """Explainer and judge specs, parsed without connecting to anything."""
    judge = preset.scorer_model or preset.explainer
    llm_scorers = [s for s in preset.scorers if s in ("detection", "fuzzing")]
    lines = []
    for role, spec in (("explainer", preset.explainer), ("judge", judge if llm_scorers else None)):
        if spec is None or (spec == "top-tokens" and role == "explainer"):
            lines.append(f"{role}: {spec or 'none (no LLM-judged scorer)'}")
            continue
        scheme, _, rest = spec.partition(":")
        if scheme not in ("local", "http", "https", "vllm", *HOSTED) or not rest:
            raise PresetCheckError(f"{role} spec {spec!r} is not a client spec. {SPEC_HELP}")
        if scheme in ("http", "https") and "@" not in spec:
            raise PresetCheckError(f"{role} spec {spec!r} must end in @<model>")
        if scheme in HOSTED and not os.environ.get(HOSTED[scheme][1]):
            raise PresetCheckError(
                f"{role} {spec} needs an API key in the environment variable {HOSTED[scheme][1]}"
            )
        lines.append(f"{role}: {spec}")
    if llm_scorers and judge == "top-tokens":
        raise PresetCheckError(
            f"scorers {', '.join(llm_scorers)} need an LLM judge: set --scorer-model "
            "or an LLM --explainer"
        )
    return lines


def _resources(preset: Preset, work: Path, params: int, d_in: int, latents: int,
               n_hookpoints: int) -> list[str]:
    """Disk and GPU memory estimates, checked against this machine where it has CUDA."""
    n_coders = len(preset.architectures) * n_hookpoints
    cache = preset.autointerp_tokens * preset.k * CACHE_BYTES_PER_LATENT * n_coders
    coder_params = 2 * latents * d_in + latents + d_in + d_in * d_in  # the skip term at most
    checkpoints = 4 * coder_params * n_coders
    # Model in bf16; per hookpoint a coder's fp32 weights, gradients and two Adam moments;
    # one batch of its inputs and outputs in fp32.
    gpu = 2 * params + n_hookpoints * (16 * coder_params
                                       + 2 * 4 * preset.batch_size * preset.ctx_len * d_in)
    lines = [f"disk: latent cache ~{cache / 1e9:.1f} GB, checkpoints ~{checkpoints / 1e9:.1f} GB",
             f"GPU memory for training one architecture: ~{gpu / 2**30:.1f} GiB"]
    uses_vllm = any(s.startswith("vllm:") for s in (preset.explainer, preset.scorer_model or ""))
    problems = []
    if uses_vllm and not vllm_available():
        problems.append("the vllm: client needs vllm (pip install 'transcoders[gpu]')")
    probe = next(p for p in [work, *work.resolve().parents] if p.exists())
    free = shutil.disk_usage(probe).free
    if cache + checkpoints > free:
        problems.append(f"{probe} has {free / 1e9:.1f} GB free")
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        if gpu > total:
            problems.append(f"the GPU has {total / 2**30:.1f} GiB")
        if problems:
            raise PresetCheckError("this machine cannot run the preset: " + "; ".join(problems))
    else:
        problems.append("no CUDA device here")
        lines.append("not checked on this machine (run --check where the preset will run): "
                     + "; ".join(problems))
    return lines


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
