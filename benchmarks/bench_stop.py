"""Where a box's object ends when nothing says so: the stop rule of ``Scene.propagate`` (a 2D box drawn on one
slice, as 3D Slicer and napari send it over the nnInteractive protocol), measured on the labelled dev volumes.

    python -m benchmarks.bench_stop [--match TEXT] [--ends 1:0,1:0.2,...]

Per object of each 3D dev case: the ground truth's largest axial slice and the box around the object there. The
object is segmented (a) as a 3D box with the ground truth's z-range (what a challenge case gives, started on that
slice), and (b) from the 2D box alone, propagated both ways until N consecutive slices have an empty mask, for
each N of ``--stops``. Prints the mean Dice per volume of each, and per N how many volumes lose more than 1 point
against (a). One embedding cache serves every variant of a volume (each slice encoded once).
"""
from __future__ import annotations

import argparse

import numpy as np

from litemedsam.core.masks import dice
from litemedsam.io import formats
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.methods.prompting import BoxPrompting
from litemedsam.methods.router import Router
from litemedsam.models.registry import dev_data_dir
from litemedsam.models.segmenter import Segmenters
from litemedsam.serve.encoding import EmbeddingCache
from litemedsam.serve.scene import Scene


def slice_box(gt: np.ndarray) -> tuple:
    """(largest slice, its box x0, y0, x1, y1, the object's z-range) of a 3D ground-truth mask."""
    areas = gt.sum(axis=(1, 2))
    z = int(np.argmax(areas))
    ys, xs = np.nonzero(gt[z])
    zs = np.flatnonzero(areas)
    return z, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), (int(zs[0]), int(zs[-1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--match", default="")
    parser.add_argument("--ends", default="1:0,1:0.1,1:0.2,2:0.2,1:0.3",
                        help="stop:shrink rules (litemedsam.methods.pipeline.segment_3d)")
    parser.add_argument("--cache-mb", type=int, default=4096)
    args = parser.parse_args(argv)
    stops = [(int(e.split(":")[0]), float(e.split(":")[1])) for e in args.ends.split(",")]
    dev = dev_data_dir()
    prompting = BoxPrompting(Router.load())
    segmenters = Segmenters()
    names = sorted(p.name for p in (dev / "imgs").glob("3DBox_*.npz") if args.match in p.name)
    print(f"{'volume':52s} {'objects':>7s} {'z-range':>8s} " + " ".join(f"{f'{s[0]}:{s[1]}':>8s}" for s in stops))
    rows = []
    for name in names:
        case = formats.read(dev / "imgs" / name, CaseInputs(), require_boxes=False)
        gts = np.load(dev / "gts" / name)["gts"]
        scene = Scene(case, prompting, segmenters, EmbeddingCache(args.cache_mb << 20))
        scores = {key: [] for key in ["z-range", *stops]}
        for label in [int(v) for v in np.unique(gts) if v]:
            gt = gts == label
            z, box, z_range = slice_box(gt)
            scores["z-range"].append(dice(scene.box_mask(box, z, z_range)[0], gt))
            for s in stops:
                scores[s].append(dice(scene.propagate(box, z, "z", end=s)[0], gt))
        means = {k: 100 * float(np.mean(v)) for k, v in scores.items()}
        rows.append(means)
        print(f"{name[:52]:52s} {len(scores['z-range']):7d} {means['z-range']:8.2f} "
              + " ".join(f"{means[s]:8.2f}" for s in stops), flush=True)
    print(f"{'mean':52s} {'':7s} {np.mean([r['z-range'] for r in rows]):8.2f} "
          + " ".join(f"{np.mean([r[s] for r in rows]):8.2f}" for s in stops))
    for s in stops:
        lost = [r["z-range"] - r[s] for r in rows]
        print(f"end {s}: volumes more than 1 point below z-range: {sum(x > 1 for x in lost)} of {len(rows)}; worst "
              f"{-max(lost):+.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
