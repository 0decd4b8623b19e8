"""A case (an image, its boxes, what its file said) made and checked the same way for every format: ``make_case``,
``clip_boxes``, the tags a file name carries (``name_tags``), label dtypes; CaseError says what is wrong."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError
from litemedsam.core.limits import MAX_OBJECTS
from litemedsam.io.geometry import Geometry

__all__ = ["Case", "CaseError", "label_dtype", "make_case", "modality", "name_tags"]

NAME_PATTERN = re.compile(r"^(2D|3D)Box_([^_]+)_")


@dataclass
class Case:
    path: Path
    dim: str  # "2D" or "3D"
    image: np.ndarray  # 2D: (H, W, 3) or (H, W) uint8; 3D: (D, H, W) uint8
    boxes: np.ndarray  # 2D: (N, 4); 3D: (N, 6); int64, inclusive pixel indices, clipped to the image
    skipped: list = field(default_factory=list)  # 1-based labels of boxes that could not be used
    warnings: list = field(default_factory=list)
    starts: list | None = None  # 3D: the slice each box's propagation starts on (2025 layout's z_mid)
    notices: list = field(default_factory=list)  # about the file's layout, the same for every such file
    fmt: str = "challenge"  # the file format (litemedsam.io.formats), which writes the result back
    geometry: Geometry = field(default_factory=Geometry)  # where its voxels lie, as its file says
    modality: str | None = None  # as the file says (DICOM's Modality) or its intensities show (CT in HU)
    clicks: list | None = None  # per object (label i + 1): its clicks in order, [("fg" or "bg", (z, y, x)), ...]
    prev: np.ndarray | None = None  # the previous step's label map the clicks correct (the 2025 layout's prev_pred)
    lines: list | None = None  # 3D: lesion k's RECIST line (litemedsam.io.lines.Line), its prompt instead of a box

    @property
    def label_shape(self) -> tuple:
        """The shape of the case's label map: the image's without its colour."""
        return self.image.shape[:2] if self.dim == "2D" else self.image.shape


def name_tags(name: str) -> tuple[str | None, str | None]:
    """What a case's file name says, read in this one place: (its dimension, '2D'/'3D' from 2DBox_/3DBox_, and
    its modality tag: 'CT' for 2DBox_CT_... or, in the 2025 layout's names, CT_Lesion_...), None where it says
    nothing. The tag is as written: the router decides whether it knows it."""
    m = NAME_PATTERN.match(name)
    if m:
        return m.group(1), m.group(2)
    return None, (name.split("_", 1)[0] or None) if "_" in name else None


def modality(name: str) -> str | None:
    """The modality tag of a case's file name (``name_tags``), e.g. 'CT' for 2DBox_CT_... or CT_Lesion_..."""
    return name_tags(name)[1]


def _dimension(name: str, image: np.ndarray, boxes: np.ndarray) -> str:
    """2D or 3D: from the name's 2DBox_/3DBox_ prefix, else the box width, else the image shape."""
    named = name_tags(name)[0]
    by_boxes = {4: "2D", 6: "3D"}.get(boxes.shape[1]) if boxes.size else None
    if boxes.size and by_boxes is None:
        raise CaseError(f"'boxes' must have 4 (2D) or 6 (3D) columns, got shape {boxes.shape}")
    if named and by_boxes and named != by_boxes:
        raise CaseError(f"the name says {named} but 'boxes' has {boxes.shape[1]} columns ({by_boxes})")
    if named:
        return named
    if by_boxes:
        return by_boxes
    return "2D" if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4)) else "3D"


