"""`transcoders train`."""

from __future__ import annotations

import click

from .config import DEFAULTS, TrainingConfig
from .normalize import SCALE_BATCHES
from .train import init_distributed, train


def _csv(_ctx, _param, value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("train")
@click.option("--arch", "architectures", default=",".join(DEFAULTS.architectures),
              show_default=True, callback=_csv,
              help="Comma-separated architectures (see `transcoders architectures`).")
@click.option("--hookpoints", default=",".join(DEFAULTS.hookpoints), show_default=True,
              callback=_csv,
              help="Comma-separated module names or globs, e.g. 'layers.*.mlp'.")
@click.option("--model", default=DEFAULTS.model, show_default=True,
              help="'embedded' (offline SmolLM2-135M-Instruct), a hub id or a local path.")
@click.option("--dataset", default=DEFAULTS.dataset, show_default=True,
              help="'embedded' (Shakespeare), a HF dataset id or a folder of .txt/.md files.")
@click.option("--dataset-split", default=DEFAULTS.dataset_split, show_default=True,
              help="HF split for training rows, e.g. 'train[:1%]'.")
@click.option("--eval-split", default=DEFAULTS.eval_split, show_default=True,
              help="HF split for the held-out FVU.")
@click.option("--k", default=DEFAULTS.k, show_default=True,
              help="Active latents per token: 1 or more, at most the number of latents.")
@click.option("--expansion-factor", default=DEFAULTS.expansion_factor, show_default=True,
              help="Latents per input dimension: 1 or more.")
@click.option("--num-latents", default=DEFAULTS.num_latents, show_default=True,
              help="Exact latent count, overriding --expansion-factor; 0 uses "
              "--expansion-factor.")
@click.option("--tokens", default=DEFAULTS.tokens, show_default=True,
              help="Training tokens per architecture: at least one batch "
              "(--ctx-len x --batch-size).")
@click.option("--eval-tokens", default=DEFAULTS.eval_tokens, show_default=True,
              help="Held-out tokens for the manifest's FVU: at least --ctx-len.")
@click.option("--ctx-len", default=DEFAULTS.ctx_len, show_default=True,
              help="Tokens per sequence: 1 or more.")
@click.option("--batch-size", default=DEFAULTS.batch_size, show_default=True,
              help="Sequences per optimizer step: 1 or more.")
@click.option("--lr", type=float, default=None,
              help="Learning rate, above 0 (default: sparsify's rule from the number "
              "of latents).")
@click.option("--normalize/--no-normalize", default=DEFAULTS.normalize, show_default=True,
              help="Train on input and target scaled to unit mean square per coordinate "
              f"(a power of two from the first {SCALE_BATCHES} batches), folded back into "
              "the saved weights: checkpoints stay plain sparsify checkpoints of raw activations.")
@click.option("--auxk-alpha", default=DEFAULTS.auxk_alpha, show_default=True,
              help="Weight of sparsify's AuxK loss on dead latents: 0 (off) or more.")
@click.option("--dead-tokens", default=DEFAULTS.dead_tokens, show_default=True,
              help="Tokens without firing after which AuxK treats a latent as dead: 1 or more.")
@click.option("--k-decay-steps", default=DEFAULTS.k_decay_steps, show_default=True,
              help="Steps over which k falls linearly from 10 x the input width to --k "
              "(sparsify's k schedule); 0 is off.")
@click.option("--seed", default=DEFAULTS.seed, show_default=True,
              help="Seeds the data order and every coder's initialisation: 0 or more.")
@click.option("--save-every", default=DEFAULTS.save_every, show_default=True,
              help="Checkpoint interval in steps: 1 or more.")
@click.option("--no-truncate", is_flag=True,
              help="Run the whole model while training (default: stop at the last hooked layer).")
@click.option("--device", default=DEFAULTS.device, show_default=True,
              help="auto (CUDA when available), cpu, cuda or cuda:N.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--overwrite", is_flag=True, help="Replace a different run in --out.")
def train_command(no_truncate: bool, resume: bool, overwrite: bool, **options) -> None:
    """Train sparse coders with sparsify's Trainer, all on the same tokens.

    \b
    Every architecture sees the same token stream (same rows, same order, same
    seed). The model runs only up to the last hooked layer, and when the
    activations fit in memory they are recorded once and replayed to every
    architecture instead of rerunning the model. Output keeps sparsify's layout, OUT/<arch>/<hookpoint>/{cfg.json,
    sae.safetensors}, plus OUT/manifest.json with the config, package versions,
    wall time and held-out FVU per architecture and hookpoint.

    \b
    Examples:
      transcoders train --out runs/demo
      transcoders train --arch transcoder --hookpoints 'layers.*.mlp' --k 64 --out runs/all
      torchrun --nproc-per-node 8 -m transcoders train --model EleutherAI/pythia-160m \\
          --dataset EleutherAI/SmolLM2-135M-10B --dataset-split 'train[:1%]' \\
          --eval-split 'train[99%:]' --out runs/p160
    """
    init_distributed()
    cfg = TrainingConfig(truncate=not no_truncate, **options)
    train(cfg, resume=resume, overwrite=overwrite)
