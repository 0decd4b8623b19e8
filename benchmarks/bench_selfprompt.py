"""DSC of self-prompting heads fitted on k labelled cases, on other cases of the same kind.

    python -m benchmarks.bench_selfprompt [--cases DIR] [--match Kvasir] [--train 5] [--k 1 3 5]

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

from benchmarks.labelled import DEV, box_prompted, dice, labelled_cases
from litemedsam.models.segmenter import make_segmenter
from litemedsam.methods.selfprompt import fit_logistic, save_head, segment_embedded, training_pixels
from litemedsam.models.session import make_session

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=DEV)
    parser.add_argument("--match", default="Kvasir")
    parser.add_argument("--train", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_selfprompt")
    args = parser.parse_args()
    labelled = labelled_cases(args.cases, args.match)
    names = list(labelled)
    pool, test = names[:args.train], names[args.train:]
    cases = {n: case for n, (case, _) in labelled.items()}
    gts = {n: gt for n, (_, gt) in labelled.items()}
    seg = make_segmenter("litemedsam")
    box = list(box_prompted(seg, labelled, test).values())
    print(
        f"{len(pool)} fitting pool, {len(test)} scored ({args.match}); box-prompted LiteMedSAM DSC {np.mean(box):.4f}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    print("| k | fit s | head coarse DSC | self point DSC | self box DSC | self point+box DSC | box-prompted DSC |")
    print("|---|---|---|---|---|---|---|")
    pixels, embeddings = {}, {}  # each image is encoded once for all k and prompts
    for k in args.k:
        for n in pool[:k]:
            pixels.setdefault(n, training_pixels(seg, cases[n].image, gts[n]))
        start = time.perf_counter()  # the fit alone (encoding is ~1 s per image on top)
        xs, ys = zip(*(pixels[n] for n in pool[:k]))
        w, b = fit_logistic(np.concatenate(xs), np.concatenate(ys))
        head_path = args.out / f"head_k{k}.onnx"
        save_head(head_path, w, b, {"model": "litemedsam", "k": k})
        fit_s = time.perf_counter() - start
        head = make_session(head_path)
        scores = {"coarse": [], "point": [], "box": [], "point+box": []}
        for n in test:
            emb = embeddings.setdefault(n, seg.encode(cases[n].image))
            for prompt in ("point", "box", "point+box"):
                out, coarse = segment_embedded(seg, head, emb, prompt)
                scores[prompt].append(dice(out, gts[n]))
            scores["coarse"].append(dice(coarse, gts[n]))
        m = {key: np.mean(v) for key, v in scores.items()}
        print(
            f"| {k} | {fit_s:.1f} | {m['coarse']:.4f} | {m['point']:.4f} | {m['box']:.4f} | {m['point+box']:.4f} | "
            f"{np.mean(box):.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
