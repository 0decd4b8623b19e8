"""Fine-tuning LiteMedSAM's prompt encoder and mask decoder on a user's labelled 2D cases, the image encoder
frozen (the cheap way MedSAM's maintainer suggests: each image is encoded once, then only the decoder trains).

Boxes are jittered as MedSAM trained them (each side moved by up to ``JITTER`` of the box's size, at most
``JITTER_PX`` pixels of the 256 frame); the loss is Dice + BCE on the decoder's 256 x 256 logits; Adam, a fixed
seed. ``labels_of`` gives a model's masks as ``infer`` would (the logits upsampled to the image and thresholded
by the runtime's own Frame), so a fitted decoder is judged on the masks a user would get. torch lives here only
(the export extra); the runtime never imports this module.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from export.graphs import BoxDecoder

JITTER = 0.1  # each box side moves by up to this share of the box's size ...
JITTER_PX = 10  # ... and at most this many pixels of the 256 frame
MAX_BOXES = 16  # objects of one case trained on in one step, drawn anew each time (a 125-cell image took 9.5 GB)
SLICES_PER_VOLUME = 8  # axial slices of a labelled volume taken as examples (each encoded once)


@dataclass
class Example:
    """One labelled 2D case, encoded: its embedding, its objects' boxes (256 frame) and masks (256 grid of the
    logits), and what scoring needs (the runtime's frame, the ground truth, the objects' labels)."""

    name: str  # the case's name, and " z<k>" for a volume's slice
    embedding: torch.Tensor  # (1, 256, 64, 64)
    boxes: torch.Tensor  # (N, 4) float32
    masks: torch.Tensor  # (N, 256, 256) float32, 0/1
    frame: object
    gts: np.ndarray
    labels: list
    case: str = ""  # the case it comes from (a volume gives several examples; they are held out together)


def labelled_images(cases: list, gts_dir: Path | None = None, labels_dir: Path | None = None, log=print):
    """Per labelled 2D image of ``cases``: (name, image, ground truth, its objects' labels, the runtime's frame, their
    boxes in the 256 frame, their masks on the 256 grid of the logits, the case's name). ``cases``: challenge .npz
    paths (ground truths in ``gts_dir``, default ../gts), or, with ``labels_dir``, images or volumes of any format
    litemedsam reads, each with a label image named as it there. A volume gives up to ``SLICES_PER_VOLUME`` of its
    axial slices with objects, spread over them, each prompted by its objects' boxes on that slice (as propagation
    prompts a slice). Cases without an object are left out; one that cannot be read is said and left out."""
    from litemedsam.core.errors import CaseError

    for path in cases:
        try:
            case, gts = read_labelled(path, gts_dir, labels_dir)
        except CaseError as e:
            log(f"WARNING {path.name}: {e}; left out")
            continue
        if case.dim == "2D":
            labels = [i + 1 for i in range(len(case.boxes)) if i + 1 not in case.skipped and (gts == i + 1).any()]
            if labels:
                boxes = case.boxes[np.array(labels) - 1]
                yield (path.name, case.image, gts, labels, *grid(case.image, gts, labels, boxes), path.name)
            continue
        with_objects = np.flatnonzero(gts.reshape(len(gts), -1).any(axis=1))
        if len(with_objects) > SLICES_PER_VOLUME:
            with_objects = with_objects[np.linspace(0, len(with_objects) - 1, SLICES_PER_VOLUME).round().astype(int)]
        for z in with_objects.tolist():
            labels = [int(v) for v in np.unique(gts[z]) if v]
            boxes = np.array([box_of(gts[z] == label) for label in labels], np.float64)
            yield (f"{path.name} z{z}", case.image[z], gts[z], labels, *grid(case.image[z], gts[z], labels, boxes),
                   path.name)


def box_of(mask: np.ndarray) -> list:
    """The tight box [x0, y0, x1, y1] of a 2D mask."""
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max(), ys.max()]


def grid(image: np.ndarray, gts: np.ndarray, labels: list, boxes: np.ndarray) -> tuple:
    """(the runtime's frame of ``image``, ``boxes`` (one per label of ``labels``, in image pixels) in the 256 frame,
    the masks of ``labels`` on the 256 grid of the logits)."""
    from litemedsam.core.frame import Frame

    frame = Frame.longest_side(*image.shape[:2], 256, 256, 256, truncate_boxes=True)
    masks = np.stack([frame.image_to_grid(gts == label) for label in labels])
    return frame, np.asarray(frame.boxes_to_model(boxes), np.float32), masks


def read_labelled(path: Path, gts_dir: Path | None, labels_dir: Path | None) -> tuple:
    """(case, its label map) of a labelled case, read as ``infer`` reads it: a challenge .npz and its ``gts`` in
    ``gts_dir`` (default ../gts), or an image and the label image of its name in ``labels_dir`` (its boxes, as
    ``infer --boxes-from-labels`` takes them: the tight box of each label value)."""
    import dataclasses

    from litemedsam.core.errors import CaseError
    from litemedsam.io import formats
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.io.given_boxes import boxes_of_label_image
    from litemedsam.io.npz import read_npz

    if labels_dir is None:
        return load_case(path), read_npz((gts_dir or path.parent.parent / "gts") / path.name, ("gts",))["gts"]
    case = formats.read(path, require_boxes=False)
    try:  # read once: its boxes and shape checked by infer's own function
        gts = formats.read_labels(labels_dir / path.name)[0]
    except CaseError as e:
        raise CaseError(f"its label image {path.name}: {e}") from None
    boxes, absent = boxes_of_label_image(gts, case.label_shape, path.name)
    return dataclasses.replace(case, boxes=boxes, skipped=absent), gts


def examples(model, cases: list, gts_dir: Path | None = None, labels_dir: Path | None = None) -> list:
    """``labelled_images(cases, gts_dir, labels_dir)`` encoded once each by ``model``'s frozen image encoder."""
    from litemedsam.core import transforms

    found = []
    for name, image, gts, labels, frame, boxes, masks, case in labelled_images(cases, gts_dir, labels_dir):
        with torch.no_grad():
            embedding = model.image_encoder(torch.from_numpy(transforms.preprocess(image, 256)))
        found.append(Example(name, embedding, torch.from_numpy(boxes),
                             torch.from_numpy((masks > 0.5).astype(np.float32)), frame, gts, labels, case))
    return found


