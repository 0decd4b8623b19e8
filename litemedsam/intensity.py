"""Intensities to the 0-255 range the models take, as the challenge data were made: CT through a window (default
soft tissue, level 40 / width 400 HU), every other modality clipped at the 0.5 and 99.5 percentiles of its
non-zero voxels; then scaled to 0-255. uint8 images are used as they are."""
from __future__ import annotations

import numpy as np

from litemedsam.cases import NAME_PATTERN
from litemedsam.errors import CaseError

CT_WINDOW = (40.0, 400.0)  # level, width (HU)


def modality_of(name: str, given: str | None = None) -> str | None:
    """The modality that picks the intensity handling: the one given (``--modality``, a DICOM tag), else the
    name's (``3DBox_CT_...``, ``CT_...``)."""
    m = NAME_PATTERN.match(name)
    return given or (m.group(2) if m else name.split("_", 1)[0] if "_" in name else None)


def to_uint8(data: np.ndarray, modality: str | None, window: tuple | None = None) -> np.ndarray:
    """``data`` (any real dtype) -> uint8, without a float copy of uint8 data."""
    if data.dtype == np.uint8:
        return data
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CaseError(f"its voxels are {data.dtype}, not numbers")
    values = np.asarray(data, dtype=np.float32)
    if not np.isfinite(values).all():
        raise CaseError("its intensities hold NaN or infinite values")
    if window is not None or (modality or "").upper() == "CT":
        level, width = window or CT_WINDOW
        lo, hi = level - width / 2, level + width / 2
    else:
        inside = values[values != 0]
        if inside.size == 0:
            return np.zeros(values.shape, np.uint8)
        lo, hi = (float(v) for v in np.percentile(inside, [0.5, 99.5]))
    if hi <= lo:
        return np.where(values > lo, 255, 0).astype(np.uint8)
    np.clip(values, lo, hi, out=values)
    values -= lo
    values *= 255.0 / (hi - lo)
    return np.rint(values, out=values).astype(np.uint8)
