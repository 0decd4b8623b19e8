"""Small files that declare huge things are refused from their headers, before anything is allocated: JPEG and
TIFF sizes, TIFF pages, NIfTI header extensions; the memory available is read under cgroup v1 as under v2."""
import gzip
import struct

import cv2
import nibabel as nib
import numpy as np
import pytest

from litemedsam.core import limits
from litemedsam.core.errors import CaseError
from litemedsam.io.formats import image, nifti

IMG = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)


def test_declared_image_sizes_and_pages(tmp_path, monkeypatch):
    monkeypatch.setenv("LITEMEDSAM_MAX_CASE_BYTES", str(64 << 20))
    for ext in ("png", "jpg", "tif", "bmp"):
        cv2.imwrite(str(tmp_path / f"a.{ext}"), IMG)
        assert image._decode(tmp_path / f"a.{ext}").shape == (40, 60, 3)
    data = bytearray((tmp_path / "a.jpg").read_bytes())
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = (60000).to_bytes(2, "big") * 2  # a 60000 x 60000 JPEG in 1 KB
    (tmp_path / "huge.jpg").write_bytes(bytes(data))
    with pytest.raises(CaseError, match=r"a JPEG of 60000x60000 pixels \(10\.1 GiB decoded\), more than the limit"):
        image._decode(tmp_path / "huge.jpg")
    cv2.imwritemulti(str(tmp_path / "pages.tif"), [IMG, IMG, IMG])
    with pytest.raises(CaseError, match=r"a TIFF of 3 pages; one 2D image is read per file"):
        image._decode(tmp_path / "pages.tif")
    data = bytearray((tmp_path / "a.tif").read_bytes())
    entries = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0]
    first = struct.unpack_from("<I", data, 4)[0] + 2
    for n in range(entries):  # ImageWidth and ImageLength of 100000
        tag = struct.unpack_from("<H", data, first + 12 * n)[0]
        if tag in (256, 257):
            struct.pack_into("<HII", data, first + 12 * n + 2, 4, 1, 100000)
    (tmp_path / "huge.tif").write_bytes(bytes(data))
    with pytest.raises(CaseError, match=r"a TIFF of 100000x100000 pixels"):
        image._decode(tmp_path / "huge.tif")


def test_nifti_header_extensions_are_bounded(tmp_path):
    volume = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4))
    header = bytearray(volume.header.binaryblock)
    struct.pack_into("<f", header, 108, 1.2e9)  # voxels 1.2 GB in: all of it extensions nibabel would read
    with gzip.open(tmp_path / "bomb.nii.gz", "wb") as f:
        f.write(bytes(header) + b"\x01\0\0\0" + struct.pack("<ii", 1199999000, 0) + bytes(1 << 20))
    with pytest.raises(CaseError, match=r"puts the voxels 1200000000 bytes into the file"):
        nifti.read_image(tmp_path / "bomb.nii.gz")
    nib.save(volume, str(tmp_path / "ok.nii.gz"))
    assert nifti.read_labels(tmp_path / "ok.nii.gz")[0].shape == (4, 8, 8)


def test_memory_available_under_cgroup_v1_and_v2(tmp_path, monkeypatch):
    v1 = (tmp_path / "limit", tmp_path / "usage")
    v1[0].write_text("536870912\n")
    v1[1].write_text("134217728\n")
    monkeypatch.setattr(limits, "CGROUP_MEMORY", ((tmp_path / "absent.max", tmp_path / "absent.current"), v1))
    assert limits.available_memory() == 384 << 20
    with pytest.raises(CaseError, match=r"needs about 600\.0 MiB of memory; 384\.0 MiB is available"):
        limits.check_size(200 << 20, "x", "its volume")
    v1[0].write_text(str((1 << 63) - 4096))  # v1's "no limit"
    assert limits.available_memory() > 384 << 20