def labels_of(model, example: Example) -> np.ndarray:
    """The label map ``model`` gives for the example's boxes, at the image's size (each object painted in order,
    as infer paints a case's boxes)."""
    with torch.no_grad():
        logits, _ = BoxDecoder(model)(example.embedding, example.boxes)
    out = np.zeros(example.gts.shape, np.uint16)
    for mask, label in zip(example.frame.masks(logits[:, 0].numpy()), example.labels):
        out[mask] = label
    return out


def some_objects(boxes: torch.Tensor, masks: torch.Tensor, most: int, rng: np.random.Generator) -> tuple:
    """At most ``most`` of a case's objects (boxes and masks), drawn anew each call."""
    if len(boxes) <= most:
        return boxes, masks
    pick = torch.as_tensor(rng.choice(len(boxes), most, replace=False))
    return boxes[pick], masks[pick]


def step(optimizer, logits: torch.Tensor, masks: torch.Tensor) -> float:
    """One optimizer step on Dice + BCE of (N, 256, 256) low-res ``logits`` against ``masks``; the loss."""
    prob = torch.sigmoid(logits)
    dice = 1 - (2 * (prob * masks).sum((1, 2)) + 1) / (prob.sum((1, 2)) + masks.sum((1, 2)) + 1)
    loss = dice.mean() + F.binary_cross_entropy_with_logits(logits, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def jittered(boxes: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    size = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, 1)
    shift = torch.from_numpy(rng.uniform(-1, 1, boxes.shape).astype(np.float32))
    moved = boxes + torch.clamp(shift * JITTER * size, -JITTER_PX, JITTER_PX)
    return moved.clamp(0, 255)


def fit_decoder(model, train: list, epochs: int = 20, lr: float = 1e-4, seed: int = 0, minutes: float | None = None,
                log=print, held: list | None = None):
    """A copy of ``model`` whose prompt encoder and mask decoder are trained on ``train`` (Examples) for
    ``epochs`` passes (or until ``minutes``), the image encoder untouched; each epoch's line says its loss and,
    with ``held`` (Examples not trained on), their mean DSC then (nothing else changes: the training is the same
    with or without it). Returns (model, losses per epoch)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fitted = copy.deepcopy(model)
    for p in fitted.parameters():
        p.requires_grad_(False)
    params = [p for part in (fitted.prompt_encoder, fitted.mask_decoder) for p in part.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    decoder = BoxDecoder(fitted)
    start, losses = time.perf_counter(), []
    fitted.train()
    for epoch in range(epochs):
        total = 0.0
        for k in rng.permutation(len(train)):
            example = train[k]
            boxes, masks = some_objects(example.boxes, example.masks, MAX_BOXES, rng)
            logits, _ = decoder(example.embedding, jittered(boxes, rng))
            total += step(optimizer, logits[:, 0], masks)
        losses.append(total / len(train))
        score = f", held-out DSC {held_out_dsc(fitted, held):.2f}" if held else ""
        log(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}{score}")
        if minutes is not None and time.perf_counter() - start > 60 * minutes:
            break
    fitted.eval()
    for p in fitted.parameters():
        p.requires_grad_(False)
    return fitted, losses


def held_out_dsc(model, held: list) -> float:
    """The mean DSC (points) ``model`` gives on the cases of the examples ``held``, scored as ``held_out`` scores
    them (an example's DSC the mean over its labels, a volume's the mean over its slices); the model is left in
    the mode it was in."""
    from evaluation.compute_metrics import case_dsc

    training = model.training
    model.eval()
    try:
        per_case: dict = {}
        for e in held:
            per_case.setdefault(e.case, []).append(case_dsc(e.gts, labels_of(model, e)))
    finally:
        model.train(training)
    return 100 * float(np.mean([np.mean(v) for v in per_case.values()]))


def folds(n: int) -> list:
    """Held-out folds of ``n`` cases: each case alone when there are few (<= 10), else 5 folds."""
    k = n if n <= 10 else 5
    return [list(range(i, n, k)) for i in range(k)]


def on_terminal(prefix: str):
    """A fit's per-epoch log: on a terminal one line rewritten in place (the epoch and its loss), elsewhere nothing
    (a log file keeps the folds and their held-out scores)."""
    import sys

    if not sys.stdout.isatty():
        return lambda line: None
    return lambda line: print(f"\r  {prefix}{line}\033[K", end="", flush=True)


def done_on_terminal() -> None:
    """The line ``on_terminal`` rewrote, cleared."""
    import sys

    if sys.stdout.isatty():
        print("\r\033[K", end="", flush=True)


def held_out(model, data: list, epochs: int, lr: float, seed: int, minutes: float | None, log=print) -> list:
    """Per case of ``data``: (name, base DSC, base NSD, fitted DSC, fitted NSD), points, each case scored by a
    decoder fitted on the folds it is not in (a volume: the mean over its slices that are examples, all held out
    together)."""
    from evaluation.compute_metrics import case_metrics

    names = cases_of(data)
    rows = []
    for i, fold in enumerate(folds(len(names))):
        out = [names[k] for k in fold]
        train = [e for e in data if e.case not in out]
        log(f"fold {i + 1}: fitting on {len(names) - len(out)} case(s), holding out {', '.join(out)}")
        tuned, _ = fit_decoder(model, train, epochs, lr, seed, minutes, log=on_terminal(f"fold {i + 1}: "),
                               held=[e for e in data if e.case in out])
        done_on_terminal()
        for name in out:
            mine = [e for e in data if e.case == name]
            base = np.mean([case_metrics(e.gts, labels_of(model, e), None) for e in mine], axis=0)
            fitted = np.mean([case_metrics(e.gts, labels_of(tuned, e), None) for e in mine], axis=0)
            rows.append((name, *(round(100 * float(v), 2) for v in (*base, *fitted))))
            log(f"  {name}: DSC {rows[-1][1]:.2f} -> {rows[-1][3]:.2f}, NSD {rows[-1][2]:.2f} -> {rows[-1][4]:.2f}")
    return rows


def cases_of(data: list) -> list:
    """The names of the cases the examples come from, in order."""
    return list(dict.fromkeys(e.case for e in data))


def main(argv=None) -> int:
    """python -m export.fit CASES --out MERGED.pth --report REPORT.json [--epochs N] [--lr X] [--seed S]
    [--minutes M]: the held-out folds, the shipping rule on them (without its minimum of cases: a user's cases
    are what they are), and, when it passes, the decoder fitted on every case merged into LiteMedSAM's weights."""
    import argparse
    import json
    import sys

    from benchmarks.shipping import judge
    from export.litemedsam import load_model
    from litemedsam.models.registry import CHECKPOINTS, verified_path
    from litemedsam.run.folders import list_cases

    parser = argparse.ArgumentParser(description="fit LiteMedSAM's decoder on labelled 2D cases")
    parser.add_argument("cases", type=Path, help="a folder with imgs/*.npz and gts/*.npz (the challenge layout), or "
                        "of images with --labels")
    parser.add_argument("--labels", type=Path, default=None, help="a folder of label images named as the images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None)
    args = parser.parse_args(argv)
    checkpoint = verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch")
    model = load_model(checkpoint)
    if args.labels is None:
        data = examples(model, sorted((args.cases / "imgs").glob("*.npz")), args.cases / "gts")
    else:
        data = examples(model, list_cases(args.cases)[0], labels_dir=args.labels)
    if len(cases_of(data)) < 2:
        print(f"ERROR {args.cases}: {len(cases_of(data))} labelled case(s) with an object; fitting needs at least 2 "
              f"(one to fit on, one held out to judge it)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    rows = held_out(model, data, args.epochs, args.lr, args.seed, args.minutes)
    delta = np.array([[r[3] - r[1], r[4] - r[2]] for r in rows])
    verdict = judge(delta[:, 0], delta[:, 1])
    kept = all(v for k, v in verdict.criteria.items() if k != "n")
    report = {"cases": [r[0] for r in rows], "held_out": [dict(zip(("case", "base_dsc", "base_nsd", "dsc", "nsd"), r))
                                                         for r in rows],
              "mean": {"base_dsc": round(float(np.mean([r[1] for r in rows])), 2),
                       "base_nsd": round(float(np.mean([r[2] for r in rows])), 2),
                       "dsc": round(float(np.mean([r[3] for r in rows])), 2),
                       "nsd": round(float(np.mean([r[4] for r in rows])), 2)},
              "rule": {k: bool(v) for k, v in verdict.criteria.items() if k != "n"}, "kept": kept,
              "epochs": args.epochs, "lr": args.lr, "seed": args.seed}
    if kept:
        print(f"fitting on all {len(cases_of(data))} cases", flush=True)
        tuned, losses = fit_decoder(model, data, args.epochs, args.lr, args.seed, args.minutes,
                                    log=on_terminal("all cases: "))
        done_on_terminal()
        state = tuned.state_dict()
        torch.save({k: v for k, v in state.items()}, args.out)
        report["final_loss"] = round(losses[-1], 4)
    report["seconds"] = round(time.perf_counter() - start, 1)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C: litemedsam fit says what was kept; no traceback
        raise SystemExit(130) from None
