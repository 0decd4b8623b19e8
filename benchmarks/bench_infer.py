"""Wall seconds of `litemedsam infer` per case, one fresh process per case (as the challenge times
it: process start and model loading included), interleaved case by case with a reference configuration
in the same run (the ratio is what to read on a shared, noisy machine; the official baseline's stored
times are context only); then DSC/NSD of the outputs and their agreement with the baseline's outputs.

    python -m benchmarks.bench_infer [--cases DIR] [--out DIR] [--match TEXT] [--threads N]
                                     [--against reference|no-cache|none|router:FILE|CHECKOUT]

--against: the reference run after (or, every other case, before) ours on each case: ``reference`` (default:
the reference configuration, i.e. this code with ``--exact`` and without the optimised-graph cache, as every
run was before either), ``no-cache`` (the shipped router, no cache), ``none``, ``router:FILE`` (this code with
``--router FILE`` and the same caches as ours: what a router change costs), or the path of another checkout
of litemedsam (e.g. a git worktree of an older commit), run with ``--exact`` and without caches.

Ours runs with ``--profile``: besides wall seconds it reports, per 2D case, wall minus the encoder's seconds
(process start, imports, model loading, reading, decoding, writing: what a case pays besides the encoder).

DIR defaults to the dev cases ($LITEMEDSAM_DEV_DATA, else ../shared/data/cvpr24-dev: imgs/, gts/, baseline/).
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
from evaluation.compute_metrics import agreement
from litemedsam.models.registry import dev_data_dir


def reference(against: str, exe: list) -> tuple:
    """(command, environment) of the run each case is timed against (--against), environment None for none."""
    ref_env = None if against == "none" else {**os.environ, "LITEMEDSAM_CACHE_DIR": "off"}
    ref_exe = exe + ([] if against == "no-cache" else ["--exact"])
    if against.startswith("router:"):
        ref_env = dict(os.environ)
        ref_exe = exe + ["--router", str(Path(against[len("router:"):]).resolve())]
    elif ref_env is not None and against not in ("reference", "no-cache"):
        ref_env["PYTHONPATH"] = str(Path(against).resolve())
    return ref_exe, ref_env


def print_totals(rows: list) -> None:
    """Seconds in all and per dimension, ours against the reference's and the baseline's."""
    ours_total = sum(r[1] for r in rows)
    ref_total = sum(r[4] for r in rows)
    base_total = sum(r[2] for r in rows if not np.isnan(r[2]))
    print(f"{'TOTAL':70s} {ours_total:8.1f} {ref_total:8.1f} {ours_total / ref_total:6.3f} {base_total:8.1f}")
    for dim in ("2D", "3D"):
        sub = [r for r in rows if r[0].startswith(dim)]
        if sub:
            o, b, r = sum(x[1] for x in sub), sum(x[2] for x in sub), sum(x[4] for x in sub)
            print(f"{dim}: {len(sub)} cases, ours {o:.1f} s, reference {r:.1f} s (ratio {o / r:.3f}, median "
                  f"per case {np.median([x[1] / x[4] for x in sub]):.3f}), baseline {b:.1f} s ({b / o:.1f}x); "
                  f"wall minus encoder: median {np.median([x[1] - x[5] for x in sub]):.3f} s per case")


def print_scores(cases: Path, segs: Path, metrics: Path, names: list) -> None:
    """Mean DSC and NSD of ``segs`` against the cases' gts/, beside the baseline's (cases/baseline/metrics.csv)."""
    gts = cases / "gts"
    if not gts.is_dir():
        return
    subprocess.run([sys.executable, str(REPO / "evaluation" / "compute_metrics.py"), "-s", str(segs),
                    "-g", str(gts), "-csv_dir", str(metrics), "-num_workers", "2"], check=True)
    ours = {r["case"]: r for r in csv.DictReader(open(metrics))}
    base_csv = cases / "baseline" / "metrics.csv"
    if base_csv.is_file():
        base = {r["case"]: r for r in csv.DictReader(open(base_csv))}
        keys = [n for n in names if n in base]
        for key in ("dsc", "nsd"):
            o = np.mean([float(ours[k][key]) for k in keys]) * 100
            b = np.mean([float(base[k][key]) for k in keys]) * 100
            print(f"mean {key.upper()} over {len(keys)} cases: ours {o:.2f}, baseline {b:.2f}, diff {o - b:+.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=dev_data_dir())
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench")
    parser.add_argument("--match", default="", help="only cases whose name contains this")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--against", default="reference", help="reference, no-cache, none, or a checkout's path")
    args = parser.parse_args()
    imgs = args.cases / "imgs" if (args.cases / "imgs").is_dir() else args.cases
    segs = args.out / "segs"
    segs.mkdir(parents=True, exist_ok=True)
    baseline = {}
    if (args.cases / "baseline" / "times.csv").is_file():
        baseline = {r["case"]: float(r["wall_s"]) for r in csv.DictReader(open(args.cases / "baseline" / "times.csv"))}
    exe = [sys.executable, "-m", "litemedsam", "infer"] + (["--threads", str(args.threads)] if args.threads else [])
    ref_exe, ref_env = reference(args.against, exe)
    rows = []
    names = sorted(p.name for p in imgs.glob("*.npz") if args.match in p.name)
    print(f"{'case':70s} {'ours_s':>8s} {'ref_s':>8s} {'ratio':>6s} {'base_s':>8s} {'encode_s':>8s} {'rest_s':>7s}")

    def timed(command, name, out, env=None):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).symlink_to((imgs / name).resolve())
            start = time.perf_counter()
            done = subprocess.run(command + ["-i", tmp, "-o", str(out)], capture_output=True, text=True, cwd=REPO,
                                  env=env)
            return time.perf_counter() - start, done

    for n, name in enumerate(names):
        ref = float("nan")
        if ref_env is not None and n % 2:  # every other case the reference goes first
            ref = timed(ref_exe, name, args.out / "ref", ref_env)[0]
        wall, done = timed(exe + ["--profile"], name, segs)
        if ref_env is not None and not n % 2:
            ref = timed(ref_exe, name, args.out / "ref", ref_env)[0]
        base = baseline.get(name, float("nan"))
        found = re.search(r"encode ([0-9.]+) s", done.stdout)
        encode = float(found.group(1)) if found else float("nan")
        rows.append((name, wall, base, done.returncode, ref, encode))
        flag = "" if done.returncode == 0 else f"  rc={done.returncode} {done.stderr.strip()[-200:]}"
        print(
            f"{name:70s} {wall:8.2f} {ref:8.2f} {wall / ref:6.3f} {base:8.2f} {encode:8.3f} {wall - encode:7.3f}{flag}",
            flush=True,
        )
    print_totals(rows)
    with open(args.out / "times.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "wall_s", "baseline_s", "rc", "reference_s", "encode_s"])
        writer.writerows(rows)

    print_scores(args.cases, segs, args.out / "metrics.csv", names)
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
