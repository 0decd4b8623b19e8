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
from typing import Any

import numpy as np

from litemedsam.core.errors import CaseError, reason, shown
from litemedsam.core.limits import check_size, human
from litemedsam.io.formats.itk import _sitk, geometry_of, write  # noqa: F401 (write: a series' labels as an ITK image)

DIM = "3D"

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
    first = _check_slices(sitk, folder, names)
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


UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}  # transfer syntaxes


def _tag(reader, key: str) -> str | None:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None


def _pixel_bytes(path: Path, need: int) -> int | None:
    """How many bytes of its Pixel Data element (7FE0,0010) an uncompressed DICOM file holds: the length it
    declares, or less when the file ends before; None when it has none. Only the file's tail is read: the element
    is the last one, and a file that holds ``need`` bytes of it or fewer has it within that tail."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - need - (64 << 10)))
        data = handle.read()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    if at < 0 or len(data) < at + 8:
        return None
    explicit = data[at + 4:at + 6] in (b"OW", b"OB")
    start = at + (12 if explicit else 8)
    length = int.from_bytes(data[at + (8 if explicit else 4):at + (12 if explicit else 8)], "little")
    return None if length == 0xFFFFFFFF else min(length, max(0, len(data) - start))


def _check_slices(sitk, folder: Path, names) -> Any:
    """The first slice's reader, once every slice's header says the series is whole: uncompressed pixel data as
    long as its rows, columns and bits say (a truncated file would be read as whatever memory held), and slices
    evenly spaced along their normal (a missing slice would put the labels in the wrong place)."""
    positions, first = [], None
    for n, name in enumerate(names):
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
        except RuntimeError as e:
            raise CaseError(f"its slice {shown(Path(name).name)} cannot be read ({reason(e, folder)})") from None
        first = first or reader
        w, h = reader.GetSize()[:2]
        bits = int(_tag(reader, "0028|0100") or 16)
        if (_tag(reader, "0002|0010") or "1.2.840.10008.1.2").rstrip("\0") in UNCOMPRESSED:
            need = w * h * max(1, bits // 8) * reader.GetNumberOfComponents()
            held = _pixel_bytes(Path(name), need)
            if held is not None and held < need:
                raise CaseError(f"its slice {shown(Path(name).name)} holds {held} bytes of pixel data where its "
                                f"{w}x{h} pixels of {bits} bits need {need} (a truncated file)")
        position, orientation = _tag(reader, "0020|0032"), _tag(first, "0020|0037")
        if position and orientation:
            try:
                row, col = np.array(orientation.split("\\"), float).reshape(2, 3)
                positions.append(float(np.dot(np.array(position.split("\\"), float), np.cross(row, col))))
            except ValueError:
                positions = []
                break
    steps = np.abs(np.diff(positions))
    if len(positions) == len(names) and len(steps) >= 2:
        usual = float(np.median(steps))
        odd = np.flatnonzero(np.abs(steps - usual) > 0.1 * usual + 1e-3)
        if odd.size:
            k = int(odd[0])
            raise CaseError(f"its slices are not evenly spaced: {steps[k]:.2f} mm between slices {k} and {k + 1} where "
                            f"the others are {usual:.2f} mm apart (a missing slice?); its labels would be written in "
                            f"the wrong place")
    return first


def read_image(path: Path) -> tuple:
    image, modality = _load(path)
    return _sitk().GetArrayFromImage(image), geometry_of(image), modality


def read_labels(path: Path) -> tuple:
    return read_image(path)[:2]