def _image(image: np.ndarray, dim: str) -> np.ndarray:
    if image.dtype == object or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
                                     or image.dtype == bool):
        raise CaseError(f"'imgs' must be numeric, got dtype {image.dtype}")
    if dim == "2D":
        if image.ndim == 3 and image.shape[2] in (1, 4):
            image = image[:, :, :3] if image.shape[2] == 4 else image[:, :, 0]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise CaseError(f"2D 'imgs' must be HxW or HxWx3, got shape {image.shape}")
    elif image.ndim != 3:
        raise CaseError(f"3D 'imgs' must be DxHxW, got shape {image.shape}")
    elif image.shape[2] in (3, 4) and min(image.shape[:2]) > 4:
        raise CaseError(f"3D 'imgs' has shape {image.shape}: an HxWx{image.shape[2]} colour image, not a DxHxW "
                        f"volume (a 3D case's slices are its first axis; a 2D case is named 2DBox_...)")
    if image.size == 0:
        raise CaseError(f"'imgs' is empty, shape {image.shape}")
    if image.dtype != np.uint8:
        finite = np.isfinite(image).all() if np.issubdtype(image.dtype, np.floating) else True
        lo, hi = (image.min(), image.max()) if finite else (0, 0)
        if not finite or lo < 0 or hi > 255:
            raise CaseError(f"'imgs' must hold intensities 0-255 (uint8), got {image.dtype} "
                            + ("with NaN or infinite values" if not finite else f"in [{lo}, {hi}]"))
        image = np.rint(image).astype(np.uint8)
    return image


