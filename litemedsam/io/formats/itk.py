"""NRRD and MetaImage volumes (.nrrd, .mha; a header's data file beside it) via SimpleITK (the extra
``litemedsam[io]``); litemedsam.io.formats.dicom reads DICOM series with it too.

Axes as SimpleITK's arrays: a volume of size (X, Y, Z) is the (D, H, W) = (Z, Y, X) array the pipeline
takes (slices along z); a box ``x0,y0,z0,x1,y1,z1`` is in voxel indices, inclusive; origin, spacing and
direction are not applied (they place the case: its Geometry). The label map is written in the input's format
under its name, with its origin, spacing and direction, compressed.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError, OutputError, needs_extra, reason, shown
from litemedsam.core.limits import check_file, check_size, human
from litemedsam.core.safeio import temp_path
from litemedsam.io.geometry import Geometry

DIM = "3D"

BYTES = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}
MAX_HEADER = 1 << 20  # bytes of a header read to find its data file
DATA_FILE = {".mha": re.compile(rb"^[ \t]*ElementDataFile[ \t]*=[ \t]*(.*?)[ \t\r]*$", re.M),
             ".nrrd": re.compile(rb"^data ?file[ \t]*:[ \t]*(.*?)[ \t\r]*$", re.M | re.I)}


def _sitk():
    try:
        import SimpleITK
    except ImportError:
        raise CaseError(needs_extra("reading NRRD, MetaImage and DICOM", "io")) from None
    SimpleITK.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's own warnings name C++ files, not the case
    return SimpleITK


def check_data_file(path: Path) -> None:
    """CaseError unless the voxels are in the file itself or in a regular file named plainly beside it: a header
    naming a data file elsewhere (an absolute path, ``../``, a LIST or a numbered pattern), a link, a FIFO or a
    device would be read as this case's voxels (another user's file shown as pixels, or a read that never ends)."""
    kind = ".mha" if path.name.lower().endswith(".mha") else ".nrrd"
    with open(path, "rb") as handle:
        head = handle.read(MAX_HEADER)
    if kind == ".nrrd":  # the header ends at the first empty line (or the file, when it is only a header)
        ends = [i for i in (head.find(b"\n\n"), head.find(b"\r\n\r\n")) if i >= 0]
        if not ends and len(head) == MAX_HEADER:
            raise CaseError(f"its NRRD header does not end within {MAX_HEADER >> 20} MiB")
        head = head[:min(ends)] if ends else head
    found = DATA_FILE[kind].search(head)
    if found is None:
        if kind == ".mha":
            raise CaseError("its MetaImage header has no ElementDataFile line")
        return  # NRRD: the data follow the header
    name = found.group(1).decode("utf-8", "replace")
    if kind == ".mha" and name == "LOCAL":
        return
    plain = name and "/" not in name and "\\" not in name and name not in (".", "..") and " " not in name \
        and "%" not in name and name != "LIST"
    if not plain:
        raise CaseError(f"its header names the data file {shown(name)!r}: only a file beside it (a plain name) is "
                        f"read, never a path, a LIST or a pattern")
    try:
        mode = os.lstat(path.parent / name).st_mode
    except OSError as e:
        raise CaseError(f"its data file {shown(name)!r} cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise CaseError(f"its data file {shown(name)!r} is not a regular file (a link, FIFO or device is never read)")


def _load(path: Path):
    sitk = _sitk()
    check_file(path)
    check_data_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size, pixel = tuple(reader.GetSize()), sitk.GetPixelIDValueAsString(reader.GetPixelID())
        components = reader.GetNumberOfComponents()
    except RuntimeError as e:
        raise CaseError(f"not a readable {path.suffix.lstrip('.').upper()} file ({reason(e, path)})") from None
    if len(size) != 3 or components != 1:
        raise CaseError(f"a volume of one channel is read, got size {size} with {components} channel(s)")
    need = int(np.prod(size)) * max(4, next((n for k, n in BYTES.items() if k in pixel), 8))
    check_size(need, f"its volume {size} needs {human(need)}", "its volume")
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CaseError(f"its voxel data cannot be read ({reason(e, path)})") from None
    return image


def geometry_of(image) -> Geometry:
    """Where a SimpleITK image's voxels lie (its origin, spacing and direction, kept to write the labels back)."""
    where = {"origin": image.GetOrigin(), "spacing": image.GetSpacing(), "direction": image.GetDirection()}
    return Geometry.of_itk(where["origin"], where["spacing"], where["direction"], where)


def read_image(path: Path) -> tuple:
    image = _load(path)
    return _sitk().GetArrayFromImage(image), geometry_of(image), None


def read_labels(path: Path) -> tuple:
    image = _load(path)
    return _sitk().GetArrayFromImage(image), geometry_of(image)


def write(segs: np.ndarray, geometry: Geometry, target: Path) -> None:
    sitk = _sitk()
    out = sitk.GetImageFromArray(segs)
    out.SetOrigin(geometry.source["origin"])
    out.SetSpacing(geometry.source["spacing"])
    out.SetDirection(geometry.source["direction"])
    # SimpleITK picks its writer by the suffix and writes to a path: a temporary file of ours with that suffix
    try:
        tmp = temp_path(target.parent, suffix=target.suffix)
    except OSError as e:
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    try:
        sitk.WriteImage(out, str(tmp), True)
        os.replace(tmp, target)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, (RuntimeError, OSError)):
            raise OutputError(f"cannot write {target}: {reason(e, tmp)}") from None
        raise
