import time
from pathlib import Path

import click

from litemedsam.models.registry import MODELS


@click.command("fit-head")
@click.argument("cases", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The head, e.g. polyp_head.onnx")
@click.option("--gts", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of ground truths with the cases' names (default: gts/ beside the cases' folder).")
@click.option("-k", "k", type=click.IntRange(min=1), default=None, help="Use the first k cases (sorted by name).")
@click.option("--model", default="litemedsam", show_default=True,
              type=click.Choice(sorted(n for n, s in MODELS.items() if s.prompt_decoder)))
@click.option("--threads", type=int, default=None,
              help="ONNX Runtime threads (default: $LITEMEDSAM_THREADS or all CPUs available).")
def fit_head(cases, output, gts, k, model, threads):
    """Fit a self-prompting head (linear pixel classifier on the image embedding) on labelled 2D cases.

    CASES are 2D cases of any format infer reads, or folders of them, each with its ground truth (``gts`` in a
    .npz case, else a label file of the same name in --gts or ../gts/); every label counts as foreground.
    Then `litemedsam infer --prompt self --head OUTPUT` segments images with no boxes.
    """
    import numpy as np

    from litemedsam.core.errors import CaseError, shown
    from litemedsam.run.folders import list_cases
    from litemedsam.io.formats import read_labelled_2d
    from litemedsam.models.segmenter import make_segmenter
    from litemedsam.models.session import resolve_threads
    from litemedsam.methods.selfprompt import fit_logistic, save_head, training_pixels

    files = []
    for path in cases:
        files += list_cases(path)[0] if path.is_dir() else [path]
    files = files[:k] if k else files
    start = time.perf_counter()
    threads, warning = resolve_threads(threads)
    if warning:
        click.echo(f"WARNING: {warning}", err=True)
    seg = make_segmenter(model, threads=threads)  # a ModelError ends the command with exit 2 (cli.main)
    xs, ys, used = [], [], []
    for path in files:
        try:
            image, mask = read_labelled_2d(path, (gts / path.name) if gts else None)
        except CaseError as e:  # ends the command with exit 1 (cli.main)
            raise CaseError(f"{shown(path.name)}: {e}") from None
        x, y = training_pixels(seg, image, mask)
        xs.append(x)
        ys.append(y)
        used.append(path.name)
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.min() == y.max():
        raise CaseError("the ground truths give only one class; a head needs foreground and background")
    weights, bias = fit_logistic(x, y)
    accuracy = float((((x @ weights + bias) > 0) == (y > 0)).mean())
    save_head(output, weights, bias, {"model": model, "k": len(used), "cases": " ".join(used),
                                      "train_pixel_accuracy": round(accuracy, 4)})
    click.echo(f"{output}: head for {model} fitted on {len(used)} case(s), {len(y)} cells "
               f"({y.mean():.1%} foreground), training accuracy {accuracy:.4f}, {time.perf_counter() - start:.1f} s")
