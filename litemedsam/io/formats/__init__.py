"""Case files by format: one reader/writer module per format behind one Case type (litemedsam.io.cases).

| suffix | module | image | boxes | written back as |
|---|---|---|---|---|
| .npz | challenge | `imgs` | `boxes` (or given) | `.npz` with `segs` |
| .nii, .nii.gz | nifti | 3D volume (slices along the third voxel axis) | given | NIfTI, same geometry |
| .nrrd, .mha | itk (SimpleITK, the ``io`` extra) | 3D volume (slices along z) | given | same format and geometry |
| a folder of one DICOM series | dicom (SimpleITK) | 3D volume (slices by position) | given | ``<folder>.nrrd`` |
| .png, .jpg, .jpeg, .tif, .tiff, .bmp | image | 2D image | given | `.png` label image |

The contract every format module keeps (nnU-Net's ``BaseReaderWriter`` is its model; tests/test_formats.py checks
it), its suffixes in litemedsam.io.formats.registry:

- ``read_image(path) -> (voxels, Geometry, modality or None)``: the file's own values (before any intensity
  mapping; a volume (slices, rows, columns), a 2D image (rows, columns[, RGB])), where they lie
  (litemedsam.io.geometry) and the modality the file states; ``DIM``: "2D" or "3D";
- ``read_labels(path) -> (labels, Geometry)``: a label file, oriented as ``read_image`` orients an image;
- ``write(segs, geometry, target)``: the label map in the format and geometry of the image read.

The challenge's .npz is a whole case (image, boxes, clicks, the previous mask): it has ``read_case(path,
require_boxes)`` instead of ``read_image``. ``read`` composes the others: image and geometry, intensities
(litemedsam.io.intensity), boxes (given, or from a label image), the checked Case.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError, shown
from litemedsam.core.measure import measure
from litemedsam.core.safeio import same_file
from litemedsam.io.cases import Case
from litemedsam.io.intensity import case_of_voxels
from litemedsam.io.formats.registry import (CASE_FILES, FORMATS, MODULES, RAW_INTENSITIES, is_case_folder, module_for,
                                            module_name, module_of_format, numbered, output_name, output_owners, suffix)
from litemedsam.io.geometry import Geometry
from litemedsam.io.given_boxes import CaseInputs, boxes_of_label_image, no_boxes_message
from litemedsam.io.lines import given_lines, lines_of

__all__ = ["FORMATS", "MODULES", "RAW_INTENSITIES", "display", "is_case_folder", "module_for", "module_of_format",
           "label_shape", "numbered", "output_name", "output_owners", "plane_image", "read", "read_labelled_2d",
           "read_labels", "read_values", "spacing", "suffix", "voxel_mm3", "write", "check_target"]


def read(path: Path, inputs: CaseInputs | None = None, require_boxes: bool = True) -> Case:
    """The case at ``path`` (CaseError saying what is wrong); ``inputs``: boxes and intensity options given for
    formats that carry none; ``require_boxes`` False: a case without boxes has none (the box-free modes)."""
    path = Path(path)
    module = module_for(path)
    if module_name(module) in CASE_FILES:
        return module.read_case(path, require_boxes)
    inputs = inputs or CaseInputs()
    voxels, geometry, stated = module.read_image(path)
    shape = voxels.shape[:2] if module.DIM == "2D" else voxels.shape
    given, window, fmt = inputs.modality or stated, inputs.window, module_name(module)
    if inputs.lines or inputs.recist is not None:  # RECIST lines prompt instead of boxes
        lines, placed = _lines(path, inputs, module.DIM, shape, geometry)
        case = case_of_voxels(path, voxels, np.zeros((0, 6)), "3D", given, window, stated, placed, fmt=fmt,
                              geometry=geometry)
        return dataclasses.replace(case, lines=lines)
    boxes, absent, placed = _boxes(path, inputs, shape, geometry, require_boxes)
    return case_of_voxels(path, voxels, boxes, module.DIM, given, window, stated, placed, absent=absent, fmt=fmt,
                          geometry=geometry)


def _boxes(path: Path, inputs: CaseInputs, shape: tuple, geometry: Geometry, require: bool) -> tuple:
    """(boxes, label values absent, warnings) of a case whose file carries none: those given (--box, --boxes),
    else those of its label image (--boxes-from-labels; a warning when that file places its voxels otherwise),
    else none (CaseError naming the options when ``require``)."""
    given = inputs.for_case(path)
    if given is not None:
        return np.array(given, np.float64), [], []
    labels = inputs.labels_for(path)
    if labels is None:
        if require:
            raise CaseError(no_boxes_message())
        return np.zeros((0, 2 * len(shape))), [], []
    try:
        label_map, placed = read_labels(labels)
    except CaseError as e:
        raise CaseError(f"its label image {shown(labels.name)}: {e}") from None
    boxes, absent = boxes_of_label_image(label_map, shape, labels.name)
    moved = [] if geometry.placed_like(placed) else [
        f"its label image {shown(labels.name)} is placed otherwise in space (another affine, origin, spacing or "
        f"direction); its boxes are taken in voxel indices"]
    return boxes, absent, moved


def _lines(path: Path, inputs: CaseInputs, dim: str, shape: tuple, geometry: Geometry) -> tuple:
    """(lines, warnings) of a volume whose lines are given (--line, or --recist: a label image of lines of the
    same geometry, litemedsam.io.lines); CaseError for a 2D image or lines that are not usable."""
    if dim != "3D":
        raise CaseError("RECIST lines (--line, --recist) are for volumes, not 2D images")
    given = inputs.recist_for(path)
    if given is None:
        return given_lines(inputs.lines, shape), []
    try:
        labels, placed = read_labels(given)
        lines = lines_of(labels, shape, geometry.spacing)
    except CaseError as e:
        raise CaseError(f"its RECIST lines {shown(given.name)}: {e}") from None
    moved = [] if geometry.placed_like(placed) else [
        f"its RECIST lines {shown(given.name)} are placed otherwise in space (another affine, origin, spacing or "
        f"direction); taken in voxel indices"]
    return lines, moved


def label_shape(path: Path) -> tuple:
    """The shape of the label map of the case at ``path``: from its header where its format can say it (the
    challenge's .npz), else by reading the case."""
    module = module_for(path)
    if module_name(module) in CASE_FILES:
        return module.label_shape(Path(path))
    return read(path, require_boxes=False).label_shape


def read_labels(path: Path) -> tuple:
    """(a label image of any format, oriented as its format's ``read_image`` orients an image, and its Geometry)."""
    return module_for(path).read_labels(Path(path))


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    """Write ``segs`` as the format that read ``case`` writes its output (``case.fmt``), in its geometry; never over
    the case's own file (``check_target``)."""
    check_target(case.path, target)
    module_of_format(case.fmt).write(segs, case.geometry, target)


def check_target(source: Path, target: Path) -> None:
    """CaseError when writing ``target`` would replace the input file ``source`` (the same path, or a symbolic or
    hard link to it): every writer of labels checks this (``write``), and the callers before the work."""
    if same_file(source, target):
        raise CaseError(f"its output {shown(target)} is the input file itself (or a link to it); not overwritten")


def read_labelled_2d(path: Path, mask_path: Path | None = None) -> tuple:
    """(image, bool mask) of a labelled 2D case of any format: the image as ``read`` gives it; the mask from
    ``mask_path`` (any format ``read_labels`` reads, or a .npz with ``gts``), else from ``gts`` in the case's own
    .npz, else from ``../gts/<name>`` beside it (the dev data's layout). CaseError saying what is missing."""
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


def spacing(case: Case) -> tuple | None:
    """The distance between a volume's slices, rows and columns in mm (the array's axes z, y, x) where its file
    gives it (volumes placed in the patient, challenge files with ``spacing``), else None."""
    return case.geometry.spacing if case.dim == "3D" else None


def voxel_mm3(case: Case) -> float | None:
    """The volume of one voxel in mm³ where the file gives its spacing, else None."""
    mm = spacing(case)
    return float(np.prod(mm)) if mm else None


def read_values(path: Path) -> np.ndarray:
    """A volume file's own voxel values (Hounsfield units of a CT, before any window), oriented as ``read`` gives
    its image."""
    return module_for(path).read_image(Path(path))[0]


def measure_case(case: Case, labels: np.ndarray, values: np.ndarray | None = None, names: dict | None = None) -> list:
    """Each object's measurements (litemedsam.core.measure: mL, intensities, RECIST's long and short diameters in
    mm) of ``labels`` over ``values``, by default the file's own values (HU of a CT) where its format keeps them,
    else the image as the model sees it (0-255, colours averaged)."""
    if values is None and case.fmt in RAW_INTENSITIES and case.dim == "3D":
        values = read_values(case.path)
    if values is None or values.shape != labels.shape:
        values = case.image if case.image.ndim == labels.ndim else case.image.mean(axis=-1)
    return measure(labels, values, spacing(case), names)


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
    letters = case.geometry.axes  # (slices, rows, columns)
    mm = spacing(case) or (1.0, 1.0, 1.0)
    planes = {}
    for plane, (rows, cols) in PLANES.items():
        # placed nowhere: a cut across the slices shows them upwards (the challenge's volumes, converted from
        # NIfTI, have their slices from the feet up), a slice as stored
        view = {"name": f"{plane} plane", "flip_x": False, "flip_y": plane != "z", "sides": {},
                "aspect": mm[rows] / mm[cols]}
        if letters is not None:
            col, row = letters[cols], letters[rows]
            # wanted: columns to L (or P), rows to P or I
            flip_x, flip_y = col in ("R", "A", "S"), row in ("A", "S", "R")
            right, bottom = (OPPOSITE[col] if flip_x else col), (OPPOSITE[row] if flip_y else row)
            view.update(name=PLANE_NAMES[letters["zyx".index(plane)]], flip_x=flip_x, flip_y=flip_y,
                        sides={"top": OPPOSITE[bottom], "bottom": bottom, "left": OPPOSITE[right], "right": right})
        planes[plane] = view
    return planes
