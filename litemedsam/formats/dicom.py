"""DICOM series (a folder of the slices of one series) via SimpleITK's GDCM reader (the ``io`` extra).

A folder among the input's entries is a case when it holds DICOM files (the 'DICM' marker) of exactly one
series. Slices are ordered by their position (GDCM); the volume is (D, H, W) = (slices, rows, columns) and a box
``x0,y0,z0,x1,y1,z1`` is in (column, row, slice) indices, inclusive. Rescale slope and intercept are applied
(CT in HU), the series' Modality (0008,0060) picks the intensity handling and, unless --modality is given,
the router's modality. The label map is written as ``<folder>.nrrd`` with the series' origin, spacing and
direction (a DICOM SEG writer is not part of litemedsam).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from litemedsam.cases import Case
from litemedsam.errors import CaseError, reason
from litemedsam.formats.itk import _sitk, volume_case, write as write_itk
from litemedsam.given_boxes import CaseInputs
from litemedsam.npz import check_size, human

MAX_PROBED = 32  # files looked at to tell whether a folder is a DICOM series


def is_series(folder: Path) -> bool:
    """Whether ``folder`` (not followed if a link) holds a DICOM file among its first files."""
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_PROBED:
                    break
                if entry.is_file(follow_symlinks=False):
                    with open(entry.path, "rb") as handle:
                        if handle.read(132)[128:132] == b"DICM":
                            return True
    except OSError:
        return False
    return False


def _load(folder: Path):
    sitk = _sitk()
    if not folder.is_dir():
        raise CaseError("not a folder of DICOM files")
    try:
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as e:
        raise CaseError(f"its DICOM files cannot be read ({reason(e, folder)})") from None
    if len(series) != 1:
        raise CaseError("it holds no DICOM series GDCM can read" if not series else
                        f"it holds {len(series)} DICOM series; put each series in a folder of its own")
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = sitk.ImageFileReader()
    first.SetFileName(names[0])
    try:
        first.ReadImageInformation()
    except RuntimeError as e:
        raise CaseError(f"its first slice cannot be read ({reason(e, folder)})") from None
    w, h = first.GetSize()[:2]
    need = len(names) * w * h * 8
    check_size(need, f"its {len(names)} slices of {w}x{h} need {human(need)}", "its volume")
    modality = first.GetMetaData("0008|0060").strip() if first.HasMetaDataKey("0008|0060") else None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CaseError(f"its slices cannot be read as one volume ({reason(e, folder)})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"a series of one-channel slices is read, got size {image.GetSize()}")
    return image, modality or None


def read_labels(path: Path) -> np.ndarray:
    return _sitk().GetArrayFromImage(_load(path)[0])


def read(path: Path, inputs: CaseInputs | None = None, require_boxes: bool = True) -> Case:
    image, modality = _load(path)
    return volume_case(path, image, inputs, require_boxes, "dicom", modality)


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    write_itk(case, segs, target)
