import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation.compute_metrics import case_metrics, surface_dice

REPO = Path(__file__).resolve().parent.parent


def square(shape, y0, x0, side):
    m = np.zeros(shape, np.uint8)
    m[y0:y0 + side, x0:x0 + side] = 1
    return m


def test_dice_by_hand():
    gt = square((40, 40), 10, 10, 10)  # 100 px
    seg = square((40, 40), 10, 15, 10)  # 100 px, 50 overlap
    dsc, nsd = case_metrics(gt, seg, None)
    assert dsc == pytest.approx(2 * 50 / 200)
    # a 5 px shift: the facing left/right edges are 5 px apart (beyond the 2 px tolerance) while
    # most of the top/bottom edges and the slab faces of this one-slice volume overlap
    assert 0.2 < nsd < 0.9


def test_identical_and_one_pixel_shift_are_perfect_nsd():
    gt = square((40, 40), 10, 10, 10)
    assert case_metrics(gt, gt, None) == (1.0, 1.0)
    dsc, nsd = case_metrics(gt, square((40, 40), 10, 11, 10), None)
    assert dsc == pytest.approx(0.9) and nsd == 1.0


def test_low_dice_sets_nsd_to_zero_and_labels_are_averaged():
    gt = square((40, 40), 0, 0, 10) + 2 * square((40, 40), 20, 20, 10)
    seg = square((40, 40), 0, 0, 10)  # label 1 perfect, label 2 missing
    dsc, nsd = case_metrics(gt, seg, None)
    assert dsc == pytest.approx(0.5) and nsd == pytest.approx(0.5)
    dsc, nsd = case_metrics(gt, np.zeros_like(gt), None)
    assert dsc == 0.0 and nsd == 0.0


def test_spacing_is_taken_per_array_axis_in_3d():
    gt = np.zeros((10, 20, 20), np.uint8)
    gt[3:7, 5:15, 5:15] = 1
    seg = np.roll(gt, 1, axis=0)
    assert case_metrics(gt, seg, [1.0, 1.0, 1.0])[1] == 1.0
    assert case_metrics(gt, seg, [3.0, 1.0, 1.0])[1] < 1.0
    assert case_metrics(gt, seg, [1.0, 3.0, 3.0])[1] == 1.0


def test_empty_masks_are_handled_without_numpy1_aliases():
    empty = np.zeros((5, 5, 5), bool)
    full = np.ones((5, 5, 5), bool)
    assert math.isnan(surface_dice(empty, empty, [1, 1, 1]))
    assert surface_dice(full, empty, [1, 1, 1]) == 0.0
    assert surface_dice(empty, full, [1, 1, 1]) == 0.0


def test_matches_official_numbers_on_the_baseline_outputs(dev_data, tmp_path):
    out = tmp_path / "m.csv"
    done = subprocess.run([sys.executable, str(REPO / "evaluation" / "compute_metrics.py"),
                           "-s", str(dev_data / "baseline" / "segs"), "-g", str(dev_data / "gts"),
                           "-csv_dir", str(out), "-num_workers", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    ours = {r["case"]: r for r in csv.DictReader(open(out))}
    official = {r["case"]: r for r in csv.DictReader(open(dev_data / "baseline" / "metrics.csv"))}
    assert set(ours) == set(official)
    for case, row in official.items():
        for key in ("dsc", "nsd"):
            assert abs(float(ours[case][key]) - float(row[key])) <= 1e-4, (case, key)
