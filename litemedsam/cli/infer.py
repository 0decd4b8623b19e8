import os
import sys
from pathlib import Path

import click

from litemedsam.cli.options import case_inputs, load_router
from litemedsam.core.errors import LitemedsamError, Terminated, UsageError, needs_extra, shown, terminate_on_sigterm
from litemedsam.models.registry import MODELS


def prompt_mode(prompt, head, reference, reference_mask, model, threads):
    """The box-free mode asked for (self-prompting, one-shot or prompt-free), or None for box prompts."""
    if prompt == "none":
        from litemedsam.methods.promptless import Promptless

        free = sorted(name for name, spec in MODELS.items() if not spec.takes_boxes)
        if model is None or MODELS[model].takes_boxes:
            raise UsageError(f"--prompt none needs --model with a prompt-free model: {', '.join(free)}")
        return Promptless(model)
    if head is not None:
        from litemedsam.core.errors import ModelError
        from litemedsam.methods.selfprompt import SelfPrompt
        from litemedsam.models.session import make_session

        if not head.is_file():
            raise UsageError(f"--head {shown(head)}: not a regular file")
        try:
            return SelfPrompt(make_session(head, threads))
        except ModelError as e:  # ONNX Runtime's own message says what is wrong with the file
            raise UsageError(f"--head {e}: not a usable head") from None
    if reference is not None:
        from litemedsam.methods.oneshot import OneShot, load_reference
        from litemedsam.models.segmenter import make_segmenter

        oneshot = OneShot(*load_reference(reference, reference_mask), model=model or "litemedsam")
        oneshot.prepare(make_segmenter(oneshot.model, threads=threads), reference)  # once, before any case
        return oneshot
    return None


def terminal_bar(name: str, done: int, total: int) -> None:
    """A one-line bar on the terminal for the slices of a long case; the line is cleared when the case ends."""
    width = 30
    filled = width * done // max(total, 1)
    line = f"{name[:56]} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} slices"
    sys.stderr.write("\r" + (line if done < total else " " * len(line) + "\r"))
    sys.stderr.flush()


def cluster_executor(scheduler: str, threads):
    try:
        from litemedsam.run.cluster import executor
    except ImportError as e:
        raise UsageError(needs_extra("--scheduler", "cluster", e)) from None
    return executor(scheduler, threads)


@click.command()
@click.option("-i", "--input", "input_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of cases (or one case file): challenge .npz, NIfTI .nii/.nii.gz, 2D .png/.jpg/.tif/.bmp.")
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the segmentations (same file names) and efficiency.csv.")
@click.option("--router", "router_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Router TOML file (default: the one shipped, see `litemedsam route --show`).")
@click.option("--modality", default=None,
              help="Treat every case as this modality (a spelling of the router's [modalities]) instead of "
                   "reading it from the file name.")
@click.option("--model", default=None, type=click.Choice(sorted(MODELS)),
              help="Use this model for every case instead of the router's choice (no fallback).")
@click.option("--prompt", type=click.Choice(["box", "self", "none"]), default="box", show_default=True,
              help="box: the cases' boxes prompt the model; self: a head from `litemedsam fit-head` finds the "
                   "object and prompts the model itself (2D cases; boxes ignored); none: a prompt-free --model "
                   "(samed: a label map of its classes; promise: its auto-prompted mask), 2D and 3D slice by slice.")
@click.option("--head", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The self-prompting head (.onnx) for --prompt self.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="One-shot mode: a 2D case whose mask (its 'gts', or --reference-mask, or ../gts/NAME) shows the "
                   "object to find in every image (boxes ignored).")
