"""The router's faster 3D options against exact propagation, per modality of the dev 3D cases: mean DSC, NSD and
seconds of each configuration, and whether it passes the shipping rule (DSC and NSD each within 0.5 point
of exact on that modality's cases).

    python -m benchmarks.bench_3d [--cases DIR] [--config stride:2 stop:2 stride:2,stop:2 ...] [--match TEXT]

Each configuration runs every case in this process with one LiteMedSAM segmenter (one case, then the next
configuration on it: interleaved, so that the machine's noise falls on all of them alike).
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from evaluation.compute_metrics import case_metrics
from litemedsam.cases import load_case
from litemedsam.pipeline import segment_3d
from litemedsam.registry import dev_data_dir
from litemedsam.router import Router
from litemedsam.segmenter import make_segmenter

GATE = 0.5  # points of DSC and of NSD


def parse(config: str) -> dict:
    options = {"stride": 1, "stop": 0}
    for part in filter(None, config.split(",")):
        if part != "exact":
            key, _, value = part.partition(":")
            options[key] = int(value)
    return options


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--config", nargs="+", default=["stop:2", "stride:2", "stride:3"])
    parser.add_argument("--match", default="")
    args = parser.parse_args(argv)
    configs = ["exact", *args.config]
    router = Router.load()
    seg = make_segmenter("litemedsam")
    rows = defaultdict(list)  # (modality, config) -> [(dsc, nsd, seconds)]
    for path in sorted((args.cases / "imgs").glob("3DBox_*.npz")):
        if args.match not in path.name:
            continue
        case = load_case(path)
        decision = router.decide(path.name, dim="3D", exact=True)
        with np.load(args.cases / "gts" / path.name) as npz:
            gts, spacing = npz["gts"], npz["spacing"]
        line = [path.name[:60]]
        for config in configs:
            start = time.perf_counter()
            segs = segment_3d(seg, case.image, case.boxes, case.skipped, decision.margin, **parse(config))
            seconds = time.perf_counter() - start
            dsc, nsd = case_metrics(gts, segs, spacing)
            rows[decision.modality, config].append((dsc, nsd, seconds))
            line.append(f"{config} {dsc:.4f}/{nsd:.4f} {seconds:.1f}s")
        print("  ".join(line), flush=True)
    print(f"\n| modality | cases | configuration | DSC | NSD | seconds | vs exact: DSC, NSD, time | passes (+-{GATE} pt) |")
    print("|---|---|---|---|---|---|---|---|")
    for modality in sorted({m for m, _ in rows}):
        exact = np.array(rows[modality, "exact"])
        for config in configs:
            r = np.array(rows[modality, config])
            d_dsc, d_nsd = 100 * (r[:, 0].mean() - exact[:, 0].mean()), 100 * (r[:, 1].mean() - exact[:, 1].mean())
            passes = "" if config == "exact" else ("yes" if d_dsc >= -GATE and d_nsd >= -GATE else "no")
            print(f"| {modality} | {len(r)} | {config} | {100 * r[:, 0].mean():.2f} | {100 * r[:, 1].mean():.2f} | "
                  f"{r[:, 2].sum():.1f} | {d_dsc:+.2f}, {d_nsd:+.2f}, x{r[:, 2].sum() / exact[:, 2].sum():.2f} | {passes} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
