"""Intensities to the 0-255 range the models take, as MedSAM made the challenge data (``pre_CT_MR.py``): CT through a
window (default soft tissue, level 40 / width 400 HU); every other modality clipped at the 0.5 and 99.5
percentiles of its non-zero voxels and scaled to 0-255, voxels that are exactly 0 (the background of skull-stripped
or z-scored MR) staying 0. uint8 images are used as they are.

Which rule applies: the modality given (``--modality``, a DICOM series' Modality), else the file name's
(``3DBox_CT_...``, ``CT_...``); with none given, data in Hounsfield units (air at -1000 and soft tissue present)
are CT whatever the name says."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from litemedsam.io.cases import Case, make_case, modality
from litemedsam.core.errors import CaseError, UsageError

CT_WINDOW = (40.0, 400.0)  # level, width (HU)
FLOAT32_MAX = float(np.finfo(np.float32).max)
HU_AIR = -900.0  # voxels at or below: air (or the padding outside a CT's field of view)
HU_SOFT = (-200.0, 200.0)  # fat, water, soft tissue
AIR_SHARE, SOFT_SHARE = 0.01, 0.05  # of the voxels, at least, for data to be taken as Hounsfield units


def modality_of(name: str, given: str | None = None) -> str | None:
    """The modality that picks the intensity handling: the one given (``--modality``, a DICOM tag), else the
    name's (``3DBox_CT_...``, ``CT_...``)."""
    return given or modality(name)


def looks_like_hu(data: np.ndarray) -> bool:
    """Whether ``data`` look like CT in Hounsfield units: air (<= -900) on at least 1% of the voxels and fat, water
    or soft tissue (-200..200) on at least 5%. Magnitude MR, PET and z-scored MR never reach -900; a CT cropped
    so tightly that it holds no air is not recognised (give ``--modality CT``)."""
    if data.dtype == np.uint8 or data.size == 0 or not np.issubdtype(data.dtype, np.number):
        return False
    air = np.count_nonzero(data <= HU_AIR)
    if air < AIR_SHARE * data.size:
        return False
    return bool(np.count_nonzero((data >= HU_SOFT[0]) & (data <= HU_SOFT[1])) >= SOFT_SHARE * data.size)


def checked_window(level, width, option: str = "--window") -> tuple:
    """(level, width) as numbers, or UsageError naming ``option``: finite, width > 0."""
    try:
        level, width = float(level), float(width)
    except (TypeError, ValueError):
        level, width = 0.0, 0.0
    if not width > 0 or not (math.isfinite(level) and math.isfinite(width)):
        raise UsageError(f"{option}: LEVEL,WIDTH expected, width > 0 (e.g. 40,400)")
    return level, width


def prepare(data: np.ndarray, name: str, given: str | None = None, window: tuple | None = None) -> tuple:
    """``data`` -> (uint8 image, modality found from the data or None, warnings). ``given``: the modality the
    user or the file states (it decides); else the name's, unless the data are in Hounsfield units: then CT,
    with a warning saying so (windowed as CT and routed as CT)."""
    modality = modality_of(name, given)
    if given or (modality or "").upper() == "CT" or not looks_like_hu(data):
        return to_uint8(data, modality, window), None, []
    how = f"window {window[0]:g}/{window[1]:g} (--window)" if window else \
        f"the CT window {CT_WINDOW[0]:g}/{CT_WINDOW[1]:g}"
    warning = (f"its intensities look like CT in Hounsfield units (air at -1000 and soft tissue): read through "
               f"{how} and routed as CT; give --modality to say otherwise")
    return to_uint8(data, "CT", window), "CT", [warning]


def to_uint8(data: np.ndarray, modality: str | None, window: tuple | None = None) -> np.ndarray:
    """``data`` (any real dtype) -> uint8, without a float copy of uint8 data."""
    if data.dtype == np.uint8:
        return data
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise CaseError(f"its voxels are {data.dtype}, not numbers")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise CaseError("its intensities hold NaN or infinite values")
    ct = window is not None or (modality or "").upper() == "CT"
    level, width = window or CT_WINDOW
    source = data
    if data.dtype.kind == "f" and data.itemsize > 4 and data.size and np.abs(data).max() > FLOAT32_MAX / 4:
        # finite float64 values past float32's range (1e308): clipped to the window first, or scaled by their
        # largest (percentile clipping does not change under a scale), so that float32 holds them
        source = np.clip(data, level - width / 2, level + width / 2) if ct else data / np.abs(data).max()
    values = np.asarray(source, dtype=np.float32)
    zero = None  # the voxels that stay 0 (percentile clipping only)
    if ct:
        lo, hi = level - width / 2, level + width / 2
    else:
        zero = values == 0
        inside = values[~zero]
        if inside.size == 0:
            return np.zeros(values.shape, np.uint8)
        lo, hi = (float(v) for v in np.percentile(inside, [0.5, 99.5]))
    if hi <= lo:
        out = np.where(values > lo, 255, 0).astype(np.uint8)
    else:
        np.clip(values, lo, hi, out=values)
        values -= lo
        values *= 255.0 / (hi - lo)
        out = np.rint(values, out=values).astype(np.uint8)
    if zero is not None:
        out[zero] = 0
    return out


_GIVEN = object()


def case_of_voxels(path: Path, voxels: np.ndarray, boxes, dim: str | None, modality: str | None = None,
                   window: tuple | None = None, recorded=_GIVEN, warnings=(), **fields) -> Case:
    """A Case of voxels of any real dtype, the one way an array becomes a case (a file's voxels, an API caller's
    array, an image the protocol server is sent): its intensities through ``infer``'s rule
    (litemedsam.io.intensity.prepare: ``modality`` decides, else ``path``'s name, else Hounsfield units say CT;
    ``window`` (level, width) where given), then ``make_case`` with ``fields``. The case's modality is
    ``recorded`` (default ``modality``: what the caller said; a file reader records what the file states) or,
    without one, what the data say; what the intensities said joins ``warnings``."""
    image, found, notes = prepare(voxels, path.name, modality, window)
    stated = modality if recorded is _GIVEN else recorded
    return make_case(path, image, boxes, dim=dim, modality=stated or found, warnings=[*notes, *warnings], **fields)
