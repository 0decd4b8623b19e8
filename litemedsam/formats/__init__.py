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

from pathlib import Path

from litemedsam.formats.registry import MODULES, is_case_folder, module_for, numbered, output_name, output_owners, suffix

__all__ = ["MODULES", "is_case_folder", "module_for", "numbered", "output_name", "output_owners", "read", "suffix",
           "write"]


def read(path: Path, inputs=None, require_boxes: bool = True):
    return module_for(path).read(Path(path), inputs, require_boxes)


def write(case, segs, target: Path) -> None:
    module_for(case.path).write(case, segs, target)
