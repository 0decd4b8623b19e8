"""The litemedsam command line: one file per subcommand, imported only when that subcommand runs (a case pays
for nothing else), and one handler for every error a user can act on."""
import importlib

import click

from litemedsam import __version__
from litemedsam.core.errors import LitemedsamError

SUBCOMMANDS = {  # name -> module of litemedsam.cli holding a click command of that name
    "infer": "infer",
    "models": "models",
    "route": "route",
    "fit": "fit",
    "fit-head": "fit_head",
    "serve": "serve",
}


class Commands(click.Group):
    """Subcommands loaded when used. A LitemedsamError that reaches the command line is printed as
    ``ERROR: message`` (no traceback) and ends the command with its exit code (2: nothing could run)."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        if name not in SUBCOMMANDS:
            return None
        module = importlib.import_module(f"litemedsam.cli.{SUBCOMMANDS[name]}")
        return getattr(module, SUBCOMMANDS[name])

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LitemedsamError as e:
            click.echo(f"ERROR: {e}", err=True)
            ctx.exit(e.exit_code)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="litemedsam")
def main():
    """Fast CPU box-prompted segmentation of medical images with lightweight SAM models."""
