"""NRRD and MetaImage volumes (.nrrd, .mha) via SimpleITK, an optional extra (``pip install litemedsam[io]``).

Axes as SimpleITK's arrays: a volume of size (X, Y, Z) is the (D, H, W) = (Z, Y, X) array the pipeline
takes (slices along z); a box ``x0,y0,z0,x1,y1,z1`` is in voxel indices, inclusive; origin, spacing and
direction are not applied. Intensities as for NIfTI (litemedsam.intensity). The label map is written in the
input's format under its name, with its origin, spacing and direction (CopyInformation), compressed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from litemedsam.cases import NAME_PATTERN, Case, make_case
from litemedsam.errors import CaseError, OutputError, shown
from litemedsam.given_boxes import boxes_of_labels, no_boxes_message
from litemedsam.intensity import to_uint8
from litemedsam.npz import MEMORY_FACTOR, available_memory, check_file, human, max_case_bytes
from litemedsam.safeio import temp_path

BYTES = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}


def _sitk():
    try:
        import SimpleITK
    except ImportError:
        raise CaseError("reading NRRD, MetaImage and DICOM needs SimpleITK: pip install 'litemedsam[io]'") from None
    SimpleITK.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's own warnings name C++ files, not the case
    return SimpleITK


def _load(path: Path):
    sitk = _sitk()
    check_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size, pixel = tuple(reader.GetSize()), sitk.GetPixelIDValueAsString(reader.GetPixelID())
        components = reader.GetNumberOfComponents()
    except RuntimeError as e:
        text = str(e).replace(str(path), "the file").strip().splitlines()
        raise CaseError(f"not a readable {path.suffix.lstrip('.').upper()} file "
                        f"({shown(text[-1] if text else 'unknown error')[:200]})") from None
    if len(size) != 3 or components != 1:
        raise CaseError(f"a volume of one channel is read, got size {size} with {components} channel(s)")
    need = int(np.prod(size)) * max(4, next((n for k, n in BYTES.items() if k in pixel), 8))
    if need > max_case_bytes():
        raise CaseError(f"its volume {size} needs {human(need)}, more than the limit of {human(max_case_bytes())} "
                        f"per case (LITEMEDSAM_MAX_CASE_BYTES)")
    free = available_memory()
    if free is not None and need * MEMORY_FACTOR > free:
        raise CaseError(f"its volume needs about {human(need * MEMORY_FACTOR)} of memory; {human(free)} is available")
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise CaseError(f"its voxel data cannot be read ({shown(str(e).strip().splitlines()[-1])[:200]})") from None
    return image


def read_labels(path: Path) -> np.ndarray:
    return _sitk().GetArrayFromImage(_load(path))


def read(path: Path, inputs=None, require_boxes: bool = True) -> Case:
    sitk = _sitk()
    image = _load(path)
    m = NAME_PATTERN.match(path.name)
    tag = (inputs and inputs.modality) or (m.group(2) if m else path.name.split("_", 1)[0])
    volume = to_uint8(sitk.GetArrayFromImage(image), "CT" if tag.upper() == "CT" else None,
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
    return make_case(path, volume, boxes, dim="3D", absent=absent, fmt="itk", geometry=meta)


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
            raise OutputError(f"cannot write {target}: {shown(str(e).strip().splitlines()[-1])[:200]}") from None
        raise
