"""`transcoders autointerp`."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .. import formatting
from ..run import autointerp_dir
from .config import SCORERS, TOP_TOKENS, AutointerpConfig
from .summary import control_warnings, interval

_DEFAULTS = AutointerpConfig()


def _csv(_ctx, _param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("autointerp")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--explainer", default=_DEFAULTS.explainer, show_default=True,
              help=f"'{TOP_TOKENS}' (model-free baseline) or a client spec: local:embedded, "
              "local:<hub id or path>, http://host:port/v1@<model>, openai:<model>, "
              "openrouter:<model>, vllm:<model>.")
@click.option("--prompt", type=click.Choice(["auto", "compact", "default"]),
              default=_DEFAULTS.prompt, show_default=True,
              help="Explainer prompt: Delphi's default, or a compact one for small models "
              "(auto: compact for local: clients).")
@click.option("--scorers", default=",".join(_DEFAULTS.scorers), show_default=True,
              callback=_csv, help=f"Comma-separated, from {', '.join(SCORERS)}.")
@click.option("--scorer-model", default=None,
              help="Client spec of the detection/fuzzing judge (default: the explainer's "
              "client, or local:embedded with top-tokens).")
@click.option("--latents", default=_DEFAULTS.latents, show_default=True,
              help="Latents per architecture and hookpoint (seeded sample of live latents). "
                   "30 could not resolve the SAE's real-vs-shuffled margin offline and "
                   "100 did; with an LLM explainer each latent costs several LLM calls.")
@click.option("--seed", default=_DEFAULTS.seed, show_default=True)
@click.option("--arch", "architectures", default=None, callback=_csv,
              help="Comma-separated architectures (default: all in the run).")
@click.option("--hookpoints", default=None, callback=_csv,
              help="Comma-separated hookpoints (default: all in the run).")
@click.option("--out", default=None, help="Output folder (default: RUN_DIR/autointerp).")
@click.option("--model", default=None, help="Subject model (default: the run's).")
@click.option("--dataset", default=None, help="Text to cache on (default: the run's).")
@click.option("--split", default=_DEFAULTS.split, show_default=True,
              help="train/eval for embedded or local text (eval is held out), or a HF split.")
@click.option("--tokens", "n_tokens", default=_DEFAULTS.n_tokens, show_default=True,
              help="Tokens to cache latents on.")
@click.option("--ctx-len", default=_DEFAULTS.ctx_len, show_default=True)
@click.option("--example-ctx-len", default=_DEFAULTS.example_ctx_len, show_default=True,
              help="Tokens per example shown to explainer and scorers.")
@click.option("--min-examples", default=_DEFAULTS.min_examples, show_default=True,
              help="Activating examples a latent needs beyond the explainer's to be sampled.")
@click.option("--train-examples", "n_examples_train", default=_DEFAULTS.n_examples_train,
              show_default=True, help="Activating examples shown to the explainer.")
@click.option("--test-examples", "n_examples_test", default=_DEFAULTS.n_examples_test,
              show_default=True, help="Activating examples per scorer.")
@click.option("--non-activating", "n_non_activating", default=_DEFAULTS.n_non_activating,
              show_default=True, help="Non-activating examples per scorer.")
@click.option("--n-quantiles", default=_DEFAULTS.n_quantiles, show_default=True,
              help="Activation quantiles the test examples are drawn from.")
@click.option("--examples-per-prompt", default=_DEFAULTS.examples_per_prompt, show_default=True,
              help="Examples per detection/fuzzing prompt.")
@click.option("--batch-size", default=_DEFAULTS.batch_size, show_default=True,
              help="Sequences per forward pass while caching.")
@click.option("--n-splits", default=_DEFAULTS.n_splits, show_default=True,
              help="Cache files per hookpoint.")
@click.option("--n-boot", default=_DEFAULTS.n_boot, show_default=True,
              help="Bootstrap resamples per confidence interval.")
@click.option("--log-probs", is_flag=True,
              help="Ask the judge for token log-probs (gives detection/fuzzing an AUROC).")
@click.option("--concurrency", default=_DEFAULTS.concurrency, show_default=True,
              help="Latents in flight at once.")
@click.option("--timeout", default=_DEFAULTS.timeout, show_default=True,
              help="Seconds an HTTP endpoint may take per request attempt.")
@click.option("--retries", default=_DEFAULTS.retries, show_default=True,
              help="Retries of a failed HTTP request. A dead endpoint stops the run after "
              "(retries + 1) x timeout plus backoff: 63 s by default.")
@click.option("--max-unparsed", default=_DEFAULTS.max_unparsed, show_default=True,
              help="Fraction of a hookpoint's explanations that may be unusable before the "
              "run stops; unusable ones are asked again on the next run.")
@click.option("--device", default=_DEFAULTS.device, show_default=True,
              help="cpu, cuda, cuda:N or auto.")
@click.option("--reads", type=click.Choice(["input", "output"]), default=None,
              help="What the coders of a plain sparsify directory read: input "
              "(transcoders) or output (SAEs). Default: cfg.json, measured where it "
              "does not say (sparsify's format before Feb 2025).")
def autointerp_command(run_dir: Path, **options) -> None:
    """Explain and score latents of every coder in RUN_DIR with Delphi.

    \b
    Caches latents once for all architectures (SAEs read the module output,
    transcoders its input), explains a seeded sample of live latents per
    architecture and hookpoint, scores each explanation and a shuffled control
    (the same latent with another latent's explanation), and writes per-latent
    results as each finishes, in Delphi's layout under OUT/<arch>/. A rerun
    skips finished latents. OUT/summary.json has means with bootstrap 95% CIs.

    \b
    Examples:
      transcoders autointerp runs/demo                    # offline default
      transcoders autointerp runs/demo --explainer local:embedded
      transcoders autointerp runs/demo --scorers detection,fuzzing \\
          --explainer http://127.0.0.1:8000/v1@Qwen/Qwen2.5-7B-Instruct
    """
    cfg = AutointerpConfig(**options)  # bad values fail before Delphi is imported
    from .pipeline import run_autointerp

    # Warnings (a damaged file redone, an HTTP retry) as one line each on stderr.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("Warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("transcoders.autointerp")
    logger.addHandler(handler)
    try:
        summary = run_autointerp(run_dir, cfg)
    finally:
        logger.removeHandler(handler)
    out = options["out"] or autointerp_dir(run_dir)
    for g in summary["groups"]:
        m = g["headline"]
        click.echo(
            f"{g['architecture']:<16} {g['hookpoint']:<14} {g['scorer']:<10} {m} "
            f"{_fmt(g, m, 'real')}  shuffled {_fmt(g, m, 'shuffled')}  real − shuffled "
            f"{_fmt(g, m, 'real_minus_shuffled')}  (n={g['latents']})"
        )
    for c in summary.get("latent_counts", []):
        click.echo(
            f"{c['architecture']}/{c['hookpoint']}: {c['dead_fraction']:.1%} dead over "
            f"{c['cache_tokens']:,} cached tokens; {c['eligible']} of {c['live']} live "
            "latents eligible"
        )
    for c in summary["comparisons"]:
        click.echo(
            f"{c['a']} − {c['b']} {c['hookpoint']} {c['scorer']} {c['metric']}: "
            f"{_fmt(c, c['metric'], 'a_minus_b')}, frequency-matched "
            f"{_fmt(c, c['metric'], 'matched_a_minus_b')} "
            "(unpaired bootstrap over latents)"
        )
    for warning in control_warnings(summary):
        click.echo(f"Warning: {warning} Interpret more latents (--latents) or use another explainer.")
    for f in summary["failed_explanations"]:
        if f["failed_parse"]:
            click.echo(
                f"{f['architecture']}/{f['hookpoint']}: {f['failed_parse']} of "
                f"{f['explained']} explanations could not be parsed (not scored; the next "
                "run asks again)"
            )
    click.echo(f"Per-latent results and summary in {out}")


def _fmt(row: dict, metric: str, kind: str) -> str:
    return formatting.interval(*interval(row, metric, kind) or (None, None, None))
