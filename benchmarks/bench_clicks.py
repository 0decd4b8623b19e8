"""The 2025 challenge's interactive protocol end to end, on the labelled dev cases (as the organisers'
CVPR25_iter_eval.py runs it, rewritten here): a box step, then 5 click steps, each a run of ``infer`` on the case
with the clicks so far, their order and the previous output (``prev_pred``).

    python -m benchmarks.bench_clicks [--dims 3D,2D] [--match TEXT] [--no-boxes] [--in-process] [--clicks 5]
                                      [--docker IMAGE]

Each dev case is written in the 2025 layout (3D: ``boxes`` as dicts, z_mid the middle slice the object is on and
its box there; 2D: its Nx4 boxes, clicks as [0, y, x]); ``--no-boxes`` leaves the boxes out (the first step is
then a click, as the challenge's box-free cases: their box step scores 0 and takes no time). After each step, per
class: the largest 26-connected (2D: 8-connected) error component of the output, its voxel farthest from the
component's border (ties: the organisers' seeded choice), a background click if that voxel is over-segmented,
else a foreground one. Prints per case DSC and NSD after each step, DSC_AUC and NSD_AUC (trapezoids over the 5
click steps, at most 4), the final DSC/NSD and the seconds of each run (a fresh ``litemedsam infer`` process per
run, as the challenge runs a container; ``--docker IMAGE``: the organisers' ``docker container run -m 8G ... sh
predict.sh`` per run; ``--in-process``: one process, models loaded once, for comparing methods quickly), each case's
total seconds against the organisers' bound (90 s per class for its 6 runs), then the means. As the organisers'
script, the output folder keeps the last output between runs: a run that fails leaves it there (it is counted as
that step's output) and is listed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from evaluation.compute_metrics import case_metrics
from litemedsam.models.registry import dev_data_dir

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
        from litemedsam.run.runner import Predictor, RunSpec

        self.predictor = Predictor(RunSpec(BoxPrompting(Router.load(None))), echo=lambda line: None, quiet=True)

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", default="3D,2D")
    parser.add_argument("--match", default="", help="only the cases whose name contains this")
    parser.add_argument("--no-boxes", action="store_true", help="no boxes: the first step is a click")
    parser.add_argument("--in-process", action="store_true", help="one process (for comparing methods)")
    parser.add_argument("--docker", metavar="IMAGE", help="each run in a new container of IMAGE, as the organisers")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--keep-box-steps", type=Path, metavar="DIR",
                        help="keep each case's box-step output in DIR and reuse it (comparing click methods)")
    args = parser.parse_args(argv)
    dev = dev_data_dir()
    dims = tuple(f"{d}Box_" for d in args.dims.split(","))
    names = sorted(p.name for p in (dev / "imgs").glob("*.npz") if p.name.startswith(dims) and args.match in p.name)
    infer = Docker(args.docker) if args.docker else InProcess() if args.in_process else fresh
    results = {}
    print(f"{'case':60s} {'DSC per step':>44s}  DSC_AUC  final DSC/NSD  s per run (box; clicks)  total s / bound")
    for name in names:
        r = results[name] = run_case(name, dev, infer, args.clicks, not args.no_boxes, args.keep_box_steps)
        total = sum(r["seconds"])
        print(f"{name[:60]:60s} {' '.join(f'{100 * d:6.2f}' for d in r['dsc'])}  {r['dsc_auc']:7.3f}  "
              f"{100 * r['dsc'][-1]:6.2f}/{100 * r['nsd'][-1]:6.2f}  {r['seconds'][0]:.2f}; "
              f"{np.mean(r['seconds'][1:]):.2f}  {total:.0f} / {r['bound']:.0f}{'  OVER' if total > r['bound'] else ''}"
              f"{'  FAILED steps ' + str(r['failed']) if r['failed'] else ''}", flush=True)
    for dim in args.dims.split(","):
        rs = [r for n, r in results.items() if n.startswith(f"{dim}Box")]
        if not rs:
            continue
        dsc = np.mean([r["dsc"] for r in rs], axis=0)
        nsd = np.mean([r["nsd"] for r in rs], axis=0)
        gain = [r["dsc"][-1] - r["dsc"][0] for r in rs]
        print(f"{dim} ({len(rs)} cases): DSC per step {' '.join(f'{100 * d:.2f}' for d in dsc)}; NSD per step "
              f"{' '.join(f'{100 * d:.2f}' for d in nsd)}; DSC_AUC {np.mean([r['dsc_auc'] for r in rs]):.3f}, NSD_AUC "
              f"{np.mean([r['nsd_auc'] for r in rs]):.3f}; final - box DSC {100 * np.mean(gain):+.2f} (worst "
              f"{100 * min(gain):+.2f}); s per run: box {np.mean([r['seconds'][0] for r in rs]):.2f}, click "
              f"{np.mean([np.mean(r['seconds'][1:]) for r in rs]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
