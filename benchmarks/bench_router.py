"""Per-modality DSC, NSD and seconds of several model/strategy configurations on the dev cases.

    python -m benchmarks.bench_router [--cases DIR] [--out DIR] [--config NAME=MODEL[@STRATEGY] ...] [--match TEXT]

Default configurations: LiteMedSAM float, LiteMedSAM int8 (if built: `litemedsam models quantize
litemedsam --force`), and on 3D volumes LiteMedSAM with multi-view fusion. Cases run in this process
with one session pair per model (seconds per case exclude process start and model loading, which
bench_infer.py measures). Prints one table per configuration pair and writes results.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from evaluation.compute_metrics import agreement, score_file

from litemedsam.io.formats.challenge import load_case, save_segmentation
from litemedsam.methods.pipeline import segment_case
from litemedsam.methods.propagation import Propagation
from litemedsam.models.registry import dev_data_dir, get_model, missing_file
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import Segmenters

DEFAULT = ["float=litemedsam", "int8=litemedsam-int8", "multiview=litemedsam@multiview"]


def built_configs(items: list) -> dict:
    """NAME=MODEL[@STRATEGY] -> {name: (model, strategy or None)} for the models that are built."""
    configs = {}
    for item in items:
        name, _, target = item.partition("=")
        model, _, strategy = target.partition("@")
        if missing_file(get_model(model)):
            print(f"skipping {name}: {model} is not built ({missing_file(get_model(model))})")
            continue
        configs[name] = (model, strategy or None)
    return configs


def print_table(rows: list, names: list) -> None:
    """Mean DSC, NSD and seconds per dimension, modality and configuration."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["dim"], r["modality"], r["config"])].append(r)
    print("\n| dim | modality | n | " + " | ".join(f"{n} DSC | {n} NSD | {n} s" for n in names) + " |")
    print("|" + "---|" * (3 + 3 * len(names)))
    keys = sorted({(d, m) for d, m, _ in groups}, key=lambda k: (k[0], k[1] or ""))
    for dim, modality in keys + [("all", None)]:
        cells, n = [], 0
        for name in names:
            sel = [
                r
                for r in rows
                if r["config"] == name and (dim == "all" or (r["dim"], r["modality"]) == (dim, modality))
            ]
            n = max(n, len(sel))
            if sel:
                cells += [f"{np.mean([r['dsc'] for r in sel]):.4f}", f"{np.mean([r['nsd'] for r in sel]):.4f}",
                          f"{np.sum([r['seconds'] for r in sel]):.1f}"]
            else:
                cells += ["", "", ""]
        print(f"| {dim} | {modality or ''} | {n} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_router")
    parser.add_argument("--config", action="append", default=None, help="NAME=MODEL[@STRATEGY]; repeatable")
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    router = Router.load()
    configs = built_configs(args.config or DEFAULT)
    paths = sorted(p for p in (args.cases / "imgs").glob("*.npz") if args.match in p.name)
    segmenters = Segmenters()
    rows = []
    for path in paths:
        case = load_case(path)
        decision = router.decide(path.name, dim=case.dim)
        for name, (model, strategy) in configs.items():
            if strategy == "multiview" and case.dim != "3D":
                continue
            seg = segmenters.get(model)
            start = time.perf_counter()
            how = decision.propagation
            out = segment_case(seg, case, Propagation(strategy or "propagate", how.margin, how.prompt))
            seconds = time.perf_counter() - start
            target = args.out / name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            save_segmentation(target, out)
            _, dsc, nsd, note = score_file((args.cases / "gts" / path.name, target))
            rows.append({"case": path.name, "dim": case.dim, "modality": decision.modality, "config": name,
                         "dsc": dsc, "nsd": nsd, "seconds": round(seconds, 3), "note": note})
            print(f"{path.name} {name}: DSC {dsc:.4f} NSD {nsd:.4f} {seconds:.2f} s", flush=True)
    # agreement of each configuration with the first one, per case
    first = next(iter(configs), None)
    for r in rows:
        if first and r["config"] != first:
            with np.load(args.out / first / r["case"]) as a, np.load(args.out / r["config"] / r["case"]) as b:
                r["agreement_with_" + first] = round(agreement(a["segs"], b["segs"]), 4)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))

    print_table(rows, list(configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
