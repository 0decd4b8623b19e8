"""Fine-tuning the decoder on a modality's other dev cases, judged on the one left out (issue 49's evidence).

    python -m benchmarks.bench_fit [--modalities OCT,Fundus,XRay] [--dims 2D,3D] [--epochs 20] [--lr 1e-4] [--seed 0]

For each dev modality with >= 2 cases (of ``--dims``; a volume gives some of its labelled slices, held out together
and scored by them, export.fit.labelled_images): leave each case out in turn, fit LiteMedSAM's prompt encoder and
mask decoder on the others (export/fit.py: the image encoder frozen, each image encoded once, jittered boxes, Dice
+ BCE), and score the left-out case's masks (as infer makes them from its boxes) with the base and the fitted
decoder. Prints per case base -> fitted Dice, seconds per fit, peak memory, then per modality the shipping rule's
verdict (benchmarks/shipping.py: most cases improve, none loses much, the gain survives leaving any one out).
Needs torch (the export extra) and the verified lite_medsam.pth.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main(argv=None) -> int:
    import torch

    from benchmarks.shipping import judge
    from export.fit import cases_of, examples, held_out
    from export.litemedsam import load_model
    from litemedsam.models.registry import CHECKPOINTS, dev_data_dir, verified_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", default="OCT,Fundus,XRay,MR,US,Microscopy,Endoscopy,CT")
    parser.add_argument("--dims", default="2D", help="2D, 3D or 2D,3D (a volume: some of its labelled slices)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dev = dev_data_dir()
    model = load_model(verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch"))
    for dim in args.dims.split(","):
        for modality in args.modalities.split(","):
            paths = sorted((dev / "imgs").glob(f"{dim}Box_{modality}_*.npz"))
            data = examples(model, paths)
            n = len(cases_of(data))
            if n < 2:
                print(f"{dim} {modality}: {n} case(s), nothing to leave out")
                continue
            start = time.perf_counter()  # each case left out in turn (export.fit.folds: one per fold up to 10)
            rows = held_out(model, data, args.epochs, args.lr, args.seed, None,
                            log=lambda line: print(f"  {dim} {modality:10s} {line}", flush=True))
            minutes = (time.perf_counter() - start) / 60 / len(rows)
            base, fitted = np.array([r[1:3] for r in rows]), np.array([r[3:5] for r in rows])
            delta = fitted - base
            verdict = judge(delta[:, 0], delta[:, 1])
            print(f"{dim} {modality}: {n} cases, mean DSC {base.mean(0)[0]:.2f} -> {fitted.mean(0)[0]:.2f}, NSD "
                  f"{base.mean(0)[1]:.2f} -> {fitted.mean(0)[1]:.2f} ({minutes:.1f} min a fit); "
                  f"shipping rule {'passes' if verdict.passes else 'fails'} {verdict.criteria}", flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
