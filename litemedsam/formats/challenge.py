"""The challenge .npz (2024 layout, and the 2025 one with dict boxes), read by litemedsam.cases; it carries its
own boxes (boxes given on the command line are for formats that carry none)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from litemedsam.cases import Case, load_case, save_segmentation
from litemedsam.errors import CaseError
from litemedsam.npz import read_npz


def read(path: Path, inputs=None, require_boxes: bool = True) -> Case:
    return load_case(path, require_boxes=require_boxes)


def read_labels(path: Path) -> np.ndarray:
    arrays = read_npz(path, (), ("gts", "segs"))
    for key in ("gts", "segs"):
        if key in arrays:
            return arrays[key]
    raise CaseError("no 'gts' or 'segs' label array in it")


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    save_segmentation(target, segs)
