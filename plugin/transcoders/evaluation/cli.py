"""`transcoders evaluate RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import click

from ..training.config import DEFAULTS as TRAINING_DEFAULTS
from .evaluate import RESULTS_CSV, RESULTS_JSON, EvalConfig, evaluate, table

# The printed table leaves out the long columns; the CSV has them all.
PRINTED = [
    "architecture", "hookpoint", "fvu", "explained_variance", "ce_clean",
    "ce_spliced", "delta_ce", "kl", "ce_zero", "loss_recovered", "l0", "dead_fraction",
]  # fmt: skip


@click.command("evaluate")
@click.argument(
    "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option("--tokens", type=int, help="Held-out tokens to evaluate, at least --ctx-len "
              f"(default: the run's --eval-tokens, else {TRAINING_DEFAULTS.eval_tokens}).")
@click.option("--model", help="Subject model (default: the run's; required for a "
              "plain sparsify checkpoint directory).")
@click.option("--dataset", help="Corpus whose held-out split is used (default: the "
              f"run's, else {TRAINING_DEFAULTS.dataset}).")
@click.option("--eval-split", help="HF split expression for held-out rows of an HF "
              f"dataset (default: the run's, else {TRAINING_DEFAULTS.eval_split}).")
@click.option("--ctx-len", type=int,
              help="Tokens per sequence, 1 or more (default: the run's, else "
              f"{TRAINING_DEFAULTS.ctx_len}).")
@click.option("--batch-size", default=EvalConfig.batch_size, show_default=True,
              help="Sequences per forward pass: 1 or more.")
@click.option("--seed", type=int,
              help="Order of held-out rows, 0 or more (default: the run's seed).")
@click.option("--splice-all", is_flag=True,
              help="Also splice all hookpoints of each architecture at once.")
@click.option("--device", default=EvalConfig.device, show_default=True,
              help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--reads", type=click.Choice(["input", "output"]), default=None,
              help="What the coders of a plain sparsify directory read: input "
              "(transcoders) or output (SAEs). Default: cfg.json, measured where it "
              "does not say (sparsify's format before Feb 2025).")
def evaluate_command(run_dir: Path, **options) -> None:
    """How much of the model's behaviour each coder in RUN_DIR keeps.

    \b
    For every architecture and hookpoint, on held-out tokens:
      fvu, explained_variance  reconstruction of the module's output (pooled)
      ce_clean, ce_spliced     next-token loss, model as is / module output
                               replaced by the coder's prediction
      delta_ce                 ce_spliced - ce_clean
      kl                       KL(clean || spliced), mean per token
      ce_zero                  loss with the module's output zeroed
      loss_recovered           (ce_zero - ce_spliced) / (ce_zero - ce_clean)
      l0, dead_fraction        active latents per token; latents never active

    \b
    SAEs encode the module's output, transcoders its input. Writes
    RUN_DIR/evaluation.json (with firing-frequency histograms) and
    RUN_DIR/evaluation.csv. See docs/guides/evaluation.md.
    """
    report = evaluate(EvalConfig(run_dir=str(run_dir), **options))
    for arch in report["incomplete"]:
        click.echo(
            f"Warning: training of '{arch}' did not complete; its last saved "
            "checkpoint is evaluated.",
            err=True,
        )
    frame = table(report["results"])[PRINTED]
    text = frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    click.echo(text)
    click.echo(
        f"\n{report['tokens']} tokens of {report['config']['dataset']} on "
        f"{report['config']['model']}; wrote {run_dir / RESULTS_JSON} and "
        f"{run_dir / RESULTS_CSV}"
    )
