"""DSC of one-shot part-aware prompting: each case of a kind as the reference for all the others.

    python -m benchmarks.bench_oneshot [--cases DIR] [--match Kvasir] [--parts 3]

Prints, per reference, the mean DSC on the other cases, then the mean over references, next to
box-prompted LiteMedSAM on the same cases.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.labelled import DEV, box_prompted, dice, labelled_cases
from litemedsam.methods.oneshot import build_reference, segment_oneshot
from litemedsam.models.segmenter import make_segmenter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=DEV)
    parser.add_argument("--match", default="Kvasir")
    parser.add_argument("--parts", type=int, default=3)
    args = parser.parse_args()
    cases = labelled_cases(args.cases, args.match)
    images = {n: case for n, (case, _) in cases.items()}
    gts = {n: gt for n, (_, gt) in cases.items()}
    seg = make_segmenter("litemedsam")
    box = box_prompted(seg, cases, cases)
    embeddings = {n: seg.encode(case.image) for n, case in images.items()}  # each image encoded once
    print(f"{len(cases)} cases ({args.match}); box-prompted LiteMedSAM mean DSC {np.mean(list(box.values())):.4f}")
    print(
        "| reference | mean DSC on the others | parts chosen | s per image (decoding; images encoded once beforehand) |"
    )
    print("|---|---|---|---|")
    means = []
    for ref_name in images:
        ref = build_reference(seg, embeddings[ref_name], gts[ref_name], args.parts)
        scores, parts, start = [], [], time.perf_counter()
        for name in images:
            if name == ref_name:
                continue
            out, info = segment_oneshot(seg, ref, embeddings[name])
            scores.append(dice(out, gts[name]))
            parts.append(info["parts"])
        seconds = (time.perf_counter() - start) / len(scores)
        means.append(np.mean(scores))
        print(
            f"| {ref_name} | {np.mean(scores):.4f} | {np.bincount(parts, minlength=args.parts + 1)[1:].tolist()} | "
            f"{seconds:.2f} |"
        )
    print(f"mean over references: {np.mean(means):.4f} (box-prompted {np.mean(list(box.values())):.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
