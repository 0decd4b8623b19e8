"""RECIST lines: the longest diameter a radiologist draws of a lesion on one slice (the 2026 pan-cancer task's
prompt, and every oncology report's). Read from a label volume of lines (the task's ``recist``: lesion k's line
drawn with value k on exactly one slice), or given as end points (``--line x0,y0,x1,y1,z``); checked here, each
problem a CaseError naming the lesion. What a line becomes (a box, where its lesion ends) is decided in
litemedsam.methods.recist."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from litemedsam.core.errors import CaseError, UsageError, shown
from litemedsam.core.limits import MAX_OBJECTS


@dataclass(frozen=True)
class Line:
    """A lesion's line on slice ``z`` from (y0, x0) to (y1, x1), in voxel indices (inclusive end points)."""

    z: int
    start: tuple
    end: tuple

    def length_mm(self, spacing=None) -> float:
        """Its length in mm by the in-plane spacing (z, y, x in mm; None: pixels)."""
        sy, sx = (spacing[1], spacing[2]) if spacing else (1.0, 1.0)
        return float(np.hypot((self.end[0] - self.start[0]) * sy, (self.end[1] - self.start[1]) * sx))

    @property
    def centre(self) -> tuple:
        """(y, x) of its middle."""
        return (self.start[0] + self.end[0]) / 2, (self.start[1] + self.end[1]) / 2


def lines_of(recist: np.ndarray, shape: tuple, spacing=None) -> list[Line]:
    """The lines of a ``recist`` volume (lesion k drawn with value k on one slice), in lesion order 1..N; its end
    points are the two pixels of the drawing farthest apart (in mm with ``spacing``, z, y, x). CaseError for a
    volume of another shape than the image's (``shape``), values that are not 0-255 integers, a lesion value
    with no line (below the largest), a line on two slices or of one pixel, no line at all."""
    if recist.shape != tuple(shape):
        raise CaseError(f"'recist' has shape {recist.shape}, the image {tuple(shape)}: a line volume is the image's "
                        f"shape")
    if not (np.issubdtype(recist.dtype, np.integer) or recist.dtype == np.bool_):
        if recist.dtype.kind != "f" or not np.isfinite(recist).all() or (recist != np.round(recist)).any():
            raise CaseError(f"'recist' must hold lesion numbers (integers 0-255), got {recist.dtype}")
    low, high = (recist.min(initial=0), recist.max(initial=0)) if recist.size else (0, 0)
    if low < 0 or high > 255:
        raise CaseError(f"'recist' holds values from {low:g} to {high:g}; lesion numbers are 1-255 (0: no line)")
    found = [int(v) for v in np.unique(recist) if v]
    if not found:
        raise CaseError("'recist' holds no line (every voxel is 0)")
    missing = sorted(set(range(1, found[-1] + 1)) - set(found))
    if missing:
        raise CaseError(f"lesion {missing[0]} has no line in 'recist' (its values are {', '.join(map(str, found[:10]))}"
                        f"{' ...' if len(found) > 10 else ''}: lesion k is drawn with value k)")
    zs, ys, xs = np.nonzero(recist)  # a line volume is nearly empty: its drawn voxels, grouped by lesion
    values = recist[zs, ys, xs].astype(np.int64)
    order = np.argsort(values, kind="stable")
    zs, ys, xs = zs[order], ys[order], xs[order]
    starts = np.searchsorted(values[order], np.arange(1, found[-1] + 2))
    lines = []
    for k in range(1, found[-1] + 1):
        part = slice(starts[k - 1], starts[k])
        slices = np.unique(zs[part])
        if len(slices) != 1:
            raise CaseError(f"lesion {k}'s line is on {len(slices)} slices ({', '.join(map(str, slices[:5]))}); a "
                            f"RECIST line is drawn on one")
        lines.append(farthest(int(slices[0]), ys[part], xs[part], spacing, f"lesion {k}"))
    return lines


def farthest(z: int, ys: np.ndarray, xs: np.ndarray, spacing, what: str) -> Line:
    """The line between the two pixels (``ys``, ``xs``) farthest apart in mm; CaseError for one pixel."""
    if len(ys) < 2:
        raise CaseError(f"{what}'s line is one pixel on slice {z}: a line has two ends")
    sy, sx = (spacing[1], spacing[2]) if spacing else (1.0, 1.0)
    points = np.stack([ys * sy, xs * sx], axis=1).astype(np.float64)
    if len(points) > 2000:  # a drawing, not a line: its convex hull holds the farthest pair
        import cv2

        hull = cv2.convexHull(points.astype(np.float32), returnPoints=False)[:, 0]
        ys, xs, points = ys[hull], xs[hull], points[hull]
    far = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    a, b = np.unravel_index(int(np.argmax(far)), far.shape)
    if far[a, b] == 0:
        raise CaseError(f"{what}'s line is one pixel on slice {z}: a line has two ends")
    return Line(z, (int(ys[a]), int(xs[a])), (int(ys[b]), int(xs[b])))


def parse_line(text: str, where: str = "--line") -> tuple:
    """'x0,y0,x1,y1,z' -> (x0, y0, x1, y1, z) numbers; UsageError otherwise."""
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) != 5 or not all(np.isfinite(values)):
        raise UsageError(f"{where} {shown(text)!r}: 5 numbers x0,y0,x1,y1,z expected (the line's two ends on slice z, "
                         f"in voxels)")
    return tuple(values)


def given_lines(given, shape: tuple) -> list[Line]:
    """Lines given as end points, ``[[x0, y0, x1, y1, z], ...]`` in voxel indices (x the column, y the row, z the
    slice), lesion k the k-th; CaseError for a line off the image or of no length."""
    rows = np.asarray(given, dtype=np.float64) if len(given) else np.zeros((0, 5))
    if rows.ndim == 1 and rows.size == 5:
        rows = rows[None]
    if rows.ndim != 2 or rows.shape[1] != 5 or not np.isfinite(rows).all():
        raise CaseError(f"lines must be [[x0, y0, x1, y1, z], ...] (finite numbers), got shape {rows.shape}")
    if len(rows) > min(MAX_OBJECTS, 255):
        raise CaseError(f"{len(rows)} lines; a case takes at most 255")
    depth, height, width = shape
    lines = []
    for k, (x0, y0, x1, y1, z) in enumerate(np.rint(rows).astype(np.int64).tolist(), start=1):
        if not (0 <= z < depth and 0 <= min(x0, x1) and max(x0, x1) < width and 0 <= min(y0, y1)
                and max(y0, y1) < height):
            raise CaseError(f"line {k} [{x0}, {y0}, {x1}, {y1}, slice {z}] is off the image ({width} x {height}, "
                            f"{depth} slices)")
        if (x0, y0) == (x1, y1):
            raise CaseError(f"line {k} has both ends at ({x0}, {y0}): a line has two ends")
        lines.append(Line(int(z), (int(y0), int(x0)), (int(y1), int(x1))))
    return lines
