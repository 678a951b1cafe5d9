"""`transcoders export RUN --to circuit-tracer|saelens OUT`."""

from __future__ import annotations

from pathlib import Path

import click

from .api import FORMATS, TOLERANCE, circuits_python, export, verify
from .source import ExportError


@click.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "to", type=click.Choice(FORMATS), required=True,
              help="Target library format.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--architecture", "architectures", multiple=True,
              help="Export only this architecture (repeatable; default: every one the "
              "target represents exactly).")
@click.option("--model", help="Subject model to record (default: the run's; needed for "
              "--verify on a plain sparsify directory).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT.")
@click.option("--verify", "check", is_flag=True,
              help="Run the export in the target library (needs `make circuits-env`) on "
              "held-out activations and fail unless it matches the plugin's coders.")
def export_command(run: Path, to: str, out: Path, architectures: tuple[str, ...],
                   model: str | None, overwrite: bool, check: bool) -> None:
    """Write the coders in RUN as circuit-tracer or SAELens files in OUT.

    \b
    RUN is a `transcoders train` run, a plain sparsify checkpoint directory or a
    `--pretrained` import. circuit-tracer takes transcoders and skip transcoders
    of `layers.N.mlp` (one transcoder set per architecture); SAELens takes SAEs
    (its transcoders cannot be top-k). OUT/README.md and OUT/export.json name the
    source run, model and hookpoints. See docs/guides/circuits.md.
    """
    if check:
        circuits_python()  # before writing anything
    record = export(run, to, out, architectures=list(architectures) or None,
                    model=model, overwrite=overwrite)
    errors = verify(out) if check else None
    for arch, info in record["exported"].items():
        click.echo(f"{arch}: {len(info['coders'])} coder(s) -> {out / arch}")
    for arch, reason in record["skipped"].items():
        click.echo(f"{arch}: not exported ({reason})")
    if errors is not None:
        worst = max(max(e.values()) for e in errors.values())
        if worst > TOLERANCE:
            raise ExportError(f"{to} does not reproduce the coders of {run} "
                              f"(relative error {worst:.2e} > {TOLERANCE})")
        click.echo(f"{to} reproduces every coder to {worst:.2e} relative error")
