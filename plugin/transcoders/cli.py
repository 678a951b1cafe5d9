"""The `transcoders` command line: one subcommand per room of the package."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import click

from . import architectures
from .autointerp.cli import autointerp_command
from .autointerp.delphi_compat import DelphiMissingError
from .browse.cli import browse_command
from .errors import UserError, file_system_error
from .evaluation.cli import evaluate_command
from .export.cli import export_command
from .training.cli import train_command


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Print errors the user can fix (bad input, permissions, a full disk) as click's
    one-line `Error:`; bugs keep their traceback. Every command line uses it."""
    try:
        yield
    except (UserError, DelphiMissingError) as err:
        raise click.ClickException(str(err)) from err
    except OSError as err:
        user_error = file_system_error(err)
        if user_error is None:
            raise
        raise click.ClickException(str(user_error)) from err


class _Group(click.Group):
    """Runs every subcommand under `one_line_errors`."""

    def invoke(self, ctx: click.Context):
        with one_line_errors():
            return super().invoke(ctx)


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
main.add_command(browse_command)
