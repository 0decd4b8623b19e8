"""The litemedsam command line: one file per subcommand, one handler for every error a user can act on."""
import click

from litemedsam import __version__
from litemedsam.cli.fit_head import fit_head
from litemedsam.cli.infer import infer
from litemedsam.cli.models import models
from litemedsam.cli.route import route
from litemedsam.errors import LitemedsamError


class Commands(click.Group):
    """A LitemedsamError that reaches the command line is printed as ``ERROR: message`` (no traceback)
    and ends the command with its exit code (2: nothing could run)."""

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


main.add_command(infer)
main.add_command(models)
main.add_command(route)
main.add_command(fit_head)
