"""NIfTI volumes (.nii, .nii.gz) via nibabel.

Axes: a volume of voxel shape (I, J, K) becomes the (D, H, W) = (K, J, I) array the pipeline takes: slices
along the third voxel axis (k), rows along the second (j), columns along the first (i); so a box
``x0,y0,z0,x1,y1,z1`` is in voxel indices (x = i, y = j, z = k), inclusive, whatever the orientation in
space (the affine is not applied: what the file's voxel grid is, the model sees; it places the case, its
Geometry). The label map is written as a NIfTI of the same voxel shape, affine, qform/sform and their codes, zooms
and units, with integer labels (uint8, uint16 above 255 boxes) and no intensity scaling.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from litemedsam.core.errors import CaseError, reason
from litemedsam.core.limits import check_file, check_size, human
from litemedsam.core.safeio import write_bytes
from litemedsam.io.geometry import Geometry

DIM = "3D"


MAX_EXTENSIONS = 16 << 20  # bytes of header extensions read (what lies between the header and the voxels)


def _check_header(path: Path) -> None:
    """CaseError when the header puts the voxels past MAX_EXTENSIONS: nibabel reads every byte before them (header
    extensions) when it loads the header, so a few hundred KB of .nii.gz could make it decompress gigabytes."""
    try:
        with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as handle:
            head = handle.read(176)
    except (OSError, EOFError, zlib.error) as e:
        raise CaseError(f"not a readable NIfTI file ({type(e).__name__}: {reason(e, path)})") from None
    for order in "<>":
        if len(head) >= 112 and struct.unpack(order + "i", head[:4])[0] == 348:
            offset = struct.unpack(order + "f", head[108:112])[0]
        elif len(head) >= 176 and struct.unpack(order + "i", head[:4])[0] == 540:
            offset = struct.unpack(order + "q", head[168:176])[0]
        else:
            continue
        if not math.isfinite(offset) or offset > MAX_EXTENSIONS + 544:
            raise CaseError(f"its header puts the voxels {offset:.0f} bytes into the file (header extensions); at most "
                            f"{human(MAX_EXTENSIONS)} of extensions are read")
        return


def _without_extensions(path: Path):
    """The NIfTI image at ``path`` read without its header extensions (None when it cannot be read so either).
    litemedsam uses none, and nibabel fails on some it parses: with pydicom installed, a DICOM extension whose
    bytes 4-5 are not UTF-8 stops the whole file with a UnicodeDecodeError."""
    import nibabel as nib

    class Unread(nib.nifti1.Nifti1Extensions):
        @classmethod
        def from_fileobj(cls, fileobj, size, byteswap):
            return cls()

    for image_class in (nib.Nifti1Image, nib.Nifti2Image):
        header_class = type("Header", (image_class.header_class,), {"exts_klass": Unread})
        try:
            reader: Any = type(image_class.__name__, (image_class,), {"header_class": header_class})
            return reader.from_filename(str(path))
        except Exception:
            continue
    return None


def _load(path: Path) -> tuple[Any, tuple]:
    """The nibabel image (header read, data not yet) with its voxel shape checked and sized."""
    import nibabel as nib

    check_file(path)
    _check_header(path)
    try:
        image = nib.load(str(path))
    except Exception as e:  # nibabel's own errors, gzip, zlib, struct: the file is not a NIfTI it can read
        image = _without_extensions(path)  # unless only a header extension stopped it
        if image is None:
            raise CaseError(f"not a readable NIfTI file ({type(e).__name__}: {reason(e, path)})") from None
    return image, checked_shape(image)


def checked_shape(image) -> tuple:
    """The 3D voxel shape of a nibabel image (trailing axes of 1 dropped), checked and sized; CaseError if it is
    no NIfTI image of one volume."""
    import nibabel as nib

    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise CaseError(f"not a NIfTI image (nibabel reads it as {type(image).__name__})")
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3 or min(shape) < 1:
        raise CaseError(f"a NIfTI case must be a 3D volume, got voxel shape {image.shape}")
    need = int(np.prod(shape)) * max(image.get_data_dtype().itemsize, 4)
    check_size(need, f"its volume {shape} needs {human(need)}", "its volume")
    return shape


def voxels(image, shape: tuple, path: Path | None = None) -> tuple:
    """(the (K, J, I) array of a nibabel image of voxel shape ``shape`` (I, J, K), its Geometry)."""
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as e:
        raise CaseError(f"its voxel data cannot be read ({type(e).__name__}: {reason(e, path)})") from None
    geometry = Geometry.of(image.header.get_zooms()[:3], image.affine, image)  # zooms: NIfTI's usual mm
    return data.reshape(shape).transpose(2, 1, 0), geometry  # (I, J, K) -> (K, J, I)


def read_image(path: Path) -> tuple:
    return *voxels(*_load(path), path), None


def read_labels(path: Path) -> tuple:
    return voxels(*_load(path), path)


def labels_image(segs: np.ndarray, geometry: Geometry):
    """The label map (K, J, I) as a nibabel image of the source image's class, voxel shape, affine, qform/sform
    and their codes, zooms and units; integer labels, no intensity scaling."""
    source = geometry.source
    labels = np.ascontiguousarray(segs.transpose(2, 1, 0)).reshape(source.shape)
    out = type(source)(labels, None, source.header.copy())
    out.set_data_dtype(labels.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    return out


def write(segs: np.ndarray, geometry: Geometry, target: Path) -> None:
    data = labels_image(segs, geometry).to_bytes()
    if target.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    write_bytes(target, data)
