"""DSC of self-prompting heads fitted on k labelled cases, on other cases of the same kind.

    python benchmarks/bench_selfprompt.py [--cases DIR] [--match Kvasir] [--train 5] [--k 1 3 5]

The first --train cases (sorted by name) whose name contains --match are the pool the k fitting
cases come from (the first k); the remaining ones are scored. For each k: DSC of the head's coarse
mask, of LiteMedSAM prompted by it (point, box, point + box), and of LiteMedSAM prompted with the
cases' own boxes (the usual box-prompted result, for reference).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from litemedsam.cases import load_case  # noqa: E402
from litemedsam.pipeline import segment_2d  # noqa: E402
from litemedsam.segmenter import make_segmenter  # noqa: E402
from litemedsam.selfprompt import fit_logistic, save_head, segment_self, training_pixels  # noqa: E402
from litemedsam.session import make_session  # noqa: E402


def dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * (a & b).sum() / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=REPO.parent / "shared" / "data" / "cvpr24-dev")
    parser.add_argument("--match", default="Kvasir")
    parser.add_argument("--train", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_selfprompt")
    args = parser.parse_args()
    files = sorted(p for p in (args.cases / "imgs").glob("2DBox_*.npz") if args.match in p.name)
    pool, test = files[:args.train], files[args.train:]
    seg = make_segmenter("litemedsam")
    gts = {p.name: np.load(args.cases / "gts" / p.name)["gts"] > 0 for p in files}
    cases = {p.name: load_case(p) for p in files}
    box = [dice(segment_2d(seg, cases[p.name].image, cases[p.name].boxes) > 0, gts[p.name]) for p in test]
    print(f"{len(pool)} fitting pool, {len(test)} scored ({args.match}); box-prompted LiteMedSAM DSC {np.mean(box):.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    print("| k | fit s | head coarse DSC | self point DSC | self box DSC | self point+box DSC | box-prompted DSC |")
    print("|---|---|---|---|---|---|---|")
    for k in args.k:
        start = time.perf_counter()
        xs, ys = zip(*(training_pixels(seg, cases[p.name].image, gts[p.name]) for p in pool[:k]))
        w, b = fit_logistic(np.concatenate(xs), np.concatenate(ys))
        head_path = args.out / f"head_k{k}.onnx"
        save_head(head_path, w, b, {"model": "litemedsam", "k": k})
        fit_s = time.perf_counter() - start
        head = make_session(head_path)
        scores = {"coarse": [], "point": [], "box": [], "point+box": []}
        for p in test:
            for prompt in ("point", "box", "point+box"):
                out, coarse = segment_self(seg, head, cases[p.name].image, prompt)
                scores[prompt].append(dice(out > 0, gts[p.name]))
            scores["coarse"].append(dice(coarse > 0, gts[p.name]))
        m = {key: np.mean(v) for key, v in scores.items()}
        print(f"| {k} | {fit_s:.1f} | {m['coarse']:.4f} | {m['point']:.4f} | {m['box']:.4f} | {m['point+box']:.4f} | {np.mean(box):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
