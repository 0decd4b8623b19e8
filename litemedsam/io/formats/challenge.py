"""The challenge .npz case, the one format that carries its own boxes (boxes given on the command line are for
formats that carry none): the 2024 layout (``imgs``, ``boxes`` Nx4 or Nx6, ``spacing``) and the 2025 one, whose
``boxes`` are dicts (litemedsam.io.records reads them without pickle's loader); ``segs`` written back."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError
from litemedsam.core.safeio import atomic_file
from litemedsam.io.cases import Case, make_case
from litemedsam.io.geometry import MAX_MM, MIN_MM, Geometry, usable_spacing
from litemedsam.io.lines import lines_of
from litemedsam.io.npz import array_headers, read_npz

RECORD_KEYS = ("z_min", "z_max", "z_mid", "z_mid_x_min", "z_mid_y_min", "z_mid_x_max", "z_mid_y_max")
CLICK_KEYS = ("clicks", "clicks_order", "prev_pred")  # the 2025 layout's refinement inputs (check_clicks)


def boxes_from_records(records: list) -> tuple[np.ndarray, list]:
    """The 2025 layout's box dicts -> (N, 6) boxes [x0, y0, z_min, x1, y1, z_max] (the 2D box is the one given
    on slice z_mid) and the z_mid of each, where its propagation starts."""
    rows, starts = [], []
    for i, r in enumerate(records, 1):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise CaseError(f"box {i} of 'boxes' lacks {', '.join(missing)} (the 2025 layout has "
                            f"{', '.join(RECORD_KEYS)})")
        rows.append([r["z_mid_x_min"], r["z_mid_y_min"], r["z_min"], r["z_mid_x_max"], r["z_mid_y_max"], r["z_max"]])
        starts.append(r["z_mid"])
    return np.array(rows, dtype=np.float64).reshape(-1, 6), starts


def load_case(path: Path, require_boxes: bool = True) -> Case:
    """Read and validate a challenge .npz case (the 2024 layout, or the 2025 one whose ``boxes`` are dicts);
    raises CaseError with a readable reason. ``require_boxes`` False (prompt-free modes): a case without
    ``boxes`` has none."""
    path = Path(path)
    arrays = read_npz(path, ("imgs",), ("boxes", "spacing", "recist") + CLICK_KEYS,
                      records=("boxes", "clicks", "clicks_order"))
    if "recist" in arrays:
        return _recist_case(path, arrays)
    # the 2025 layout's box-free cases have clicks
    if require_boxes and "boxes" not in arrays and "clicks" not in arrays:
        found = ", ".join(sorted(k for k in arrays["__members__"]))
        raise CaseError(f"missing array(s) boxes (or recist: lines); found: {found}")
    image = arrays["imgs"]
    raw_boxes = arrays.get("boxes", np.zeros((0, 4 if image.ndim == 2 or image.shape[-1] == 3 else 6)))
    starts, notices = None, []
    if isinstance(raw_boxes, list):
        raw_boxes, starts = boxes_from_records(raw_boxes)
        if image.ndim != 3:
            raise CaseError(f"'boxes' are 3D box dicts (the 2025 layout) but 'imgs' has shape {image.shape}, not DxHxW")
    prev = arrays.get("prev_pred")
    check_clicks(arrays, image.shape, None if prev is None else (prev.shape, prev.dtype))
    clicks = ordered_clicks(arrays["clicks"], arrays.get("clicks_order")) if "clicks" in arrays else None
    if prev is not None and clicks is None:
        notices.append("its 'prev_pred' is not used without 'clicks' (the boxes are segmented again)")
        prev = None
    warnings = []
    if prev is not None and clicks is not None:
        prev, stray = known_labels(prev, max(len(clicks), len(raw_boxes)))
        if stray:
            warnings.append(f"its 'prev_pred' holds labels that are none of its {max(len(clicks), len(raw_boxes))} "
                           f"objects ({', '.join(map(str, stray[:5]))}{', ...' if len(stray) > 5 else ''}): taken as "
                           f"background")
    geometry = _geometry(arrays)
    if "spacing" in arrays and geometry.spacing is None and not _plane_spacing(arrays["spacing"]):
        warnings.append(f"its 'spacing' is not 3 numbers of mm from {MIN_MM:g} to {MAX_MM:g}: ignored (voxels taken as "
                       f"cubes)")
    return make_case(path, image, raw_boxes, starts=starts, notices=notices, geometry=geometry, clicks=clicks,
                     prev=prev, warnings=warnings)


def _recist_case(path: Path, arrays: dict) -> Case:
    """The 2026 pan-cancer task's case: ``imgs`` (D, H, W) and ``recist``, lesion k's line drawn with value k on
    one slice (litemedsam.io.lines), no boxes: each lesion's line is its prompt (litemedsam.methods.recist)."""
    if "boxes" in arrays or "clicks" in arrays:
        raise CaseError("it holds both 'recist' lines and 'boxes' or 'clicks': one kind of prompt per case")
    image = arrays["imgs"]
    if image.ndim != 3:
        raise CaseError(f"'recist' lines are for a volume, but 'imgs' has shape {image.shape}, not DxHxW")
    geometry = _geometry(arrays)
    lines = lines_of(arrays["recist"], image.shape, geometry.spacing)
    case = make_case(path, image, np.zeros((0, 6)), dim="3D", geometry=geometry)
    return dataclasses.replace(case, lines=lines)


