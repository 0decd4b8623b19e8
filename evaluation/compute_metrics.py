"""DSC and NSD per case, as the "MedSAM on laptop" challenge scores them.

    python evaluation/compute_metrics.py -s SEGS -g GTS -csv_dir OUT.csv [-num_workers N]

For every ground-truth case: for each label 1..max(gt), the Dice coefficient and the normalised
surface Dice at 2 (mm in 3D with the case's ``spacing`` taken per array axis, as the official
script does; pixels in 2D), averaged over labels and rounded to 4 decimals. NSD is set to 0 when
DSC <= 0.2. A missing segmentation scores 0. Surface distances come from DeepMind's
``surface-distance`` package; the empty-mask cases it only handles with NumPy 1 are decided here.
"""
from __future__ import annotations

import argparse
import csv
import sys
import warnings
from multiprocessing import Pool
from pathlib import Path

import numpy as np
warnings.filterwarnings("ignore", "Please import", DeprecationWarning)  # surface-distance's scipy imports
from surface_distance import compute_dice_coefficient, compute_surface_dice_at_tolerance, compute_surface_distances

TOLERANCE = 2.0


def surface_dice(gt: np.ndarray, seg: np.ndarray, spacing, tolerance: float = TOLERANCE) -> float:
    # surface-distance fills np.Inf (gone in NumPy 2) when one mask is empty: its answer is known
    if not gt.any() and not seg.any():
        return float("nan")
    if not gt.any() or not seg.any():
        return 0.0
    distances = compute_surface_distances(gt, seg, spacing_mm=spacing)
    return float(compute_surface_dice_at_tolerance(distances, tolerance))


def case_metrics(gts: np.ndarray, segs: np.ndarray, spacing) -> tuple[float, float]:
    """Mean DSC and NSD over labels 1..max(gts); 2D arrays are scored as one-slice volumes."""
    if gts.shape != segs.shape:
        raise ValueError(f"segmentation shape {segs.shape} differs from ground truth {gts.shape}")
    if gts.ndim == 2:
        gts, segs, spacing = gts[..., None], segs[..., None], [1.0, 1.0, 1.0]
    dsc = case_dsc(gts, segs)
    if not dsc > 0.2:
        return dsc, 0.0
    nsd = float(np.mean([surface_dice(gts == i, segs == i, spacing) for i in range(1, int(gts.max()) + 1)]))
    return dsc, nsd


def case_dsc(gts: np.ndarray, segs: np.ndarray) -> float:
    """Mean DSC over labels 1..max(gts) (case_metrics's, without the NSD)."""
    return float(np.mean([compute_dice_coefficient(gts == i, segs == i) for i in range(1, int(gts.max()) + 1)]))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the labels present in either label map (1.0 when both are empty): how
    closely two segmentations of the same case agree, e.g. ours and the official script's."""
    scores = []
    for label in range(1, int(max(a.max(), b.max())) + 1):
        x, y = a == label, b == label
        total = int(x.sum()) + int(y.sum())
        if total:
            scores.append(2 * int((x & y).sum()) / total)
    return float(np.mean(scores)) if scores else 1.0


def score_file(args) -> tuple[str, float, float, str]:
    gt_path, seg_path = args
    with np.load(gt_path) as npz:
        gts = npz["gts"]
        spacing = np.asarray(npz["spacing"], dtype=float) if gt_path.name.startswith("3D") else None
    if not seg_path.is_file():
        return gt_path.name, 0.0, 0.0, "segmentation missing: scored 0"
    try:
        with np.load(seg_path) as npz:
            segs = npz["segs"]
        dsc, nsd = case_metrics(gts, segs, spacing)
    except Exception as e:  # an unreadable or malformed segmentation scores 0, with the reason
        return gt_path.name, 0.0, 0.0, f"{type(e).__name__}: {e}: scored 0"
    return gt_path.name, round(dsc, 4), round(nsd, 4), ""


def compute(seg_dir: Path, gt_dir: Path, workers: int = 1) -> list[tuple[str, float, float, str]]:
    jobs = [(p, seg_dir / p.name) for p in sorted(gt_dir.glob("*.npz"))]
    if workers > 1:
        with Pool(workers) as pool:
            rows = pool.map(score_file, jobs)
    else:
        rows = [score_file(j) for j in jobs]
    return sorted(rows)


def write_csv(rows, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "dsc", "nsd"])
        for case, dsc, nsd, _ in rows:
            writer.writerow([case, dsc, nsd])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--seg_dir", required=True, type=Path)
    parser.add_argument("-g", "--gt_dir", required=True, type=Path)
    parser.add_argument("-csv_dir", "--csv", dest="csv", required=True, type=Path, help="output CSV file")
    parser.add_argument("-num_workers", "--num_workers", type=int, default=1)
    args = parser.parse_args(argv)
    for folder in (args.seg_dir, args.gt_dir):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
    rows = compute(args.seg_dir, args.gt_dir, args.num_workers)
    if not rows:
        print(f"error: no .npz ground truths in {args.gt_dir}", file=sys.stderr)
        return 2
    for case, _, _, note in rows:
        if note:
            print(f"warning: {case}: {note}", file=sys.stderr)
    write_csv(rows, args.csv)
    dsc = np.nanmean([r[1] for r in rows]) * 100
    nsd = np.nanmean([r[2] for r in rows]) * 100
    print(f"{len(rows)} cases: mean DSC {dsc:.2f}, mean NSD {nsd:.2f} -> {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
