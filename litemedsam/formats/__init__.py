"""Case files by format: one reader/writer module per format behind one Case type (litemedsam.cases).

| suffix | module | image | boxes | written back as |
|---|---|---|---|---|
| .npz | challenge | `imgs` | `boxes` (or given) | `.npz` with `segs` |
| .nii, .nii.gz | nifti | 3D volume (slices along the third voxel axis) | given | NIfTI, same geometry |
| .nrrd, .mha | itk (SimpleITK, the ``io`` extra) | 3D volume (slices along z) | given | same format and geometry |
| a folder of one DICOM series | dicom (SimpleITK) | 3D volume (slices by position) | given | ``<folder>.nrrd`` |
| .png, .jpg, .jpeg, .tif, .tiff, .bmp | image | 2D image | given | `.png` label image |

Each module has ``read(path, inputs) -> Case`` (inputs: litemedsam.given_boxes.CaseInputs),
``read_labels(path) -> array`` in the orientation ``read`` gives, and ``write(case, segs, target)``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

MODULES = {".npz": "challenge", ".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "itk", ".mha": "itk", ".png": "image",
           ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image", ".bmp": "image"}


def suffix(name: str) -> str | None:
    """The format suffix of a file name (any letter case; ``.nii.gz`` whole), None when not a case file."""
    lower = name.lower()
    for s in sorted(MODULES, key=len, reverse=True):
        if lower.endswith(s) and len(lower) > len(s):
            return s
    return None


def is_case_folder(path: Path) -> bool:
    """Whether a folder is a case (a DICOM series); asked only of folders not named as case files."""
    from litemedsam.formats.dicom import is_series

    return is_series(Path(path))


def module_for(path):
    """The format module of a case path (a file name's suffix; a folder is a DICOM series); CaseError when it
    is neither."""
    path = Path(path)
    name = path.name
    s = suffix(name)
    if s is None and path.is_dir():
        return importlib.import_module("litemedsam.formats.dicom")
    if s is None:
        from litemedsam.errors import CaseError

        raise CaseError(f"{name!r} is not named as a file litemedsam reads (" + ", ".join(sorted(MODULES)) + ")")
    return importlib.import_module(f"litemedsam.formats.{MODULES[s]}")


def output_name(path) -> str:
    """The output file's name for an input case: the same name, except 2D images become ``.png`` and a DICOM
    series folder ``<folder>.nrrd``."""
    path = Path(path)
    name = path.name
    s = suffix(name)
    if s is None and path.is_dir():
        return name + ".nrrd"
    if MODULES.get(s) == "image":
        return name[: len(name) - len(s)] + ".png"
    return name


def read(path: Path, inputs=None, require_boxes: bool = True):
    return module_for(path).read(Path(path), inputs, require_boxes)


def write(case, segs, target: Path) -> None:
    module_for(case.path).write(case, segs, target)