def known_labels(prev: np.ndarray, count: int) -> tuple[np.ndarray, list]:
    """``prev`` (a previous label map) with its labels outside 1..``count`` (the case's objects; negative, or past
    them) made background, and those labels (sorted)."""
    stray = (prev < 0) | (prev > count) if prev.dtype.kind == "i" else prev > count
    if not stray.any():
        return prev, []
    found = np.unique(prev[stray]).tolist()
    prev = prev.copy()
    prev[stray] = 0
    return prev, found


def _geometry(arrays: dict) -> Geometry:
    """The file's ``spacing`` (column, row, slice in mm, as the challenge lists it) where it is one."""
    mm = arrays.get("spacing")
    return Geometry.of(mm.ravel() if mm is not None and mm.dtype.kind in "iuf" and mm.size == 3 else None)


def _plane_spacing(mm: np.ndarray) -> bool:
    """Whether ``spacing`` is 2 numbers of mm (a 2D image's column and row; not used)."""
    return mm.dtype.kind in "iuf" and mm.size == 2 and usable_spacing(mm.ravel())


def ordered_clicks(clicks: list, orders: list | None) -> list:
    """Per class, its clicks in the order they were made: [("fg" or "bg", (z, y, x)), ...]. ``orders`` (the
    2025 layout's clicks_order: per class "fg"/"bg"/None per step) sets the order; without it, or where it does
    not count the class's clicks, its foreground clicks come first."""
    found = []
    for i, sides in enumerate(clicks):
        order = [kind for kind in (orders[i] if orders is not None and i < len(orders) else []) if kind is not None]
        if sorted(order) != sorted(["fg"] * len(sides.get("fg", [])) + ["bg"] * len(sides.get("bg", []))):
            order = ["fg"] * len(sides.get("fg", [])) + ["bg"] * len(sides.get("bg", []))
        taken = {"fg": iter(sides.get("fg", [])), "bg": iter(sides.get("bg", []))}
        found.append([(kind, tuple(int(v) for v in next(taken[kind]))) for kind in order])
    return found


def check_clicks(arrays: dict, shape: tuple, prev: tuple | None = None) -> None:
    """The 2025 layout's refinement inputs, as its evaluation script writes them: ``clicks`` per class, each
    [z, y, x] inside the image (array indices; a 2D image's z is 0); ``clicks_order`` one list per class;
    ``prev_pred`` (``prev``: its header's shape and dtype) an integer label map of the image's shape. CaseError
    naming what is wrong."""
    volume = shape if len(shape) == 3 and shape[-1] != 3 else (1, *shape[:2])
    clicks, order = arrays.get("clicks"), arrays.get("clicks_order")
    if clicks is not None and not isinstance(clicks, list):
        raise CaseError(f"'clicks' must be an object array of one dict per class ({{'fg': [[z, y, x], ...], 'bg': "
                        f"[...]}}), got a {clicks.dtype} array of shape {clicks.shape}")
    if order is not None and not isinstance(order, list) and not (
            order.dtype.kind == "U" and order.ndim == 2 and set(np.unique(order).tolist()) <= {"fg", "bg", ""}):
        raise CaseError(f"'clicks_order' must list 'fg', 'bg' or None per class, got a {order.dtype} array of "
                        f"shape {order.shape}")
    for i, cls in enumerate(clicks or []):
        for side, points in cls.items():
            outside = [p for p in points if not all(v < n for v, n in zip(p, volume))]
            if outside:
                raise CaseError(f"'clicks' item {i}: '{side}' click {list(outside[0])} is outside the image "
                                f"({' x '.join(map(str, volume))}, [z, y, x])")
    if "clicks_order" in arrays and "clicks" in arrays and len(arrays["clicks_order"]) != len(arrays["clicks"]):
        raise CaseError(f"'clicks_order' has {len(arrays['clicks_order'])} classes, 'clicks' {len(arrays['clicks'])}")
    if prev is not None:
        labels, (found, dtype) = volume if len(shape) == 3 and shape[-1] != 3 else shape[:2], prev
        if tuple(found) != tuple(labels) or not (np.issubdtype(dtype, np.integer) or dtype == np.bool_):
            raise CaseError(f"'prev_pred' must be an integer label map of the image's shape {tuple(labels)}, got "
                            f"{dtype} {tuple(found)}")


def read_case(path: Path, require_boxes: bool = True) -> Case:
    return load_case(path, require_boxes=require_boxes)


def label_shape(path: Path) -> tuple:
    """The label map's shape from the header of ``imgs`` (nothing decompressed): a volume's, or a 2D image's
    without its colour."""
    shape = tuple(array_headers(path, ("imgs",))["imgs"][0])
    return shape if len(shape) == 3 and shape[-1] != 3 else shape[:2]


def read_labels(path: Path) -> tuple:
    arrays = read_npz(path, (), ("gts", "segs"))
    for key in ("gts", "segs"):
        if key in arrays:
            return arrays[key], Geometry()
    raise CaseError("no 'gts' or 'segs' label array in it")


def write(segs: np.ndarray, geometry: Geometry, target: Path) -> None:
    save_segmentation(target, segs)


def save_segmentation(path: Path, segs: np.ndarray) -> None:
    """Write ``segs`` to ``path`` atomically (litemedsam.core.safeio); OutputError names the file on failure."""
    with atomic_file(path) as handle:
        np.savez_compressed(handle, segs=segs)
