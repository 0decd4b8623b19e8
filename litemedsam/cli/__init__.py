"""The litemedsam command line: one file per subcommand."""
import click

from litemedsam import __version__
from litemedsam.cli.fit_head import fit_head
from litemedsam.cli.infer import infer
from litemedsam.cli.models import models
from litemedsam.cli.route import route


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="litemedsam")
def main():
    """Fast CPU box-prompted segmentation of medical images with lightweight SAM models."""


main.add_command(infer)
main.add_command(models)
main.add_command(route)
main.add_command(fit_head)
