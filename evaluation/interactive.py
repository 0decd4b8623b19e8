"""The 2025 challenge's interactive protocol as its organisers run it (CVPR25_iter_eval.py, rewritten here): the
2025 layout's boxes of a label map, the next click after each step (the largest error component's deepest voxel),
the case written for each step, and one case run through its box step and click steps by an ``infer`` (a fresh
process, this process, or the Docker image as the organisers run it). Used by benchmarks/bench_clicks.py (the whole
protocol on the dev cases), benchmarks/bench_protocol.py and the tests."""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.compute_metrics import case_metrics

REPO = Path(__file__).resolve().parent.parent


def classes(gts: np.ndarray) -> list:
    return [int(c) for c in np.unique(gts) if c]


def boxes_2025(gts: np.ndarray) -> list:
    """The 2025 layout's box dicts of a (D, H, W) label map, one per class: its slices, and its box on the middle
    slice it is on."""
    records = []
    for c in classes(gts):
        zs = np.flatnonzero((gts == c).any(axis=(1, 2)))
        z = int(zs[len(zs) // 2])
        ys, xs = np.nonzero(gts[z] == c)
        records.append({"z_min": int(zs[0]), "z_max": int(zs[-1]), "z_mid": z, "z_mid_x_min": int(xs.min()),
                        "z_mid_y_min": int(ys.min()), "z_mid_x_max": int(xs.max()), "z_mid_y_max": int(ys.max())})
    return records


def boxes_2d(gts: np.ndarray) -> np.ndarray:
    rows = []
    for c in classes(gts):
        ys, xs = np.nonzero(gts == c)
        rows.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return np.array(rows, np.int64)


def next_click(segs: np.ndarray, gts: np.ndarray, c: int):
    """('fg' or 'bg', index) of the click the protocol places for class ``c``, None when the output is right."""
    error = (segs == c) != (gts == c)
    if not error.any():
        return None
    parts, n = ndimage.label(error, np.ones((3,) * error.ndim, bool))
    largest = 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
    where = ndimage.find_objects(parts, largest)[largest - 1]
    crop = np.pad(parts[where] == largest, 1)  # outside the component (and the image) is its border
    distance = ndimage.distance_transform_edt(crop)[(slice(1, -1),) * error.ndim]
    best = np.argwhere(distance == distance.max())
    np.random.seed(42)  # the organisers' choice among equally deep voxels
    at = tuple(int(v) for v in best[np.random.choice(len(best))] + [s.start for s in where])
    return ("bg" if gts[at] != c else "fg"), at


def write_case(path: Path, image, spacing, boxes, clicks, order, prev) -> None:
    arrays = {"imgs": image, "spacing": spacing}
    if boxes is not None:
        arrays["boxes"] = np.array(boxes, dtype=object) if isinstance(boxes, list) else boxes
    if clicks is not None:  # as the organisers' script writes them: lists, which NumPy turns into arrays its way
        arrays.update(clicks=clicks, clicks_order=order, prev_pred=prev)
    np.savez_compressed(path, **arrays)


class InProcess:
    """``infer`` on one folder, in this process: models loaded once."""

    def __init__(self):
        from litemedsam.methods.prompting import BoxPrompting
        from litemedsam.methods.router import Router
        from litemedsam.run.runner import FolderRun, RunSpec

        self.predictor = FolderRun(RunSpec(BoxPrompting(Router.load(None))), echo=lambda line: None, quiet=True)

    def __call__(self, folder: Path, out: Path) -> bool:
        return all(r.status == "ok" for r in self.predictor.predict_folder(folder, out))


def ran(command: list) -> bool:
    """Whether ``command`` succeeded; its error output is printed when not."""
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        print(done.stderr.strip()[-2000:], file=sys.stderr)
    return done.returncode == 0


def fresh(folder: Path, out: Path) -> bool:
    return ran([sys.executable, "-m", "litemedsam", "infer", "-i", folder, "-o", out, "--quiet"])


class Docker:
    """A run of the image as the organisers' CVPR25_iter_eval.py runs it: a new container per run, the input and
    output folders mounted (made writable for the container's user, as their ``chmod -R 777``), ``sh predict.sh``.
    The memory cap is the 2024 challenge's 8 GB (their 2025 script gives 32)."""

    def __init__(self, image: str):
        self.image = image

    def __call__(self, folder: Path, out: Path) -> bool:
        for path in (folder, out, *folder.iterdir(), *out.iterdir()):
            path.chmod(0o777)
        return ran(["docker", "container", "run", "-m", "8G", "--rm", "-v", f"{folder}/:/workspace/inputs/",
                    "-v", f"{out}/:/workspace/outputs/", self.image, "/bin/bash", "-c", "sh predict.sh"])


def run_case(name: str, dev: Path, infer, steps: int, with_boxes: bool, keep: Path | None = None) -> dict:
    data = np.load(dev / "imgs" / name, allow_pickle=False)
    gts = np.load(dev / "gts" / name)["gts"]
    image, spacing = data["imgs"], data["spacing"] if "spacing" in data else np.ones(3)
    is3d = gts.ndim == 3
    boxes = (boxes_2025(gts) if is3d else boxes_2d(gts)) if with_boxes else None
    kinds = classes(gts)
    clicks, order = [{"fg": [], "bg": []} for _ in kinds], [[] for _ in kinds]
    segs = np.zeros_like(gts)
    dscs, nsds, seconds, failed = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        out.mkdir()
        for step in range(steps + 1):
            if step == 0 and not with_boxes:
                dscs.append(0.0), nsds.append(0.0), seconds.append(0.0)
                continue
            if step:
                for i, c in enumerate(kinds):
                    click = next_click(segs, gts, c)
                    if click is not None:
                        kind, at = click
                        clicks[i][kind].append(list(map(np.int64, at)) if is3d else [0, *at])  # as theirs: argwhere's
                        order[i].append(kind)
            write_case(folder / name, image, spacing, boxes, clicks if step else None, order, segs.astype(np.uint8))
            kept = keep / name if keep is not None and step == 0 else None
            start = time.perf_counter()
            if kept is not None and kept.is_file():  # the box step of an earlier run (--keep-box-steps)
                segs = np.load(kept)["segs"]
                np.savez_compressed(out / name, segs=segs)
            else:
                if not infer(folder, out):
                    failed.append(step)
                segs = np.load(out / name)["segs"] if (out / name).is_file() else np.zeros_like(gts)
                if kept is not None:
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(kept, segs=segs)
            seconds.append(time.perf_counter() - start)
            dsc, nsd = case_metrics(gts, segs, spacing)
            dscs.append(dsc), nsds.append(nsd)
    auc = lambda v: float(np.trapezoid(v[-steps:]))  # noqa: E731 (the organisers' cumulative trapezoid, its last value)
    return {"dsc": dscs, "nsd": nsds, "seconds": seconds, "dsc_auc": auc(dscs), "nsd_auc": auc(nsds),
            "failed": failed, "bound": 90.0 * len(kinds)}
