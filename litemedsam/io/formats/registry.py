"""Which format module reads a case path, and what its output is named. It names the format modules by string
and imports one when a path of its format comes (SimpleITK, for instance, only for NRRD, MHA and DICOM);
no format module imports this one (tests/test_layers.py follows such strings)."""
from __future__ import annotations

import importlib
from pathlib import Path

FORMATS = ("challenge", "nifti", "itk", "dicom", "image")  # a Case's ``fmt``: the module that read it and writes it
# formats whose file is a whole case (``read_case``); the others give an image (``read_image``)
CASE_FILES = ("challenge",)
RAW_INTENSITIES = ("nifti", "itk", "dicom")  # formats whose voxels are mapped to 0-255 by litemedsam.io.intensity
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
    return importlib.import_module("litemedsam.io.formats.dicom").is_series(Path(path))


def module_for(path):
    """The format module of a case path (a file name's suffix; a folder is a DICOM series); CaseError when it
    is neither."""
    path = Path(path)
    name = path.name
    s = suffix(name)
    if s is None and path.is_dir():
        return importlib.import_module("litemedsam.io.formats.dicom")
    if s is None:
        from litemedsam.core.errors import CaseError

        raise CaseError(f"{name!r} is not named as a file litemedsam reads (" + ", ".join(sorted(MODULES)) + ")")
    return importlib.import_module(f"litemedsam.io.formats.{MODULES[s]}")


def module_name(module) -> str:
    """The format a format module reads (a Case's ``fmt``): its name."""
    return module.__name__.rsplit(".", 1)[-1]


def module_of_format(fmt: str):
    """The module of a Case's format (``Case.fmt``), which writes its output."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown case format {fmt!r}")
    return importlib.import_module(f"litemedsam.io.formats.{fmt}")


def output_name(path) -> str:
    """The output file's name for an input case: the same name, except 2D images become ``.png`` and a DICOM
    series folder ``<folder>.nrrd``."""
    path = Path(path)
    name = path.name
    s = suffix(name)
    if s is None and path.is_dir():
        return name + ".nrrd"
    if s is not None and MODULES[s] == "image":
        return name[: len(name) - len(s)] + ".png"
    return name


def output_owners(paths) -> dict:
    """output name -> the name of the first of ``paths`` (in their order) written to it: the case that owns that
    output (``a.jpg`` and ``a.png`` both make ``a.png``: the first owns it, the other fails with a message)."""
    owners: dict = {}
    for path in paths:
        owners.setdefault(output_name(path), Path(path).name)
    return owners


def numbered(name: str, n: int) -> str:
    """``name`` with ``-n`` before its format suffix (``x.nii.gz`` -> ``x-2.nii.gz``); ``name`` itself for n = 1."""
    if n == 1:
        return name
    s = suffix(name) or Path(name).suffix
    return f"{name[:len(name) - len(s)]}-{n}{s}"
