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

from litemedsam.cases import Case, make_case
from litemedsam.errors import CaseError, shown
from litemedsam.formats.itk import _sitk, write as write_itk
from litemedsam.given_boxes import boxes_of_labels, no_boxes_message
from litemedsam.intensity import to_uint8
from litemedsam.npz import MEMORY_FACTOR, available_memory, human, max_case_bytes

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
        raise CaseError(f"its DICOM files cannot be read ({shown(str(e).strip().splitlines()[-1])[:200]})") from None
    if len(series) != 1:
        raise CaseError("it holds no DICOM series GDCM can read" if not series else
                        f"it holds {len(series)} DICOM series; put each series in a folder of its own")
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    first = sitk.ImageFileReader()
    first.SetFileName(names[0])
    try:
        first.ReadImageInformation()
    except RuntimeError as e:
        raise CaseError(f"its first slice cannot be read ({shown(str(e).strip().splitlines()[-1])[:200]})") from None
    w, h = first.GetSize()[:2]
    need = len(names) * w * h * 8
    if need > max_case_bytes():
        raise CaseError(f"its {len(names)} slices of {w}x{h} need {human(need)}, more than the limit of "
                        f"{human(max_case_bytes())} per case (LITEMEDSAM_MAX_CASE_BYTES)")
    free = available_memory()
    if free is not None and need * MEMORY_FACTOR > free:
        raise CaseError(f"its volume needs about {human(need * MEMORY_FACTOR)} of memory; {human(free)} is available")
    modality = first.GetMetaData("0008|0060").strip() if first.HasMetaDataKey("0008|0060") else None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CaseError(f"its slices cannot be read as one volume ({shown(str(e).strip().splitlines()[-1])[:200]})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(f"a series of one-channel slices is read, got size {image.GetSize()}")
    return image, modality or None


def read_labels(path: Path) -> np.ndarray:
    return _sitk().GetArrayFromImage(_load(path)[0])


def read(path: Path, inputs=None, require_boxes: bool = True) -> Case:
    sitk = _sitk()
    image, modality = _load(path)
    chosen = (inputs.modality if inputs else None) or modality
    volume = to_uint8(sitk.GetArrayFromImage(image), "CT" if (chosen or "").upper() == "CT" else None,
                      inputs.window if inputs else None)
    boxes, absent = np.zeros((0, 6)), []
    given = inputs.for_case(path) if inputs else None
    labels = inputs.labels_for(path) if inputs else None
    if given is not None:
        boxes = np.array(given, np.float64)
    elif labels is not None:
        from litemedsam.formats.registry import module_for

        label_map = module_for(labels).read_labels(labels)
        if label_map.shape != volume.shape:
            raise CaseError(f"its label image {labels.name} has shape {label_map.shape}, the volume {volume.shape}")
        boxes, absent = boxes_of_labels(label_map)
    elif require_boxes:
        raise CaseError(no_boxes_message())
    meta = {"origin": image.GetOrigin(), "spacing": image.GetSpacing(), "direction": image.GetDirection()}
    case = make_case(path, volume, boxes, dim="3D", absent=absent, fmt="dicom", geometry=meta)
    case.modality = modality
    return case


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    write_itk(case, segs, target)
