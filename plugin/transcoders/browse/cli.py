"""`transcoders browse`."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command("browse")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--autointerp", "autointerp_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="The autointerp output folder (its --out); default RUN_DIR/autointerp.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the site; default <autointerp folder>/browser.")
@click.option("--device", default="cpu", show_default=True,
              help="Device for the logit-effect product (loads the subject model).")
def browse_command(run_dir: Path, autointerp_dir: Path | None, out: Path | None, device: str) -> None:
    """Write a static latent browser (open its index.html from disk) for RUN_DIR's
    autointerp results: overview, sortable latent list, one page per latent.

    \b
    Examples:
      transcoders browse runs/demo
      transcoders browse runs/demo --autointerp runs/demo/autointerp-x --out /tmp/site
    """
    from .site import build_site

    start = time.perf_counter()
    site = build_site(run_dir, autointerp_dir, out, device=device)
    click.echo(f"Wrote {site / 'index.html'} in {time.perf_counter() - start:.1f}s")
