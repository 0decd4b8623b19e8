"""The manual tools of the interactive core, as functions of a label map that say what an edit would set: each
returns the flat indices of the voxels to change (and the label map's owner applies them as one undoable edit:
litemedsam.serve.labelmap.LabelMap.apply). A 2D image is its own one cut; a volume's cut ``k`` of ``plane`` is a
slice ("z"), a row across the slices ("y") or a column across them ("x")."""
from __future__ import annotations

import cv2
import numpy as np

from litemedsam.core.errors import CaseError
from litemedsam.core.masks import fill_holes, keep_component
from litemedsam.io import formats


def voxel_of(plane: str, index, row, column) -> tuple:
    """The voxel (z, y, x) of pixel (row, column) of the cut ``index`` of ``plane`` (numbers or arrays of them):
    the plane's fixed index put back among the other two."""
    at = [row, column]
    at.insert("zyx".index(plane), index)
    return tuple(at)


def cut(array: np.ndarray, dim: str, k: int, plane: str = "z") -> np.ndarray:
    """Cut ``k`` of ``plane`` of a volume's ``array`` (image or labels); a 2D image's array itself."""
    return array if dim == "2D" else formats.plane_image(array, plane, k)


def voxels(shape: tuple, dim: str, rows, cols, k: int, plane: str) -> np.ndarray:
    """Flat indices in a label map of ``shape`` of pixels (rows, cols) of cut ``k`` of ``plane``."""
    if dim == "2D":
        return np.ravel_multi_index((rows, cols), shape)
    return np.ravel_multi_index(voxel_of(plane, np.full(len(rows), k), rows, cols), shape)


def stroke(labels: np.ndarray, image: np.ndarray, dim: str, z: int, points, radius: int, label: int,
           plane: str = "z", within=None, sphere: bool = False, spacing=None) -> np.ndarray:
    """A brush stroke on cut ``z``: the disks of ``radius`` pixels along ``points`` (x, y), where the labels are
    not ``label`` yet; ``within`` (low, high): only pixels whose image value (0-255; colour: its grey) is in that
    range; ``sphere`` (a volume): balls, the neighbouring cuts getting the disks of their cross-sections there
    (their distance by ``spacing``, in the cut's pixels)."""
    h, w = cut(labels, dim, 0, plane).shape
    pts = [(int(round(x)), int(round(y))) for x, y in points]
    reach, step = 0, 1.0
    if sphere and dim == "3D":  # how many cuts the ball reaches either side, by the spacing
        mm = spacing or (1.0, 1.0, 1.0)
        axis, (rows, cols) = "zyx".index(plane), formats.PLANES[plane]
        step = mm[axis] / min(mm[rows], mm[cols])
        reach = max(0, min(int(radius / step), z, labels.shape[axis] - 1 - z))
    changed = []
    for k in range(z - reach, z + reach + 1):
        r = int(round(np.sqrt(max(0.0, radius ** 2 - ((k - z) * step) ** 2)))) if reach else int(radius)
        disks = np.zeros((h, w), np.uint8)
        for a, b in zip(pts, pts[1:] or pts):
            cv2.line(disks, a, b, 1, thickness=2 * r + 1)
        for p in pts[:1] + pts[-1:]:
            cv2.circle(disks, p, r, 1, thickness=-1)
        paint = disks.astype(bool) & (cut(labels, dim, k, plane) != label)
        if within is not None:
            grey = cut(image, dim, k, plane)
            grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
            paint &= (grey >= within[0]) & (grey <= within[1])
        rows_, cols_ = np.nonzero(paint)
        changed.append(voxels(labels.shape, dim, rows_, cols_, k, plane))
    return np.concatenate(changed)


def between(labels: np.ndarray, label: int, plane: str = "z") -> np.ndarray:
    """Slicer's "fill between slices" for a volume's object ``label``: each empty cut of ``plane`` between two it
    is drawn on gets the shape between theirs (the level set of their signed distances, weighted by how near
    each is). CaseError when it is drawn on fewer than two cuts."""
    from scipy import ndimage  # here, not at import: as litemedsam.methods.refine

    along = np.moveaxis(labels, "zyx".index(plane), 0)
    drawn = [k for k in range(along.shape[0]) if (along[k] == label).any()]
    if len(drawn) < 2:
        raise CaseError(f"label {label} is drawn on {len(drawn)} {plane} cut(s): draw it on two, apart, to fill "
                        f"between")

    def signed(mask):  # > 0 inside, < 0 outside
        return ndimage.distance_transform_edt(mask) - ndimage.distance_transform_edt(~mask)
    changed = []
    for a, b in zip(drawn, drawn[1:]):
        if b - a < 2:
            continue
        da, db = signed(along[a] == label), signed(along[b] == label)
        for k in range(a + 1, b):
            t = (k - a) / (b - a)
            rows, cols = np.nonzero(((1 - t) * da + t * db) > 0)
            changed.append(voxels(labels.shape, "3D", rows, cols, k, plane))
    return np.concatenate(changed) if changed else np.zeros(0, np.int64)


def tidied(labels: np.ndarray, dim: str, z: int, label: int, action: str, plane: str = "z") -> tuple:
    """(voxels, their new label) of object ``label`` on cut ``z``: ``fill`` its holes (background it encloses;
    other objects stay) or remove its ``islands`` (all but its largest 8-connected region)."""
    labels_cut = cut(labels, dim, z, plane)
    mask = labels_cut == label
    if action == "fill":
        change, value = fill_holes(mask) & (labels_cut == 0), label
    else:
        change, value = mask & ~keep_component(mask, None, "largest"), 0
    rows, cols = np.nonzero(change)
    return voxels(labels.shape, dim, rows, cols, z, plane), value
