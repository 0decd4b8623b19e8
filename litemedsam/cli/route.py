import sys
from pathlib import Path

import click


@click.command()
@click.argument("cases", nargs=-1, type=click.Path(path_type=Path))
@click.option("--router", "router_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Router TOML file (default: the one shipped with litemedsam).")
@click.option("--modality", default=None, help="Treat every case as this modality.")
@click.option("--show", is_flag=True, help="Print the router file in use and exit.")
def route(cases, router_file, modality, show):
    """Print the model and strategy the router picks for each case (names are enough; a folder
    lists its .npz cases). Models that are not built are reported as skipped, as `infer` would."""
    from litemedsam.errors import shown
    from litemedsam.router import DEFAULT_CONFIG, Router, RouterError

    router = Router.load(router_file)  # a RouterError ends the command with exit 2 (cli.main)
    if show:
        click.echo((router_file or DEFAULT_CONFIG).read_text(), nl=False)
        return
    names = []
    for path in cases:
        names += sorted(p.name for p in path.glob("*.npz")) if path.is_dir() else [path.name]
    failed = False
    for name in names:
        try:
            click.echo(router.decide(name, modality=modality).describe())
        except RouterError as e:
            failed = True
            click.echo(f"ERROR {shown(name)}: {e}", err=True)
    sys.exit(1 if failed else 0)