@click.option("--reference-mask", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The .npz holding 'gts' for --reference.")
@click.option("--box", "box_texts", multiple=True, metavar="X0,Y0[,Z0],X1,Y1[,Z1]",
              help="A box for every case whose file carries none (NIfTI, PNG, ...), in voxel/pixel indices, inclusive; "
                   "repeatable (label k = k-th box).")
@click.option("--boxes", "boxes_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON or CSV table of boxes (x0,y0[,z0],x1,y1[,z1], optional file column) for such cases.")
@click.option("--boxes-from-labels", "labels_path", type=click.Path(path_type=Path), default=None,
              help="A label image (or a folder of label images named as the cases) of the same geometry: the tight "
                   "box of each label value prompts; label k of the output = value k.")
@click.option("--line", "line_texts", multiple=True, metavar="X0,Y0,X1,Y1,Z",
              help="A RECIST line (a lesion's longest diameter, drawn on slice Z from X0,Y0 to X1,Y1, voxel indices) "
                   "for every volume whose file carries none: its lesion in 3D; repeatable (label k = k-th line).")
@click.option("--recist", "recist_path", type=click.Path(path_type=Path), default=None,
              help="A label image of RECIST lines (or a folder of them named as the cases) of the same geometry: "
                   "lesion k's line drawn with value k on one slice; label k of the output = lesion k.")
@click.option("--window", default=None, metavar="LEVEL,WIDTH",
              help="Intensity window for non-uint8 inputs (default for CT: 40,400; other modalities: the 0.5-99.5 "
                   "percentiles of the non-zero voxels).")
@click.option("--overlay", "overlay_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write a PNG per case into this folder: the image with each label's contour and box (3D: "
                   "a montage of each object's middle slice).")
@click.option("--measurements", is_flag=True,
              help="Also write each output's objects' measurements beside it (<output>.measurements.csv: mL, "
                   "intensities, the RECIST long and short diameters in mm), as the app's Save does.")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes, each with its own model sessions and --threads ONNX Runtime threads (default: "
                   "the CPUs shared out); cases go largest first. 1: this process (as the challenge times a case).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="Run the cases on this Dask cluster (litemedsam[cluster]); the input and output folders must be "
                   "at the same path on every worker (a shared file system). See the README.")
@click.option("--threads", type=int, default=None,
              help="ONNX Runtime threads, 1-1024, capped to the CPUs available (default: $LITEMEDSAM_THREADS or "
                   "all CPUs available).")
@click.option("--exact", is_flag=True,
              help="The reference's computation everywhere: none of the router's faster 3D options (stride, stop) "
                   "or mask strategies (clip, component, fill, overlap).")
@click.option("--continue-prediction", "--continue_prediction", is_flag=True,
              help="Skip cases whose output already exists.")
@click.option("--quiet", is_flag=True, help="No line per finished case (errors, warnings and the summary still print).")
@click.option("--debug", is_flag=True, help="Print tracebacks of internal errors.")
@click.option("--profile", is_flag=True,
              help="Print where each case's seconds went (read, load models, encode, decode, write, other) and the "
                   "seconds from process start to the first case.")
def infer(input_path, output_dir, router_file, modality, model, prompt, head, reference, reference_mask, box_texts,
          boxes_file, labels_path, line_texts, recist_path, window, overlay_dir, measurements, workers, scheduler,
          threads, exact, continue_prediction, quiet, debug, profile):
    """Segment every case of INPUT into OUTPUT; label k is the k-th box (or lesion k of its RECIST lines).

    Exits 0 when every case was segmented, 1 when any case failed (the others are still done),
    2 when nothing could run (a missing or altered model file, an unusable router file).
    """
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.run.runner import FolderRun, RunSpec
    from litemedsam.models.session import resolve_threads

    check_together(prompt, head, model, reference, scheduler, workers)

    def echo(line):
        click.echo(line, err=line.startswith(("ERROR", "WARNING")))

    # SIGTERM (docker stop, a scheduler's time limit) ends the run as Ctrl-C does: the case being written
    # leaves no temporary file, finished outputs stay, exit 143
    terminate_on_sigterm()
    try:
        threads_given = threads  # for a cluster's workers: None, each worker's own CPUs
        if workers > 1 and threads is None and not os.environ.get("LITEMEDSAM_THREADS", "").strip():
            from litemedsam.run.workers import default_threads

            threads = default_threads(workers)
        threads, warning = resolve_threads(threads)
        if warning:
            echo(f"WARNING: {warning}")
        router = load_router(router_file, modality)
        prompting = (prompt_mode(prompt, head, reference, reference_mask, model, threads)
                     or BoxPrompting(router, model, modality, exact))
        inputs = case_inputs(box_texts, boxes_file, labels_path, window,
                             router.modality(modality) if modality else None, line_texts, recist_path)
        options = {"input": str(input_path), "output": str(output_dir), "router": str(router_file or "shipped"),
                   "modality": modality, "model": model, "prompt": prompt, "exact": exact,
                   "continue_prediction": continue_prediction, "boxes": list(box_texts) or None,
                   "boxes_file": str(boxes_file) if boxes_file else None,
                   "boxes_from_labels": str(labels_path) if labels_path else None, "window": window,
                   "lines": list(line_texts) or None, "recist": str(recist_path) if recist_path else None,
                   "overlay": str(overlay_dir) if overlay_dir else None, "measurements": measurements,
                   "workers": workers, "scheduler": scheduler}
        run_elsewhere = elsewhere(scheduler, workers, threads, threads_given)
        spec = RunSpec(prompting, inputs, overlay_dir, debug, measurements)
        predictor = FolderRun(spec, threads, echo=echo, profile=profile, options=options, quiet=quiet,
                              bar=None if quiet or workers > 1 or not sys.stderr.isatty() else terminal_bar,
                              executor=run_elsewhere)
        results = predictor.predict_folder(input_path, output_dir, continue_prediction)
    except LitemedsamError:
        raise  # cli.main prints it and exits with its code
    except OSError as e:  # the input folder itself (listing it)
        raise UsageError(f"{shown(e.filename or input_path)}: {e.strerror or e}") from None
    except KeyboardInterrupt as e:
        why = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        click.echo(f"{why}: finished cases are in {shown(output_dir)}; resume with --continue-prediction", err=True)
        sys.exit(getattr(e, "exit_code", 130))
    summary(results, input_path, output_dir)


def check_together(prompt, head, model, reference, scheduler, workers) -> None:
    """click.UsageError for options that do not go together."""
    if (prompt == "self") != (head is not None):
        raise click.UsageError("--prompt self and --head HEAD go together")
    if model is not None and not MODELS[model].takes_boxes and prompt != "none":
        raise click.UsageError(f"--model {model} takes no prompts: add --prompt none")
    if reference is not None and prompt != "box":
        raise click.UsageError("--reference replaces box prompts; it does not go with --prompt self or none")
    if scheduler is not None and workers > 1:
        raise click.UsageError("--scheduler and --workers go separately: a cluster's workers are its own")


def elsewhere(scheduler, workers: int, threads, threads_given):
    """Where the cases run besides this process: a Dask cluster, worker processes, or None (here)."""
    if scheduler is not None:
        return cluster_executor(scheduler, threads_given)
    if workers > 1:
        from litemedsam.run.workers import executor

        return executor(workers, threads)
    return None


def summary(results: list, input_path, output_dir) -> None:
    """The run's last lines; exit 1 when a case failed."""
    failed = [r for r in results if r.status == "failed"]
    done = sum(r.status == "ok" for r in results)
    if not results:
        click.echo(f"no .npz cases in {shown(input_path)}")
    else:
        total = sum(r.seconds for r in results)
        click.echo(f"{done} segmented, {len(failed)} failed, "
                   f"{len(results) - done - len(failed)} kept from before; {total:.1f} s -> {shown(output_dir)}")
    if failed:
        click.echo("failed: " + ", ".join(shown(r.case) for r in failed), err=True)
        sys.exit(1)
