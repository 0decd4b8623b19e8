"""The challenge .npz case, the one format that carries its own boxes (boxes given on the command line are for
formats that carry none): the 2024 layout (``imgs``, ``boxes`` Nx4 or Nx6, ``spacing``) and the 2025 one, whose
``boxes`` are dicts (litemedsam.io.records reads them without pickle's loader); ``segs`` written back."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError
from litemedsam.core.safeio import atomic_file
from litemedsam.io.cases import Case, make_case
from litemedsam.io.npz import read_npz

RECORD_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")
IGNORED_2025 = ("clicks", "clicks_order", "prev_pred")




def boxes_from_records(records: list) -> tuple[np.ndarray, list]:
    """The 2025 layout's box dicts -> (N, 6) boxes [x0, y0, z_min, x1, y1, z_max] (the 2D box is the one given
    on slice z_mid) and the z_mid of each, where its propagation starts."""
    rows, starts = [], []
    for i, r in enumerate(records, 1):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise CaseError(f"box {i} of 'boxes' lacks {', '.join(missing)} (the 2025 layout has {', '.join(RECORD_KEYS)})")
        rows.append([r["z_mid_x_min"], r["z_mid_y_min"], r["z_min"], r["z_mid_x_max"], r["z_mid_y_max"], r["z_max"]])
        starts.append(r["z_mid"])
    return np.array(rows, dtype=np.float64).reshape(-1, 6), starts


def load_case(path: Path, require_boxes: bool = True) -> Case:
    """Read and validate a challenge .npz case (the 2024 layout, or the 2025 one whose ``boxes`` are dicts);
    raises CaseError with a readable reason. ``require_boxes`` False (prompt-free modes): a case without
    ``boxes`` has none."""
    path = Path(path)
    arrays = read_npz(path, ("imgs", "boxes") if require_boxes else ("imgs",), () if require_boxes else ("boxes",),
                      records=("boxes",))
    image = arrays["imgs"]
    raw_boxes = arrays.get("boxes", np.zeros((0, 4)))
    starts, notices = None, []
    if isinstance(raw_boxes, list):
        raw_boxes, starts = boxes_from_records(raw_boxes)
        if image.ndim != 3:
            raise CaseError(f"'boxes' are 3D box dicts (the 2025 layout) but 'imgs' has shape {image.shape}, not DxHxW")
    ignored = [k for k in IGNORED_2025 if k in arrays["__members__"]]
    if ignored:
        notices.append(f"{', '.join(ignored)} of the 2025 layout are ignored: the box models take boxes only")
    return make_case(path, image, raw_boxes, starts=starts, notices=notices)


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


def save_segmentation(path: Path, segs: np.ndarray) -> None:
    """Write ``segs`` to ``path`` atomically (litemedsam.core.safeio); OutputError names the file on failure."""
    with atomic_file(path) as handle:
        np.savez_compressed(handle, segs=segs)
