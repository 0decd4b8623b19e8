"""Case files by format: one reader/writer module per format behind one Case type (litemedsam.io.cases).

| suffix | module | image | boxes | written back as |
|---|---|---|---|---|
| .npz | challenge | `imgs` | `boxes` (or given) | `.npz` with `segs` |
| .nii, .nii.gz | nifti | 3D volume (slices along the third voxel axis) | given | NIfTI, same geometry |
| .nrrd, .mha | itk (SimpleITK, the ``io`` extra) | 3D volume (slices along z) | given | same format and geometry |
| a folder of one DICOM series | dicom (SimpleITK) | 3D volume (slices by position) | given | ``<folder>.nrrd`` |
| .png, .jpg, .jpeg, .tif, .tiff, .bmp | image | 2D image | given | `.png` label image |

Each module has ``read(path, inputs) -> Case`` (inputs: litemedsam.io.given_boxes.CaseInputs),
``read_labels(path) -> array`` in the orientation ``read`` gives, and ``write(case, segs, target)``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from litemedsam.io.formats.registry import (FORMATS, MODULES, RAW_INTENSITIES, is_case_folder, module_for, module_of_format,
                                         numbered, output_name, output_owners, suffix)

__all__ = ["FORMATS", "MODULES", "RAW_INTENSITIES", "display", "is_case_folder", "module_for", "module_of_format",
           "numbered", "output_name", "output_owners", "read", "read_labelled_2d", "read_labels", "suffix", "voxel_mm3",
           "write"]


def read(path: Path, inputs=None, require_boxes: bool = True):
    if inputs is not None and inputs.labels is not None and inputs.read_labels is None:
        inputs = replace(inputs, read_labels=read_labels)
    return module_for(path).read(Path(path), inputs, require_boxes)


def read_labels(path: Path, with_space: bool = False) -> tuple:
    """A label image of any format, as its format's ``read`` orients the image, and (``with_space``) where it is
    placed in the world (the format's ``space``; None where the format has none)."""
    module = module_for(path)
    space = module.space(Path(path)) if with_space and hasattr(module, "space") else None
    return module.read_labels(Path(path)), space


def write(case, segs, target: Path) -> None:
    """Write ``segs`` as the format that read ``case`` writes its output (``case.fmt``)."""
    module_of_format(case.fmt).write(case, segs, target)


def read_labelled_2d(path: Path, mask_path: Path | None = None) -> tuple:
    """(image, bool mask) of a labelled 2D case of any format: the image as ``read`` gives it; the mask from
    ``mask_path`` (any format ``read_labels`` reads, or a .npz with ``gts``), else from ``gts`` in the case's own
    .npz, else from ``../gts/<name>`` beside it (the dev data's layout). CaseError saying what is missing."""
    from litemedsam.core.errors import CaseError, shown
    from litemedsam.io.npz import read_npz

    path = Path(path)
    case = read(path, None, require_boxes=False)
    if case.dim != "2D":
        raise CaseError("not a 2D case")
    own = [path] if suffix(path.name) == ".npz" else []  # a challenge case may hold its own 'gts'
    candidates = [Path(mask_path)] if mask_path else own + [path.parent.parent / "gts" / path.name]
    problems = []
    for candidate in candidates:
        try:
            # any label file by its format ('gts' or 'segs' of a .npz); another name is read as a .npz, which says
            # what it is instead (a .npy, ...)
            labels = read_labels(candidate)[0] if suffix(candidate.name) else read_npz(candidate, ("gts",))["gts"]
            break
        except CaseError as e:
            problems.append(f"{shown(candidate)}: {e}")
    else:
        raise CaseError("no usable mask ('gts' or a label image): " + "; ".join(problems))
    if labels.shape[:2] != case.image.shape[:2] or labels.ndim != 2:
        raise CaseError(f"its mask has shape {labels.shape}, the image {case.image.shape[:2]}")
    return case.image, labels > 0


def voxel_mm3(case) -> float | None:
    """The volume of one voxel in mm³ where the format gives its spacing (volumes placed in the patient), else None."""
    found = getattr(module_of_format(case.fmt), "voxel_mm3", None)
    try:
        volume = found(case) if found is not None and case.geometry is not None else None
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return volume if volume and np.isfinite(volume) and volume > 0 else None


OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def display(case) -> dict | None:
    """How to show a volume's slices as radiologists read them: flips of columns and rows so that the patient's
    right is on the screen's left and the front (or the head) at the top, and the letters of the four sides;
    None where the format places nothing in the patient (challenge files, 2D images)."""
    axes = getattr(module_of_format(case.fmt), "axes", None)
    if axes is None or case.geometry is None:
        return None
    col, row = axes(case)
    flip_x, flip_y = col in ("R", "A", "S"), row in ("A", "S", "R")  # wanted: columns to L (or P), rows to P (or I)
    right, bottom = (OPPOSITE[col] if flip_x else col), (OPPOSITE[row] if flip_y else row)
    return {"flip_x": flip_x, "flip_y": flip_y,
            "sides": {"top": OPPOSITE[bottom], "bottom": bottom, "left": OPPOSITE[right], "right": right}}
