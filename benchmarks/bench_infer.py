"""Wall seconds of `litemedsam infer` per case, one fresh process per case (as the challenge times
it: process start and model loading included), next to the official baseline's times; then DSC/NSD
of the outputs and their agreement with the baseline's outputs.

    python -m benchmarks.bench_infer [--cases DIR] [--out DIR] [--match TEXT] [--threads N]

DIR defaults to the dev cases ($LITEMEDSAM_DEV_DATA, else ../shared/data/cvpr24-dev: imgs/, gts/, baseline/).
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from evaluation.compute_metrics import agreement
from litemedsam.registry import dev_data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench")
    parser.add_argument("--match", default="", help="only cases whose name contains this")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    imgs = args.cases / "imgs" if (args.cases / "imgs").is_dir() else args.cases
    segs = args.out / "segs"
    segs.mkdir(parents=True, exist_ok=True)
    baseline = {}
    if (args.cases / "baseline" / "times.csv").is_file():
        baseline = {r["case"]: float(r["wall_s"]) for r in csv.DictReader(open(args.cases / "baseline" / "times.csv"))}
    exe = [sys.executable, "-m", "litemedsam", "infer"] + (["--threads", str(args.threads)] if args.threads else [])
    rows = []
    names = sorted(p.name for p in imgs.glob("*.npz") if args.match in p.name)
    print(f"{'case':70s} {'ours_s':>8s} {'base_s':>8s} {'speedup':>8s}")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).symlink_to((imgs / name).resolve())
            start = time.perf_counter()
            done = subprocess.run(exe + ["-i", tmp, "-o", str(segs)], capture_output=True, text=True, cwd=REPO)
            wall = time.perf_counter() - start
        base = baseline.get(name, float("nan"))
        rows.append((name, wall, base, done.returncode))
        flag = "" if done.returncode == 0 else f"  rc={done.returncode} {done.stderr.strip()[-200:]}"
        print(f"{name:70s} {wall:8.2f} {base:8.2f} {base / wall:8.1f}{flag}", flush=True)
    ours_total = sum(r[1] for r in rows)
    base_total = sum(r[2] for r in rows if not np.isnan(r[2]))
    print(f"{'TOTAL':70s} {ours_total:8.1f} {base_total:8.1f} {base_total / ours_total:8.1f}")
    for dim in ("2D", "3D"):
        sub = [r for r in rows if r[0].startswith(dim)]
        if sub:
            o, b = sum(r[1] for r in sub), sum(r[2] for r in sub)
            print(f"{dim}: {len(sub)} cases, ours {o:.1f} s, baseline {b:.1f} s, {b / o:.1f}x")
    with open(args.out / "times.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "wall_s", "baseline_s", "rc"])
        writer.writerows(rows)

    gts = args.cases / "gts"
    if gts.is_dir():
        metrics = args.out / "metrics.csv"
        subprocess.run([sys.executable, str(REPO / "evaluation" / "compute_metrics.py"), "-s", str(segs),
                        "-g", str(gts), "-csv_dir", str(metrics), "-num_workers", "2"], check=True)
        ours = {r["case"]: r for r in csv.DictReader(open(metrics))}
        base_csv = args.cases / "baseline" / "metrics.csv"
        if base_csv.is_file():
            base = {r["case"]: r for r in csv.DictReader(open(base_csv))}
            keys = [n for n in names if n in base]
            for key in ("dsc", "nsd"):
                o = np.mean([float(ours[k][key]) for k in keys]) * 100
                b = np.mean([float(base[k][key]) for k in keys]) * 100
                print(f"mean {key.upper()} over {len(keys)} cases: ours {o:.2f}, baseline {b:.2f}, diff {o - b:+.2f}")
    base_segs = args.cases / "baseline" / "segs"
    if base_segs.is_dir():
        agree = {n: agreement(np.load(segs / n)["segs"], np.load(base_segs / n)["segs"])
                 for n in names if (base_segs / n).is_file() and (segs / n).is_file()}
        if agree:
            worst = min(agree, key=agree.get)
            print(f"agreement with baseline outputs: mean Dice {np.mean(list(agree.values())):.4f} over {len(agree)} "
                  f"cases, {sum(v == 1.0 for v in agree.values())} identical, lowest {agree[worst]:.4f} ({worst})")
    return 0 if all(r[3] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
