"""The int8 encoder's gate on every dev case, 2D and 3D, through the whole pipeline (3D propagation included):
the float and the int8 encoder (``litemedsam`` and ``litemedsam-int8``) under ``--exact`` and under the router's
options, per modality (2D/3D x modality): per-object Dice between the float and the int8 label maps, DSC and NSD
against the ground truth, and encoder seconds per call.

    python -m benchmarks.bench_int8 [--cases DIR] [--match TEXT] [--save FILE.json]

The gate (issue 24): mean per-object Dice >= 0.98 over all objects, and in every modality the int8 encoder's
mean DSC and NSD no more than 0.3 point below the float encoder's under ``--exact``. Each configuration reuses
the embeddings of its encoder within a case (a slice is encoded once per encoder).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.bench_strategies import MemoEncoder
from evaluation.compute_metrics import case_metrics
from litemedsam.io.formats.challenge import load_case
from litemedsam.core.masks import EXACT
from litemedsam.methods.pipeline import segment_case
from litemedsam.models.registry import dev_data_dir
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import make_segmenter

MIN_DICE = 0.98
MAX_DROP = 0.3  # DSC/NSD points


def object_dice(a: np.ndarray, b: np.ndarray) -> list:
    """Dice of each label present in either map."""
    out = []
    for label in sorted(set(np.unique(a)) | set(np.unique(b)) - {0}):
        x, y = a == label, b == label
        out.append(float(2 * np.logical_and(x, y).sum() / (x.sum() + y.sum())))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--match", default="")
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args(argv)
    router = Router.load()
    segs = {"float": make_segmenter("litemedsam"), "int8": make_segmenter("litemedsam-int8")}
    records = []
    for path in [p for p in sorted((args.cases / "imgs").glob("*.npz")) if args.match in p.name]:
        case = load_case(path)
        with np.load(args.cases / "gts" / path.name) as npz:
            gts = npz["gts"]
            spacing = npz["spacing"] if case.dim == "3D" else None  # 2D is scored in pixels
        memo = {k: MemoEncoder(s) for k, s in segs.items()}
        record = {"case": path.name, "group": None, "scores": {}, "dice": {}}
        for mode in ("exact", "router"):
            d = router.decide(path.name, dim=case.dim, exact=mode == "exact")
            record["group"] = f"{case.dim} {d.modality}"
            outs = {}
            for key in ("float", "int8") if len(records) % 2 else ("int8", "float"):  # alternate which runs first
                policy = EXACT if mode == "exact" else d.propagation.policy
                outs[key] = segment_case(memo[key], case, replace(d.propagation, policy=policy))
                record["scores"][f"{mode} {key}"] = [float(v) for v in case_metrics(gts, outs[key], spacing)]
            record["dice"][mode] = object_dice(outs["float"], outs["int8"])
        record["encode_s"] = {k: m.encode_seconds / max(1, len(m.memo)) for k, m in memo.items()}
        records.append(record)
        s = record["scores"]
        print(f"{path.name[:60]:60s} objects {np.mean(record['dice']['exact']):.3f} "
              f"exact DSC {100 * s['exact float'][0]:.2f} -> {100 * s['exact int8'][0]:.2f}  "
              f"router {100 * s['router float'][0]:.2f} -> {100 * s['router int8'][0]:.2f}  "
              f"encode {record['encode_s']['float']:.3f} / {record['encode_s']['int8']:.3f} s", flush=True)
        if args.save:
            args.save.write_text(json.dumps(records, indent=1))
    return report(records)


def report(records: list) -> int:
    print("\n| cases | per-object Dice (exact, router) | exact float DSC/NSD | exact int8 DSC/NSD | "
          "router float DSC/NSD | router int8 DSC/NSD | encoder s float/int8 |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for group in sorted({r["group"] for r in records}):
        rs = [r for r in records if r["group"] == group]
        mean = {c: 100 * np.mean([r["scores"][c] for r in rs], axis=0) for c in rs[0]["scores"]}
        dice = {m: np.mean([d for r in rs for d in r["dice"][m]] or [1.0]) for m in ("exact", "router")}
        drop = mean["exact float"] - mean["exact int8"]
        ok &= bool((drop <= MAX_DROP).all())
        enc = np.mean([[r["encode_s"]["float"], r["encode_s"]["int8"]] for r in rs], axis=0)
        print(f"| {group} ({len(rs)}) | {dice['exact']:.3f}, {dice['router']:.3f} | "
              + " | ".join(f"{mean[c][0]:.2f} / {mean[c][1]:.2f}" for c in
                           ("exact float", "exact int8", "router float", "router int8"))
              + f" | {enc[0]:.3f} / {enc[1]:.3f} |" + ("" if (drop <= MAX_DROP).all() else " **drop**"))
    every = [d for r in records for d in r["dice"]["exact"]]
    overall = float(np.mean(every))
    ok &= overall >= MIN_DICE
    print(f"\nper-object Dice, int8 vs float under --exact: mean {overall:.4f} over {len(every)} objects "
          f"(10th percentile {np.percentile(every, 10):.3f}, lowest {min(every):.3f}); gate (>= {MIN_DICE} and no "
          f"modality's DSC/NSD more than {MAX_DROP} below float): {'PASSES' if ok else 'FAILS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
