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
    """Print the model and strategy the router picks for each case, as `infer` decides it: a case that exists is
    read (any format; a folder lists its cases as `infer` does), so its dimension and modality are those `infer`
    finds (a NIfTI volume in Hounsfield units is CT); a name alone is decided by what it says (2DBox_CT_...).
    Models that are not built are reported as skipped."""
    from litemedsam.io import formats
    from litemedsam.core.errors import LitemedsamError, shown
    from litemedsam.run.folders import list_cases
    from litemedsam.io.given_boxes import CaseInputs
    from litemedsam.methods.prompting import choose_model
    from litemedsam.methods.router import DEFAULT_CONFIG, Router

    router = Router.load(router_file)  # a RouterError ends the command with exit 2 (cli.main)
    if show:
        click.echo((router_file or DEFAULT_CONFIG).read_text(), nl=False)
        return
    paths = []
    for path in cases:
        paths += list_cases(path)[0] if path.is_dir() else [path]
    inputs = CaseInputs(modality=router.modality(modality) if modality else None)
    failed = False
    for path in paths:
        try:
            if path.exists() or path.is_symlink():
                case = formats.read(path, inputs, require_boxes=False)
                decision = router.decide(path.name, dim=case.dim, modality=modality or case.modality)
            else:
                decision = router.decide(path.name, modality=modality)
            choice = choose_model(decision.models)
            click.echo(decision.describe(choice.model, choice.skipped))
        except LitemedsamError as e:  # an unreadable case (infer fails it too), or no router rule for it
            failed = True
            click.echo(f"ERROR {shown(path.name)}: {e}", err=True)
    sys.exit(1 if failed else 0)
