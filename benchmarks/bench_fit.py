"""Fine-tuning the decoder on a modality's other dev cases, judged on the one left out (issue 49's evidence).

    python -m benchmarks.bench_fit [--modalities OCT,Fundus,XRay] [--epochs 20] [--lr 1e-4] [--seed 0]

For each 2D dev modality with >= 2 cases: leave each case out in turn, fit LiteMedSAM's prompt encoder and mask
decoder on the others (export/fit.py: the image encoder frozen, each image encoded once, jittered boxes, Dice +
BCE), and score the left-out case's masks (as infer makes them from its boxes) with the base and the fitted
decoder. Prints per case base -> fitted Dice, seconds per fit, peak memory, then per modality the shipping
rule's verdict (benchmarks/shipping.py: most cases improve, none loses much, the gain survives leaving any one
out). Needs torch (the export extra) and the verified lite_medsam.pth.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main(argv=None) -> int:
    import torch

    from benchmarks.shipping import judge
    from evaluation.compute_metrics import case_metrics
    from export.fit import examples, fit_decoder, labels_of
    from export.litemedsam import load_model
    from litemedsam.models.registry import CHECKPOINTS, dev_data_dir, verified_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modalities", default="OCT,Fundus,XRay,MR,US,Microscopy,Endoscopy,CT")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    dev = dev_data_dir()
    model = load_model(verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch"))
    for modality in args.modalities.split(","):
        paths = sorted((dev / "imgs").glob(f"2DBox_{modality}_*.npz"))
        data = examples(model, paths)
        if len(data) < 2:
            print(f"{modality}: {len(data)} case(s), nothing to leave out")
            continue
        base, fitted, seconds = [], [], []  # (DSC, NSD) per case, points
        for k, held in enumerate(data):
            start = time.perf_counter()
            tuned, losses = fit_decoder(model, data[:k] + data[k + 1:], args.epochs, args.lr, args.seed,
                                        log=lambda line: None)
            seconds.append(time.perf_counter() - start)
            base.append(100 * np.array(case_metrics(held.gts, labels_of(model, held), None)))
            fitted.append(100 * np.array(case_metrics(held.gts, labels_of(tuned, held), None)))
            print(f"  {modality:10s} {held.name[:60]:60s} DSC {base[-1][0]:6.2f} -> {fitted[-1][0]:6.2f}, NSD "
                  f"{base[-1][1]:6.2f} -> {fitted[-1][1]:6.2f}  "
                  f"({seconds[-1]:.0f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f})", flush=True)
        delta = np.array(fitted) - np.array(base)
        verdict = judge(delta[:, 0], delta[:, 1])
        print(f"{modality}: {len(data)} cases, mean DSC {np.mean(base, 0)[0]:.2f} -> {np.mean(fitted, 0)[0]:.2f}, NSD "
              f"{np.mean(base, 0)[1]:.2f} -> {np.mean(fitted, 0)[1]:.2f} ({np.mean(seconds) / 60:.1f} min a fit); "
              f"shipping rule {'passes' if verdict.passes else 'fails'} {verdict.criteria}", flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
