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

from litemedsam.io.cases import usable_spacing
from litemedsam.io.formats.registry import (FORMATS, MODULES, RAW_INTENSITIES, is_case_folder, module_for, module_of_format,
                                         numbered, output_name, output_owners, suffix)

__all__ = ["FORMATS", "MODULES", "RAW_INTENSITIES", "display", "is_case_folder", "module_for", "module_of_format",
           "label_shape", "numbered", "output_name", "output_owners", "plane_image", "read", "read_labelled_2d", "read_labels",
           "read_values", "spacing", "suffix", "voxel_mm3", "write"]


def read(path: Path, inputs=None, require_boxes: bool = True):
    if inputs is not None and inputs.labels is not None and inputs.read_labels is None:
        inputs = replace(inputs, read_labels=read_labels)
    return module_for(path).read(Path(path), inputs, require_boxes)


def label_shape(path: Path) -> tuple:
    """The shape of the label map of the case at ``path``: from its header where its format can say it (the
    challenge's .npz), else by reading the case."""
    module = module_for(path)
    if hasattr(module, "label_shape"):
        return module.label_shape(Path(path))
    return read(path, require_boxes=False).label_shape


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


def spacing(case) -> tuple | None:
    """The distance between a volume's slices, rows and columns in mm (the array's axes z, y, x) where the format
    gives it (volumes placed in the patient, challenge files with ``spacing``), else None. Each format's own
    ``spacing`` lists them as the file does: columns, rows, slices."""
    found = getattr(module_of_format(case.fmt), "spacing", None)
    try:
        mm = found(case) if found is not None and case.geometry is not None else None
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return tuple(mm[::-1]) if mm and len(mm) == 3 and usable_spacing(mm) else None


def voxel_mm3(case) -> float | None:
    """The volume of one voxel in mm³ where the format gives its spacing, else None."""
    mm = spacing(case)
    return float(np.prod(mm)) if mm else None


def read_values(path: Path) -> np.ndarray:
    """A volume file's own voxel values (Hounsfield units of a CT, before any window), oriented as ``read`` gives
    its image: each format's reader of label files reads them."""
    return module_for(path).read_labels(Path(path))


OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
PLANES = {"z": (1, 2), "y": (0, 2), "x": (0, 1)}  # a plane (the volume axis it keeps fixed) -> its rows', columns' axes
PLANE_NAMES = {"S": "axial", "I": "axial", "A": "coronal", "P": "coronal", "L": "sagittal", "R": "sagittal"}


def plane_image(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D cut of a (slices, rows, columns[, channels]) array at ``index`` of the axis ``plane`` names."""
    return volume[(slice(None),) * "zyx".index(plane) + (index,)]


def display(case) -> dict | None:
    """How to show a volume's three planes (``z``: its slices, ``y``: a row across the slices, ``x``: a column
    across them) as radiologists read them: per plane, its name (axial, coronal, sagittal, from the file's
    orientation), flips of columns and rows so that the patient's right is on the screen's left and the front
    (or the head) at the top, the letters of the four sides, and ``aspect``: a pixel's height over its width (the
    spacing). No flips or letters where the format places nothing in the patient; None for a 2D image."""
    if case.dim != "3D":
        return None
    axes = getattr(module_of_format(case.fmt), "axes", None)
    letters = None if axes is None or case.geometry is None else axes(case)[::-1]  # (slices, rows, columns)
    mm = spacing(case) or (1.0, 1.0, 1.0)
    planes = {}
    for plane, (rows, cols) in PLANES.items():
        # placed nowhere: a cut across the slices shows them upwards (the challenge's volumes, converted from
        # NIfTI, have their slices from the feet up), a slice as stored
        view = {"name": f"{plane} plane", "flip_x": False, "flip_y": plane != "z", "sides": {},
                "aspect": mm[rows] / mm[cols]}
        if letters is not None:
            col, row = letters[cols], letters[rows]
            flip_x, flip_y = col in ("R", "A", "S"), row in ("A", "S", "R")  # wanted: columns to L (or P), rows to P or I
            right, bottom = (OPPOSITE[col] if flip_x else col), (OPPOSITE[row] if flip_y else row)
            view.update(name=PLANE_NAMES[letters["zyx".index(plane)]], flip_x=flip_x, flip_y=flip_y,
                        sides={"top": OPPOSITE[bottom], "bottom": bottom, "left": OPPOSITE[right], "right": right})
        planes[plane] = view
    return planes
