"""NRRD and MetaImage volumes (.nrrd, .mha) via SimpleITK, an optional extra (``pip install litemedsam[io]``).

Axes as SimpleITK's arrays: a volume of size (X, Y, Z) is the (D, H, W) = (Z, Y, X) array the pipeline
takes (slices along z); a box ``x0,y0,z0,x1,y1,z1`` is in voxel indices, inclusive; origin, spacing and
direction are not applied. Intensities as for NIfTI (litemedsam.io.intensity). The label map is written in the
input's format under its name, with its origin, spacing and direction (CopyInformation), compressed.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np

from litemedsam.io.cases import Case, make_case
from litemedsam.core.errors import CaseError, OutputError, reason, shown
from litemedsam.io.given_boxes import CaseInputs
from litemedsam.io.intensity import prepare
from litemedsam.core.limits import check_file, check_size, human
from litemedsam.core.safeio import temp_path

BYTES = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}
MAX_HEADER = 1 << 20  # bytes of a header read to find its data file
DATA_FILE = {".mha": re.compile(rb"^[ \t]*ElementDataFile[ \t]*=[ \t]*(.*?)[ \t\r]*$", re.M),
             ".nrrd": re.compile(rb"^data ?file[ \t]*:[ \t]*(.*?)[ \t\r]*$", re.M | re.I)}


def _sitk():
    try:
        import SimpleITK
    except ImportError:
        raise CaseError("reading NRRD, MetaImage and DICOM needs SimpleITK: pip install 'litemedsam[io]'") from None
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


def read_labels(path: Path) -> np.ndarray:
    return _sitk().GetArrayFromImage(_load(path))


def space(path: Path) -> list:
    """Where a label file's voxels are (origin, spacing, direction), read from its header only."""
    reader = _sitk().ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise CaseError(f"not a readable {path.suffix.lstrip('.').upper()} file ({reason(e, path)})") from None
    return _flat({"origin": reader.GetOrigin(), "spacing": reader.GetSpacing(), "direction": reader.GetDirection()})


def _flat(where: dict) -> list:
    return [*where["origin"], *where["spacing"], *where["direction"]]


def axes(case: Case) -> tuple:
    """Where the image's columns, rows and slices run in the patient, as letters ("L" when a column index
    increasing goes to the patient's left): from the direction cosines, which ITK gives in LPS."""
    d = np.asarray(case.geometry["direction"], float).reshape(3, 3)
    letters = (("R", "L"), ("A", "P"), ("I", "S"))  # LPS: +x is left, +y posterior, +z superior

    def code(column):
        axis = int(np.argmax(np.abs(column)))
        return letters[axis][int(column[axis] > 0)]
    return code(d[:, 0]), code(d[:, 1]), code(d[:, 2])


def spacing(case: Case) -> tuple:
    """The distance between columns, rows and slices in mm (ITK's spacing, in millimetres)."""
    return tuple(float(s) for s in case.geometry["spacing"])


def geometry(image) -> dict:
    """What writing the labels back needs of a SimpleITK image."""
    return {"origin": image.GetOrigin(), "spacing": image.GetSpacing(), "direction": image.GetDirection()}


def volume_case(path: Path, image, inputs: CaseInputs | None, require_boxes: bool, fmt: str,
                file_modality: str | None = None) -> Case:
    """The Case of a SimpleITK volume (a file here, a DICOM series in litemedsam.io.formats.dicom)."""
    inputs = inputs or CaseInputs()
    volume, found, warnings = prepare(_sitk().GetArrayFromImage(image), path.name, inputs.modality or file_modality,
                                      inputs.window)
    where = geometry(image)
    boxes, absent, placed = inputs.boxes_of(path, volume.shape, 6, require_boxes, _flat(where))
    return make_case(path, volume, boxes, dim="3D", absent=absent, fmt=fmt, geometry=where,
                     modality=file_modality or found, warnings=warnings + placed)


def read(path: Path, inputs: CaseInputs | None = None, require_boxes: bool = True) -> Case:
    return volume_case(path, _load(path), inputs, require_boxes, "itk")


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    sitk = _sitk()
    out = sitk.GetImageFromArray(segs)
    out.SetOrigin(case.geometry["origin"])
    out.SetSpacing(case.geometry["spacing"])
    out.SetDirection(case.geometry["direction"])
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
