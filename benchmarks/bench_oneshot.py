"""DSC of one-shot part-aware prompting: each case of a kind as the reference for all the others.

    python benchmarks/bench_oneshot.py [--cases DIR] [--match Kvasir] [--parts 3]

Prints, per reference, the mean DSC on the other cases, then the mean over references, next to
box-prompted LiteMedSAM on the same cases.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from litemedsam.cases import load_case  # noqa: E402
from litemedsam.oneshot import build_reference, segment_oneshot  # noqa: E402
from litemedsam.pipeline import segment_2d  # noqa: E402
from litemedsam.segmenter import make_segmenter  # noqa: E402


def dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * (a & b).sum() / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=REPO.parent / "shared" / "data" / "cvpr24-dev")
    parser.add_argument("--match", default="Kvasir")
    parser.add_argument("--parts", type=int, default=3)
    args = parser.parse_args()
    files = sorted(p for p in (args.cases / "imgs").glob("2DBox_*.npz") if args.match in p.name)
    seg = make_segmenter("litemedsam")
    images = {p.name: load_case(p) for p in files}
    gts = {p.name: np.load(args.cases / "gts" / p.name)["gts"] > 0 for p in files}
    box = {n: dice(segment_2d(seg, c.image, c.boxes) > 0, gts[n]) for n, c in images.items()}
    print(f"{len(files)} cases ({args.match}); box-prompted LiteMedSAM mean DSC {np.mean(list(box.values())):.4f}")
    print("| reference | mean DSC on the others | parts chosen | s per image |")
    print("|---|---|---|---|")
    means = []
    for ref_name in images:
        ref = build_reference(seg, images[ref_name].image, gts[ref_name], args.parts)
        scores, parts, start = [], [], time.perf_counter()
        for name, case in images.items():
            if name == ref_name:
                continue
            out, info = segment_oneshot(seg, ref, case.image)
            scores.append(dice(out > 0, gts[name]))
            parts.append(info["parts"])
        seconds = (time.perf_counter() - start) / len(scores)
        means.append(np.mean(scores))
        print(f"| {ref_name} | {np.mean(scores):.4f} | {np.bincount(parts, minlength=args.parts + 1)[1:].tolist()} | {seconds:.2f} |")
    print(f"mean over references: {np.mean(means):.4f} (box-prompted {np.mean(list(box.values())):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
