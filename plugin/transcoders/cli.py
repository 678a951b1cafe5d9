"""The `transcoders` command line: one subcommand per room of the package."""

from __future__ import annotations

import click

from . import architectures
from .autointerp.cli import autointerp_command
from .autointerp.delphi_compat import DelphiMissingError
from .errors import UserError
from .evaluation.cli import evaluate_command
from .export.cli import export_command
from .training.cli import train_command


class _Group(click.Group):
    """Prints user errors as one line; bugs keep their traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (UserError, DelphiMissingError) as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="transcoders")
def main() -> None:
    """Train, evaluate and autointerp SAEs, transcoders and skip transcoders.

    \b
    Typical session, all offline on the embedded default (SmolLM2-135M-Instruct
    on Shakespeare):
      transcoders architectures
      transcoders train --out runs/demo
      transcoders evaluate runs/demo
      transcoders autointerp runs/demo
    """


@main.command("architectures")
def list_architectures() -> None:
    """List every registered architecture, plugins included."""
    for arch in architectures.available().values():
        click.echo(f"{arch.name:<18} reads module {arch.reads:<6}  {arch.description}")


main.add_command(train_command)
main.add_command(evaluate_command)
main.add_command(autointerp_command)
main.add_command(export_command)
