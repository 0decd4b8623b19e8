"""Where a case's voxels lie in the patient, as its file says: read once by the case's format
(litemedsam.io.formats), asked by everyone else (clicks measure in mm, the app orients its planes and gives mL).

Axes are the array's: (slices, rows, columns) = (z, y, x) for a volume. A file that places nothing (a 2D image,
a challenge .npz: at most a ``spacing``) has no affine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_MM, MAX_MM = 1e-6, 1e6  # a spacing a voxel may have: a nanometre to a kilometre (5e-324 mm made clicks fail)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def usable_spacing(mm) -> bool:
    """Whether numbers given as a spacing are one: finite, in mm from MIN_MM to MAX_MM."""
    return all(np.isfinite(v) and MIN_MM <= v <= MAX_MM for v in mm)


@dataclass(frozen=True)
class Geometry:
    spacing: tuple | None = None  # mm between slices, rows and columns (z, y, x); None where the file gives none
    affine: np.ndarray | None = field(default=None, compare=False)  # (column, row, slice) index -> patient RAS mm
    source: Any = field(default=None, compare=False, repr=False)  # what the format writes the labels back with

    @classmethod
    def of(cls, spacing_xyz=None, affine=None, source=None) -> "Geometry":
        """A geometry from what a file lists (spacing as files do: columns, rows, slices); a spacing that is not
        3 usable numbers is none (voxels taken as cubes)."""
        mm = None
        try:
            values = [float(v) for v in spacing_xyz] if spacing_xyz is not None else []
            mm = tuple(values[::-1]) if len(values) == 3 and usable_spacing(values) else None
        except (TypeError, ValueError):
            pass
        return cls(mm, None if affine is None else np.asarray(affine, float), source)

    @classmethod
    def of_itk(cls, origin, spacing, direction, source=None) -> "Geometry":
        """From ITK's origin, spacing and direction cosines (LPS, columns of the 3 x 3 row-major ``direction``)."""
        lps = np.eye(4)
        lps[:3, :3] = np.asarray(direction, float).reshape(3, 3) * np.asarray(spacing, float)
        lps[:3, 3] = origin
        return cls.of(spacing, LPS_TO_RAS @ lps, source)

    @property
    def axes(self) -> tuple | None:
        """Where slices, rows and columns run in the patient, as the letters of their increasing index (e.g. ("S",
        "A", "R")); None where the file places nothing."""
        if self.affine is None:
            return None
        from nibabel.orientations import aff2axcodes  # nibabel takes 0.3 s to import: only when a case is placed

        try:
            codes = tuple(aff2axcodes(self.affine))[::-1]
        except (ValueError, np.linalg.LinAlgError):
            return None
        return None if None in codes else codes

    def placed_like(self, other: "Geometry") -> bool:
        """Whether ``other`` (a label file's) puts its voxels where this one does (the same affine, to a thousandth
        of a mm); True where either places nothing."""
        if self.affine is None or other.affine is None:
            return True
        return bool(np.allclose(self.affine, other.affine, 1e-4, 1e-3))