def box_array(raw) -> np.ndarray:
    """``raw`` as an array of boxes: numbers, N x 4 or N x 6 (or empty), finite; else CaseError."""
    boxes = np.asarray(raw)
    if boxes.dtype == object or not (np.issubdtype(boxes.dtype, np.integer) or np.issubdtype(boxes.dtype, np.floating)):
        raise CaseError(f"'boxes' must be numeric, got dtype {boxes.dtype}")
    if boxes.size == 0:
        return boxes
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise CaseError(f"'boxes' must be an Nx4 (2D) or Nx6 (3D) array, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise CaseError("'boxes' contains NaN or infinite values")
    return boxes


def clip_boxes(raw, dim: str, shape: tuple, absent=()) -> tuple[np.ndarray, list, list]:
    """Clip boxes to the image; boxes that are inverted or lie outside are skipped with a warning, and so are
    the labels ``absent`` (values missing from a label image the boxes came from)."""
    boxes = box_array(raw)
    if boxes.size == 0:
        return np.zeros((0, 4 if dim == "2D" else 6), dtype=np.int64), [], []
    k = 2 if dim == "2D" else 3
    # image extent per box axis, in box column order (x, y[, z])
    extent = np.array([shape[1], shape[0]] if dim == "2D" else [shape[2], shape[1], shape[0]])
    given = boxes.astype(np.float64)
    # limited to just outside the image before rounding, so that no value overflows the integer cast
    limited = np.rint(np.clip(given, -1, np.concatenate([extent, extent]))).astype(np.int64)
    lo, hi = limited[:, :k].copy(), limited[:, k:].copy()
    skipped, warnings = [], []
    for i in range(len(boxes)):
        label = i + 1
        if label in absent:
            skipped.append(label)
            continue
        text = "[" + ", ".join(f"{v:g}" for v in given[i]) + "]"
        if (np.rint(given[i, :k]) > np.rint(given[i, k:])).any():
            skipped.append(label)
            warnings.append(f"box {label} {text} has min > max; label {label} left empty")
            continue
        if (hi[i] < 0).any() or (lo[i] > extent - 1).any():
            skipped.append(label)
            warnings.append(f"box {label} {text} lies outside the image; label {label} left empty")
            continue
        clipped_lo, clipped_hi = np.maximum(lo[i], 0), np.minimum(hi[i], extent - 1)
        if (clipped_lo != np.rint(given[i, :k])).any() or (clipped_hi != np.rint(given[i, k:])).any():
            warnings.append(f"box {label} {text} extends beyond the image; clipped")
        lo[i], hi[i] = clipped_lo, clipped_hi
    if absent:
        listed = ", ".join(map(str, sorted(absent)[:20])) + (" ..." if len(absent) > 20 else "")
        warnings.append(f"{len(absent)} label value(s) below the largest do not occur in the label image ({listed}); "
                        f"those labels are left empty")
    return np.concatenate([lo, hi], axis=1), skipped, warnings


BYTES_PER_PIXEL_2D = 9  # segmenting a 2D image: one full-size logit map, a mask, the labels and temporaries
RUNTIME_BYTES = 512 << 20  # what the models and ONNX Runtime take besides


def check_memory_2d(hw: tuple) -> None:
    """CaseError when segmenting an image of this size would need more memory than is available: each object's
    logits are brought to the full image size (4 bytes per pixel) as the reference does, so a huge image is
    refused with a message instead of being killed by the kernel (which would cost the whole batch)."""
    from litemedsam.core.limits import available_memory, human

    need = BYTES_PER_PIXEL_2D * hw[0] * hw[1] + RUNTIME_BYTES
    free = available_memory()
    if free is not None and need > free:
        raise CaseError(f"segmenting a {hw[1]}x{hw[0]} image needs about {human(need)} of memory besides the image; "
                        f"{human(free)} is available")


def make_case(path: Path, image: np.ndarray, raw_boxes, dim: str | None = None, starts=None, notices=(), absent=(),
              fmt: str = "challenge", geometry: Geometry | None = None, modality: str | None = None, warnings=(),
              clicks=None, prev=None) -> Case:
    """A checked Case of any format: the dimension (given, else from the name, boxes and image), the image as
    uint8, the boxes clipped (warnings for the others), the start slices kept within their boxes; ``modality``
    and ``warnings``: what the file or its intensities said (litemedsam.io.intensity.prepare)."""
    raw_boxes = np.asarray(raw_boxes)
    if raw_boxes.ndim == 1 and raw_boxes.size in (0, 4, 6):
        raw_boxes = raw_boxes.reshape(-1, raw_boxes.size or 4)
    if raw_boxes.ndim != 2:
        raise CaseError(f"'boxes' must be an Nx4 (2D) or Nx6 (3D) array, got shape {raw_boxes.shape}")
    if len(raw_boxes) > MAX_OBJECTS:
        raise CaseError(f"{len(raw_boxes)} boxes; a case holds at most {MAX_OBJECTS} objects (its labels are uint16)")
    dim = dim or _dimension(path.name, image, raw_boxes)
    if dim and raw_boxes.size and raw_boxes.shape[1] != (4 if dim == "2D" else 6):
        raise CaseError(f"a {dim} image takes boxes of {4 if dim == '2D' else 6} numbers, got {raw_boxes.shape[1]}")
    image = _image(image, dim)
    if dim == "2D":
        check_memory_2d(image.shape[:2])
    boxes, skipped, clipped = clip_boxes(raw_boxes, dim, image.shape, absent)
    warnings = [*warnings, *clipped]
    if starts is not None and (len(starts) != len(boxes) or not all(
            isinstance(z, (int, float, np.integer, np.floating)) and np.isfinite(z) for z in starts)):
        raise CaseError(f"starts: one start slice (a number) per box, {len(boxes)} in all; got {str(starts)[:60]}")
    if starts is not None:
        starts, moved = _starts(starts, boxes)
        warnings += moved
    return Case(path, dim, image, boxes, skipped, warnings, starts, list(notices), fmt, geometry or Geometry(),
                modality, clicks, prev)


def _starts(given: list, boxes: np.ndarray) -> tuple[list, list]:
    """Each box's start slice (its z_mid), rounded and kept within the box's z-range, with a warning if moved."""
    starts, warnings = [], []
    for i, (z, box) in enumerate(zip(given, boxes), 1):
        start = int(min(max(round(z), box[2]), box[5]))
        if start != z:
            warnings.append(f"box {i}: z_mid {z:g} is outside z_min..z_max [{box[2]}, {box[5]}]; starting on slice "
                            f"{start}")
        starts.append(start)
    return starts, warnings


def label_dtype(num_boxes: int):
    """uint8 labels, or uint16 when there are more than 255 boxes."""
    return np.uint8 if num_boxes <= 255 else np.uint16
