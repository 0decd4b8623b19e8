"""What a clinician reads off a segmentation, per object: its size (voxels, mL), the intensities inside it (mean,
min, max: Hounsfield units of a CT read from its file) and, on the slice where it is longest, its longest
diameter and the longest extent across it (RECIST's long and short axes), in mm where the spacing is known
(pixels otherwise)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

COLUMNS = ("label", "name", "voxels", "ml", "mean", "min", "max", "long_mm", "short_mm", "slice")


def diameters(mask: np.ndarray, pixel_mm=(1.0, 1.0)) -> tuple[float, float]:
    """(longest diameter, extent across it) of a 2D mask: the longest distance between two of its pixels' centres
    (on its convex hull), and the distance between the two lines along that diameter that enclose it, in the units
    of ``pixel_mm`` (row, column size); (0, 0) for an empty mask."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return 0.0, 0.0
    points = np.stack([cols * pixel_mm[1], rows * pixel_mm[0]], 1).astype(np.float32)
    hull = cv2.convexHull(points).reshape(-1, 2).astype(np.float64)
    apart = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    i, j = np.unravel_index(int(apart.argmax()), apart.shape)
    longest = float(apart[i, j])
    if longest == 0:
        return 0.0, 0.0
    across = np.array([-(hull[j] - hull[i])[1], (hull[j] - hull[i])[0]]) / longest
    side = hull @ across
    return longest, float(side.max() - side.min())


def measure(labels: np.ndarray, values: np.ndarray, spacing=None, names: dict | None = None) -> list[dict]:
    """The measurements of each object of ``labels`` (a 2D or 3D label map) over ``values`` (the same shape, the
    intensities reported), ``spacing`` z, y, x in mm (2D: y, x; None: pixels), ``names`` label -> its name."""
    volume = labels if labels.ndim == 3 else labels[None]
    grey = values if values.ndim == volume.ndim else values[None]
    mm = tuple(spacing) if spacing is not None else None
    pixel = mm[-2:] if mm else (1.0, 1.0)
    voxel_ml = float(np.prod(mm)) / 1000 if mm and labels.ndim == 3 else None
    from scipy import ndimage  # here, not at import: as litemedsam.methods.refine

    found = []
    for label, box in enumerate(ndimage.find_objects(volume), start=1):
        if box is None:
            continue
        inside = volume[box] == label
        v = grey[box][inside].astype(np.float64)
        best = (0.0, 0.0, -1)
        for z in np.flatnonzero(inside.any(axis=(1, 2))).tolist():
            long, short = diameters(inside[z], pixel)
            if long > best[0]:
                best = (long, short, z)
        found.append({"label": label, "name": (names or {}).get(label, {}).get("name", ""), "voxels": int(inside.sum()),
                      "ml": round(int(inside.sum()) * voxel_ml, 3) if voxel_ml else None,
                      "mean": round(float(v.mean()), 2), "min": round(float(v.min()), 2),
                      "max": round(float(v.max()), 2),
                      "long_mm": round(best[0], 2), "short_mm": round(best[1], 2),
                      "slice": best[2] + box[0].start if labels.ndim == 3 else None})
    return found


def measurements_file(target: Path) -> Path:
    """Where the objects' measurements of an output are written: beside it, ``<output name>.measurements.csv``."""
    return target.with_name(target.name + ".measurements.csv")


def to_csv(rows: list[dict]) -> str:
    """The rows as CSV; text that a spreadsheet would run as a formula is kept as text (``cell``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(row[k]) for k in COLUMNS})
    return out.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP's CSV injection: what a spreadsheet reads as a formula


def cell(value):
    """A CSV cell: None empty, numbers as they are, text starting as a formula does prefixed with ' (OWASP's rule:
    shown as text by Excel, LibreOffice and Google Sheets, never run)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
