"""A hostile probe of `litemedsam infer`: builds many kinds of bad input and run conditions, runs the real
command line (real ONNX models) on them and checks, for each kind, the exit code, the message, and what must
always hold: no traceback, the inputs unchanged, nothing written outside the output folder, no temporary
file left behind.

    python tests/hostile_probe.py [--markdown] [--keep DIR] [--memory]

prints one row per kind (docs/bad-input.md's table of bad inputs is this output) and exits 1 if any kind fails;
``--memory`` also runs each file kind alone and prints its peak memory and seconds.
Bad case files are probed together in one run (a bad file must never cost the other cases); run-wide
conditions (options, folders, router, models, signals, a full disk) each get their own run.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BOMB_LIMIT = 64 << 20  # LITEMEDSAM_MAX_CASE_BYTES of the batch run


# ---- making files ------------------------------------------------------------------------------------

def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def npy_header(shape, descr="|u1") -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def zip_bytes(members: dict, method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def patched(data: bytes, local_offset: int, central_offset: int, value: int) -> bytes:
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset:start + offset + 2] = struct.pack("<H", value)
            start += 4
    return bytes(data)


def mha_header(data_file: str) -> bytes:
    """A MetaImage header whose voxels are in ``data_file`` (a detached data file)."""
    return (f"ObjectType = Image\nNDims = 3\nDimSize = 4 4 2\nElementType = MET_SHORT\n"
            f"ElementDataFile = {data_file}\n").encode()


RECONSTRUCT = b"\x80\x03cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
RECORD = {"z_min": 1, "z_max": 2, "z_mid": 1, "z_mid_x_min": 2, "z_mid_y_min": 2, "z_mid_x_max": 20, "z_mid_y_max": 20}


def records_npz(pickled: bytes) -> bytes:
    """A 2025-layout case whose ``boxes`` member is ``pickled`` behind NumPy's object-array header."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return zip_bytes(
        {
            "imgs.npy": npy_bytes(np.zeros((3, 24, 24), np.uint8)),
            "spacing.npy": npy_bytes(np.ones(3)),
            "boxes.npy": b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + pickled,
        }
    )


def clicks_case(clicks=None, boxes=True, **extra) -> bytes:
    """A 2025-layout volume (6 x 32 x 32) with one box, ``clicks`` (default: one foreground click), spacing 1 mm."""
    one = np.empty(1, dtype=object)
    one[0] = {"fg": [[2, 16, 16]], "bg": []}
    arrays = {"imgs": np.random.default_rng(2).integers(0, 255, (6, 32, 32), dtype=np.uint8), "spacing": np.ones(3),
              "clicks": one if clicks is None else clicks, **extra}
    if boxes:
        arrays["boxes"] = np.array([RECORD], dtype=object)
    return npz_bytes(**arrays)


def objects(values: list) -> np.ndarray:
    """An object array of ``values`` (NumPy would make a 2-D array of equal-length lists)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def huge_jpeg() -> bytes:
    import cv2

    data = bytearray(cv2.imencode(".jpg", IMAGE)[1].tobytes())
    at = data.find(b"\xff\xc0")
    data[at + 5:at + 9] = (60000).to_bytes(2, "big") * 2
    return bytes(data)


def tiff_pages(n: int) -> bytes:
    import cv2

    with tempfile.TemporaryDirectory() as tmp:
        cv2.imwritemulti(f"{tmp}/p.tif", [IMAGE] * n)
        return Path(f"{tmp}/p.tif").read_bytes()


def extension_bomb() -> bytes:
    import gzip

    import nibabel as nib

    header = bytearray(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)).header.binaryblock)
    struct.pack_into("<f", header, 108, 1.2e9)
    return gzip.compress(bytes(header) + b"\x01\0\0\0" + struct.pack("<ii", 1199999000, 0) + bytes(1 << 20))


def dicom_gap(folder: Path) -> None:
    import pydicom

    source = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / "98892001" / "CT5N"
    shutil.copytree(source, folder)
    (folder / "2693").unlink()


IMAGE = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
BOX = np.array([[8, 8, 40, 40]])


def nifti_bytes(data, shape=None) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(data, np.eye(4))
    if shape is not None:
        image.header.set_data_shape(shape)
    return image.header.binaryblock + bytes(4) + data.tobytes()


def png_bytes() -> bytes:
    import cv2

    return cv2.imencode(".png", np.full((32, 32), 128, np.uint8))[1].tobytes()


class RunsCommand:
    """Pickles as a call of os.system: a loader that runs pickles would create PWNED in the working folder."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)


def case(imgs=IMAGE, boxes=BOX, **extra) -> bytes:
    return npz_bytes(imgs=imgs, boxes=boxes, **extra)


def members(**override) -> dict:
    return {"imgs.npy": npy_bytes(IMAGE), "boxes.npy": npy_bytes(BOX), **override}


def bomb() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, imgs=np.zeros((8192, 8192, 3), np.uint8), boxes=BOX)  # 192 MiB in ~200 KB
    return buf.getvalue()


def corrupt_deflate() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, imgs=IMAGE, boxes=BOX)
    data = bytearray(buf.getvalue())
    data[200:260] = bytes(60)
    return bytes(data)


# ---- the kinds -----------------------------------------------------------------------------------------

@dataclass
class Kind:
    name: str
    expect: str  # "failed", "ok" (maybe with a warning) or "skipped" for a file; the exit code for a run
    message: str  # regular expression the message must match
    make: object = None  # file kinds: (folder, name) -> None; run kinds: (Probe) -> (args, env) or a result
    file: str = ""  # file kinds: the case file name
    got: str = ""
    code: str = ""
    ok: bool = False
    notes: list = field(default_factory=list)
    skipped: str = ""  # why this kind could not run here (it then neither passes nor fails)


def write(data) -> object:
    return lambda folder, name: (folder / name).write_bytes(data() if callable(data) else data)


def link(target) -> object:
    return lambda folder, name: (folder / name).symlink_to(target(folder) if callable(target) else target)


FILE_KINDS = [
    Kind(
        "random bytes",
        "failed",
        r"not a valid \.npz file \(it is not a zip archive\)",
        write(lambda: np.random.default_rng(1).bytes(4096)),
    ),
    Kind("empty file", "failed", r"not a valid \.npz file", write(b"")),
    Kind("text file named .npz", "failed", r"not a valid \.npz file", write(b"imgs,boxes\n1,2\n")),
    Kind("link to a text file", "failed", r"not a valid \.npz file", link(lambda f: f.parent / "notes.txt")),
    Kind(".npy saved as .npz", "failed", r"a \.npy file \(a single array\)", write(npy_bytes(IMAGE))),
    Kind("truncated zip", "failed", r"truncated or damaged", write(lambda: case()[:1000])),
    Kind(
        "corrupt deflate data",
        "failed",
        r"not a readable \.npz file \((its compressed data is corrupt|it is damaged)",
        write(corrupt_deflate),
    ),
    Kind("no 'imgs'", "failed", r"missing array\(s\) imgs; found: boxes", write(npz_bytes(boxes=BOX))),
    Kind(
        "member named with a newline and ERROR",
        "failed",
        r"found: boxes, x\\nERROR forged member",
        write(zip_bytes({"boxes.npy": npy_bytes(BOX), "x\nERROR forged member.npy": npy_bytes(BOX)})),
    ),
    Kind("no 'boxes'", "failed", r"missing array\(s\) boxes", write(npz_bytes(imgs=IMAGE))),
    Kind(
        "member that is not an array",
        "failed",
        r"member 'imgs' is not a NumPy array",
        write(zip_bytes(members(**{"imgs.npy": b"plain text"}))),
    ),
    Kind(
        "empty member", "failed", r"member 'imgs' is not a NumPy array", write(zip_bytes(members(**{"imgs.npy": b""})))
    ),
    Kind("encrypted member", "failed", r"encrypted", write(patched(zip_bytes(members()), 6, 8, 1))),
    Kind(
        "unsupported compression method",
        "failed",
        r"compression method 99",
        write(patched(zip_bytes(members()), 8, 10, 99)),
    ),
    Kind(
        "member path outside the archive (../imgs.npy)",
        "failed",
        r"missing array\(s\) imgs",
        write(zip_bytes({"../imgs.npy": npy_bytes(IMAGE), "boxes.npy": npy_bytes(BOX)})),
    ),
    Kind(
        "pickled objects in 'imgs'",
        "failed",
        r"'imgs' holds Python objects",
        write(lambda: case(imgs=np.array([object()], dtype=object))),
    ),
    Kind(
        "dict boxes (2025 layout) missing keys",
        "failed",
        r"box 1 of 'boxes' lacks z_max, z_mid",
        write(lambda: case(boxes=np.array([{"z_min": 1}], dtype=object))),
    ),
    Kind(
        "2025 boxes whose pickle runs a command",
        "failed",
        r"names (posix|os)\.system; only arrays of dicts of numbers are read \(nothing from the file was run\)",
        write(lambda: case(boxes=np.array([RunsCommand()], dtype=object))),
    ),
    Kind(
        "2025 boxes holding a string",
        "failed",
        r"'boxes' item 0: 'z_min' must name a finite number",
        write(lambda: case(boxes=np.array([{"z_min": "1; rm -rf /"}], dtype=object))),
    ),
    Kind(
        "header declares 52 GB, holds 100 bytes",
        "failed",
        r"declares 48\.4 GiB .* holds only 100 bytes",
        write(zip_bytes(members(**{"imgs.npy": npy_header((52000000000,)) + bytes(100)}))),
    ),
    Kind(
        "header declares 320 GB 3D volume",
        "failed",
        r"declares 298\.0 GiB",
        write(zip_bytes(members(**{"imgs.npy": npy_header((1000, 20000, 16000)) + bytes(10)}))),
    ),
    Kind("decompression bomb (192 MiB in 200 KB)", "failed", r"more than the limit of 64\.0 MiB per case", write(bomb)),
    Kind(
        "malformed .npy header",
        "failed",
        r"not a readable \.npz file",
        write(zip_bytes(members(**{"imgs.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': ???}\n"}))),
    ),
    Kind(
        ".npy format version 9",
        "failed",
        r"format version \(9, 0\)",
        write(zip_bytes(members(**{"imgs.npy": b"\x93NUMPY\x09\x00" + bytes(20)}))),
    ),
    Kind(
        "negative shape in header",
        "failed",
        r"not a readable|invalid shape",
        write(zip_bytes(members(**{"imgs.npy": npy_header((-5, 4))}))),
    ),
    Kind("1-D 'imgs'", "failed", r"2D 'imgs' must be HxW or HxWx3", write(lambda: case(imgs=np.zeros(10, np.uint8)))),
    Kind("4-D 'imgs'", "failed", r"must be", write(lambda: case(imgs=np.zeros((2, 4, 4, 3), np.uint8)))),
    Kind(
        "2D image with 7 channels", "failed", r"HxW or HxWx3", write(lambda: case(imgs=np.zeros((8, 8, 7), np.uint8)))
    ),
    Kind("empty image", "failed", r"'imgs' is empty", write(lambda: case(imgs=np.zeros((0, 8, 3), np.uint8)))),
    Kind("NaN intensities", "failed", r"NaN or infinite", write(lambda: case(imgs=np.full((8, 8), np.nan)))),
    Kind("intensities above 255", "failed", r"0-255", write(lambda: case(imgs=np.full((8, 8), 300.0)))),
    Kind("negative intensities", "failed", r"0-255", write(lambda: case(imgs=np.full((8, 8), -3, np.int16)))),
    Kind("complex 'imgs'", "failed", r"must be numeric", write(lambda: case(imgs=np.zeros((8, 8), np.complex64)))),
    Kind("text 'imgs'", "failed", r"must be numeric", write(lambda: case(imgs=np.array([["a", "b"], ["c", "d"]])))),
    Kind("NaN box", "failed", r"'boxes' contains NaN", write(lambda: case(boxes=np.array([[0, 0, np.nan, 5]])))),
    Kind(
        "infinite box",
        "failed",
        r"'boxes' contains NaN or infinite",
        write(lambda: case(boxes=np.array([[0, 0, np.inf, 5]]))),
    ),
    Kind(
        "boxes with 5 columns", "failed", r"4 \(2D\) or 6 \(3D\) columns", write(lambda: case(boxes=np.zeros((2, 5))))
    ),
    Kind("3-D 'boxes' array", "failed", r"Nx4 \(2D\) or Nx6 \(3D\)", write(lambda: case(boxes=np.zeros((2, 2, 4))))),
    Kind("text boxes", "failed", r"'boxes' must be numeric", write(lambda: case(boxes=np.array(["a", "b", "c", "d"])))),
    Kind("boolean boxes", "failed", r"'boxes' must be numeric", write(lambda: case(boxes=np.ones((1, 4), bool)))),
    Kind("name says 2D, boxes are 3D", "failed", r"name says 2D", write(lambda: case(boxes=np.zeros((1, 6))))),
    Kind(
        "name says 3D, image is 2D",
        "failed",
        r"3D 'imgs' must be DxHxW",
        write(lambda: case(imgs=np.zeros((8, 8), np.uint8), boxes=np.zeros((1, 6)))),
    ),
    Kind("broken symbolic link", "failed", r"a broken symbolic link", link(lambda f: f / "nowhere.npz")),
    Kind("symbolic link loop", "failed", r"a symbolic link loop", link(lambda f: f / "2DBox_CT_loop.npz")),
    Kind("newline and ERROR in the name", "failed", r"not a valid \.npz file", write(b"x")),
    Kind(
        "box with min > max",
        "ok",
        r"has min > max; label 1 left empty",
        write(lambda: case(boxes=np.array([[30, 8, 10, 40]]))),
    ),
    Kind(
        "box outside the image",
        "ok",
        r"lies outside the image",
        write(lambda: case(boxes=np.array([[100, 100, 120, 120]]))),
    ),
    Kind(
        "box coordinate 1e300",
        "ok",
        r"\[0, 0, 1e\+300, 1e\+300\] extends beyond the image; clipped",
        write(lambda: case(boxes=np.array([[0, 0, 1e300, 1e300]]))),
    ),
    Kind(
        "box coordinate -1e300",
        "ok",
        r"lies outside the image",
        write(lambda: case(boxes=np.array([[-1e300, 0, -1e299, 5]]))),
    ),
    Kind("no boxes (0 x 4)", "ok", r"^$", write(lambda: case(boxes=np.zeros((0, 4))))),
    Kind(
        "3D object on one slice",
        "ok",
        r"^$",
        write(
            lambda: case(
                imgs=np.random.default_rng(2).integers(0, 255, (3, 40, 40), np.uint8),
                boxes=np.array([[5, 5, 1, 30, 30, 1]]),
                spacing=np.ones(3),
            )
        ),
    ),
    Kind("file name of 255 bytes", "ok", r"^$", write(lambda: case())),
    Kind("file name that is not UTF-8", "ok", r"^$", write(lambda: case())),
    Kind("upper-case .NPZ suffix", "ok", r"^$", write(lambda: case())),
    Kind(
        "hidden file .x.npz",
        "skipped",
        r"hidden file named \*\.npz: .*names starting with '\.' are not cases",
        write(lambda: case()),
    ),
    Kind(
        "random bytes named .nii.gz",
        "failed",
        r"not a readable NIfTI file",
        write(lambda: np.random.default_rng(2).bytes(2048)),
    ),
    Kind(
        "NIfTI volume without boxes",
        "failed",
        r"holds no boxes: give them with --box .*--boxes-from-labels",
        write(lambda: nifti_bytes(np.zeros((8, 8, 4), np.int16))),
    ),
    Kind(
        "NIfTI header declaring 16 GB",
        "failed",
        r"needs 29\.8 GiB, more than the limit",
        write(lambda: nifti_bytes(np.zeros((2, 2, 2), np.int16), shape=(2000, 2000, 2000))),
    ),
    Kind("truncated PNG", "failed", r"not a readable PNG image", write(lambda: png_bytes()[:60])),
    Kind(
        "PNG declaring 100000x100000 pixels",
        "failed",
        r"a PNG of 100000x100000 pixels \(9\.3 GiB decoded\)",
        write(lambda: png_bytes()[:16] + (100000).to_bytes(4, "big") * 2 + png_bytes()[24:]),
    ),
    Kind(
        "folder of damaged DICOM files",
        "failed",
        r"it holds no DICOM series GDCM can read",
        lambda folder, name: [
            (folder / name).mkdir(),
            (folder / name / "a.dcm").write_bytes(bytes(128) + b"DICM" + np.random.default_rng(3).bytes(500)),
        ],
    ),
    Kind(
        "MetaImage whose data file is /etc/passwd",
        "failed",
        r"names the data file '/etc/passwd': only a file beside",
        write(lambda: mha_header("/etc/passwd")),
    ),
    Kind(
        "MetaImage whose data file is ../outside",
        "failed",
        r"names the data file '\.\./outside/victim\.txt'",
        write(lambda: mha_header("../outside/victim.txt")),
    ),
    Kind(
        "MetaImage whose data files are a LIST",
        "failed",
        r"names the data file 'LIST'",
        write(lambda: mha_header("LIST\n/etc/passwd")),
    ),
    Kind(
        "MetaImage whose data file is a FIFO beside it",
        "failed",
        r"is not a regular file \(a link, FIFO or device",
        lambda folder, name: [os.mkfifo(folder / "probe.fifo"), (folder / name).write_bytes(mha_header("probe.fifo"))],
    ),
    Kind(
        "NRRD whose data file is /dev/zero",
        "failed",
        r"names the data file '/dev/zero'",
        write(lambda: b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 2\nencoding: raw\ndata file: /dev/zero\n"),
    ),
    Kind(
        "2025 boxes pickle: _reconstruct of 10^8 elements (450 bytes)",
        "failed",
        r"in a way NumPy never writes",
        write(lambda: records_npz(RECONSTRUCT + b"J\x00\xe1\xf5\x05\x85C\x01b\x87R.")),
    ),
    Kind(
        "2025 boxes pickle: one dict referenced 10^6 times",
        "failed",
        r"holds 1000000 records; a case holds at most 65535",
        write(lambda: records_npz(__import__("pickle").dumps([RECORD] * 1000000, protocol=3))),
    ),
    Kind(
        "65536 boxes",
        "failed",
        r"65536 boxes; a case holds at most 65535 objects",
        write(lambda: case(boxes=np.tile(BOX, (65536, 1)))),
    ),
    Kind(
        "JPEG declaring 60000x60000 pixels",
        "failed",
        r"a JPEG of 60000x60000 pixels \(10\.1 GiB decoded\)",
        write(lambda: huge_jpeg()),
    ),
    Kind(
        "TIFF of 3 pages", "failed", r"a TIFF of 3 pages; one 2D image is read per file", write(lambda: tiff_pages(3))
    ),
    Kind(
        "NIfTI with 1.2 GB of header extensions (1 MB gzipped)",
        "failed",
        r"puts the voxels 1200000000 bytes into the file",
        write(lambda: extension_bomb()),
    ),
    Kind(
        "DICOM series with a missing slice",
        "failed",
        r"not evenly spaced: 5\.00 mm between slices 1 and 2",
        lambda folder, name: dicom_gap(folder / name),
    ),
    Kind(
        "2025 clicks: one 10,000-click dict referenced 65,535 times (issue 34, C14)",
        "failed",
        r"'clicks' holds 655350000 clicks in all; a case takes at most 1000",
        write(lambda: clicks_case(objects([{"fg": [[1, 2, 3]] * 10000, "bg": []}] * 65535))),
    ),
    Kind(
        "2025 clicks as an integer array (C03)",
        "failed",
        r"'clicks' must be an object array of one dict per class",
        write(lambda: clicks_case(np.array([[2, 16, 16]]))),
    ),
    Kind(
        "2025 prev_pred holding label 300 for one box (C42)",
        "ok",
        r"labels that are none of its 1 objects \(300\)",
        write(lambda: clicks_case(prev_pred=np.full((6, 32, 32), 300, np.uint16))),
    ),
    Kind(
        "2025 clicks with spacing 5e-324 mm (C32)",
        "ok",
        r"'spacing' is not 3 numbers of mm",
        write(lambda: clicks_case(spacing=np.full(3, 5e-324))),
    ),
    Kind(
        "2025: 101 objects built from clicks alone (C16)",
        "failed",
        r"a case builds at most 100 objects from clicks",
        write(
            lambda: clicks_case(objects([{"fg": [[2, i % 32, i // 32]], "bg": []} for i in range(101)]), boxes=False)
        ),
    ),
    Kind("FIFO named .npz", "skipped", r"FIFO named", lambda folder, name: os.mkfifo(folder / name)),
    Kind("folder named .npz", "skipped", r"folder named", lambda folder, name: (folder / name).mkdir()),
]

SPECIAL_NAMES = {
    "newline and ERROR in the name": "2DBox_CT_x\nERROR forged.npz",
    "file name of 255 bytes": "2DBox_CT_" + "n" * 242 + ".npz",
    "file name that is not UTF-8": os.fsdecode(b"2DBox_CT_\xff\xfe.npz"),
    "upper-case .NPZ suffix": "2DBox_CT_upper.NPZ",
    "hidden file .x.npz": ".2DBox_CT_hidden.npz",
    "symbolic link loop": "2DBox_CT_loop.npz",
    "name says 3D, image is 2D": "3DBox_CT_flat.npz",
    "3D object on one slice": "3DBox_CT_oneslice.npz",
    "random bytes named .nii.gz": "CT_probe_random.nii.gz",
    "NIfTI volume without boxes": "MR_probe_noboxes.nii",
    "NIfTI header declaring 16 GB": "CT_probe_huge.nii",
    "truncated PNG": "XRay_probe_truncated.png",
    "folder of damaged DICOM files": "CT_probe_dicom",
    "PNG declaring 100000x100000 pixels": "XRay_probe_bomb.png",
    "MetaImage whose data file is /etc/passwd": "CT_probe_passwd.mha",
    "MetaImage whose data file is ../outside": "CT_probe_up.mha",
    "MetaImage whose data files are a LIST": "CT_probe_list.mha",
    "MetaImage whose data file is a FIFO beside it": "CT_probe_fifo.mha",
    "NRRD whose data file is /dev/zero": "CT_probe_zero.nrrd",
    "2025 boxes pickle: _reconstruct of 10^8 elements (450 bytes)": "CT_probe_reconstruct.npz",
    "2025 boxes pickle: one dict referenced 10^6 times": "CT_probe_memo.npz",
    "JPEG declaring 60000x60000 pixels": "XRay_probe_huge.jpg",
    "TIFF of 3 pages": "Microscopy_probe_pages.tif",
    "NIfTI with 1.2 GB of header extensions (1 MB gzipped)": "CT_probe_extensions.nii.gz",
    "DICOM series with a missing slice": "CT_probe_gap",
    "2025 clicks: one 10,000-click dict referenced 65,535 times (issue 34, C14)": "CT_probe_click_memo.npz",
    "2025 clicks as an integer array (C03)": "CT_probe_click_ints.npz",
    "2025 prev_pred holding label 300 for one box (C42)": "CT_probe_prev300.npz",
    "2025 clicks with spacing 5e-324 mm (C32)": "CT_probe_tiny_spacing.npz",
    "2025: 101 objects built from clicks alone (C16)": "CT_probe_seeds.npz",
}
for number, kind in enumerate(FILE_KINDS, 1):
    kind.file = SPECIAL_NAMES.get(kind.name, f"2DBox_CT_probe{number:02d}.npz")


def shown(name: str) -> str:
    from litemedsam.core.errors import shown as _shown

    return _shown(name)


class Probe:
    def __init__(self, root: Path):
        self.root = root
        self.victim = root / "outside" / "victim.txt"
        self.victim.parent.mkdir(parents=True)
        self.victim.write_text("must never change")
        self.count = 0

    def folder(self, *cases) -> Path:
        """A fresh input folder holding valid tiny cases with the given names."""
        self.count += 1
        folder = self.current = self.root / f"run{self.count:02d}"
        (folder / "in").mkdir(parents=True)
        for name in cases:
            (folder / "in" / name).write_bytes(case())
        return folder

    def snapshot(self) -> None:
        """The digests of the current input folder, taken just before its run."""
        self.before = digest_tree(self.current / "in")

    def run(self, args, env=None, timeout=300):
        self.snapshot()
        return subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)


def digest_tree(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file() and not path.is_symlink():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def invariants(probe: Probe, done, folder: Path, inputs_before: dict) -> list:
    problems = []
    text = done.stdout + done.stderr
    if "Traceback" in text:
        problems.append("traceback")
    if probe.victim.read_text() != "must never change":
        problems.append("wrote outside the output folder")
    if digest_tree(folder / "in") != inputs_before:
        problems.append("an input changed")
    out = folder / "out"
    left = [p.name for p in out.iterdir() if p.name.endswith(".tmp")] if out.is_dir() else []
    if left:
        problems.append(f"temporary files left: {left}")
    return problems


# ---- run kinds: each builds its folder, runs, and returns (exit code, text to match) ----------------------

def run_kind(name, expect, message):
    def register(fn):
        RUN_KINDS.append(Kind(name, str(expect), message, fn))
        return fn
    return register


RUN_KINDS: list = []


@run_kind("-i DIR/case.npz -o DIR (file input inside the output folder)", 2, r"would replace the inputs")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    return f, p.run(["infer", "-i", f / "in" / "2DBox_CT_a.npz", "-o", f / "in"])


@run_kind("-o is a link to the input folder", 2, r"would replace the inputs")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "link").symlink_to(f / "in")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "link"])


@run_kind("-o is the input folder", 2, r"would replace the inputs")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "in" / "."])


@run_kind("-o is the --boxes-from-labels folder (the user's label maps)", 2, r"would replace the label maps")
def _(p):
    import cv2

    f = p.folder()
    cv2.imwrite(str(f / "in" / "a.png"), IMAGE)
    (f / "labels").mkdir()
    label = np.zeros(IMAGE.shape[:2], np.uint8)
    label[8:40, 8:40] = 1
    cv2.imwrite(str(f / "labels" / "a.png"), label)
    (f / "link").symlink_to(f / "labels")
    before = (f / "labels" / "a.png").read_bytes()
    done = p.run(["infer", "-i", f / "in", "-o", f / "link", "--boxes-from-labels", f / "labels"])
    assert (f / "labels" / "a.png").read_bytes() == before
    return f, done


@run_kind("--boxes JSON nested 100000 deep", 2, r"JSON nested too deeply")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "boxes.json").write_text("[" * 100000 + "]" * 100000)
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--boxes", f / "boxes.json"])


def _labels(p, labels: np.ndarray):
    import nibabel as nib

    f = p.folder()
    nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(0, 900, labels.shape).astype(np.int16), np.eye(4)),
             str(f / "in" / "MR_v.nii.gz"))
    nib.save(nib.Nifti1Image(labels, np.eye(4)), str(f / "labels.nii.gz"))
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--boxes-from-labels", f / "labels.nii.gz"])


def _only(value: int) -> np.ndarray:
    labels = np.zeros((40, 40, 4), np.uint16)
    labels[5:20, 5:20, 1:3] = value
    return labels


run_kind("label map whose only value is 65535", 0, r"65534 label value\(s\) below the largest do not occur")(
    lambda p: _labels(p, _only(65535)))
run_kind("label map that is all 0", 1, r"holds no label \(every voxel is 0\)")(lambda p: _labels(p, _only(0)))


def fake_server(answer: bytes):
    """A listening socket on 127.0.0.1 that accepts every connection and sends it ``answer`` (b"": nothing, ever);
    close it to stop."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve():
        conns = []  # kept open: the client waits on them
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.sendall(answer)
    threading.Thread(target=serve, daemon=True).start()
    return listener


def _scheduler(p, answer: bytes | None):
    """--scheduler at a port where nothing listens (None) or where a server accepts and sends ``answer``."""
    import socket

    f = p.folder("2DBox_CT_a.npz")
    if answer is None:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        listener = None
    else:
        listener = fake_server(answer)
        port = listener.getsockname()[1]
    try:
        return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--scheduler", f"tcp://127.0.0.1:{port}"],
                        timeout=120)
    finally:
        if listener is not None:
            listener.close()


run_kind("--scheduler where nothing listens", 2, r"connection refused")(lambda p: _scheduler(p, None))
run_kind("--scheduler at a server that never speaks", 2, r"not a Dask scheduler \(it accepted the connection but sent "
         r"nothing\)")(lambda p: _scheduler(p, b""))
run_kind("--scheduler at a server that answers garbage", 2, r"not a Dask scheduler \(it speaks another protocol\)")(
    lambda p: _scheduler(p, b"\xff" * 64))


@run_kind("input case is a link to the file the output would replace", 1, r"is the input file itself")
def _(p):
    f = p.folder()
    (f / "out").mkdir()
    (f / "out" / "2DBox_CT_a.npz").write_bytes(case())
    (f / "in" / "2DBox_CT_a.npz").symlink_to(f / "out" / "2DBox_CT_a.npz")
    done = p.run(["infer", "-i", f / "in", "-o", f / "out"])
    if (f / "out" / "2DBox_CT_a.npz").read_bytes() != case():
        done.stderr += "\nPROBE: the linked input was overwritten"
    return f, done


@run_kind("links planted at the temporary names of earlier versions", 0, r"1 segmented")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").mkdir()
    planted = [f".2DBox_CT_a.npz.{os.getpid()}.tmp", ".efficiency.csv.1.tmp", "2DBox_CT_a.npz.tmp"]
    for name in planted:
        (f / "out" / name).symlink_to(p.victim)
    done = p.run(["infer", "-i", f / "in", "-o", f / "out"])
    for name in planted:  # (the probe's own links, whether or not the run removed them as stale)
        (f / "out" / name).unlink(missing_ok=True)
    return f, done


@run_kind("output name is a planted link to a file outside", 0, r"1 segmented")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").mkdir()
    (f / "out" / "2DBox_CT_a.npz").symlink_to(p.victim)
    (f / "out" / "efficiency.csv").symlink_to(p.victim)
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out"])


@run_kind("temporary files of a killed run in the output folder", 0, r"removed 2 temporary file\(s\)")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").mkdir()
    (f / "out" / ".litemedsam-99999999-x.tmp").write_bytes(b"partial")
    (f / "out" / ".2DBox_CT_a.npz.99999999.tmp").write_bytes(b"partial")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out"])


@run_kind("SIGTERM during a volume", 143, r"terminated \(SIGTERM\).*--continue-prediction")
def _(p):
    f = p.folder()
    vol = np.random.default_rng(3).integers(0, 255, (60, 64, 64), np.uint8)
    (f / "in" / "3DBox_CT_long.npz").write_bytes(npz_bytes(imgs=vol, boxes=np.array([[5, 5, 0, 50, 50, 59]]),
                                                             spacing=np.ones(3)))
    p.snapshot()
    flag = f / "paused"  # infer stops as it starts the volume (litemedsam.run.pause), its pid in the flag
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "infer", "-i", str(f / "in"), "-o", str(f / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "LITEMEDSAM_PAUSE_IN": f"3DBox_CT_long.npz:{flag}"})
    deadline = time.monotonic() + 120
    while not (flag.is_file() and flag.read_text()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the event itself, not a guess at when it happens
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    return f, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@run_kind("disk full (a full tmpfs as output folder)", 1, r"cannot write .*No space left on device")
def _(p):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        return None
    f = p.folder("2DBox_CT_a.npz", "2DBox_CT_b.npz")
    (f / "out").mkdir()
    script = (f"mount -t tmpfs -o size=128k tmpfs {f / 'out'} && dd if=/dev/zero of={f / 'out'}/filler bs=4k "
              f"2>/dev/null; {sys.executable} -m litemedsam infer -i {f / 'in'} -o {f / 'out'}; rc=$?; "
              f"ls -A {f / 'out'} | grep -q '\\.tmp$' && echo 'PROBE: temporary file left' >&2; exit $rc")
    p.snapshot()
    return f, subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                             timeout=300)


@run_kind("--continue-prediction with a case,time efficiency.csv", 0, r"1 segmented, 0 failed, 1 kept")
def _(p):
    f = p.folder("2DBox_CT_a.npz", "2DBox_CT_b.npz")
    (f / "out").mkdir()
    (f / "out" / "2DBox_CT_a.npz").write_bytes(npz_bytes(segs=np.zeros((48, 48), np.uint8)))
    (f / "out" / "efficiency.csv").write_text("case,time\n2DBox_CT_a.npz,1.5\n")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--continue-prediction"])


@run_kind("--continue-prediction with a binary efficiency.csv", 0, r"moved aside to efficiency\.csv\.unreadable")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").mkdir()
    (f / "out" / "efficiency.csv").write_bytes(bytes(range(256)))
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--continue-prediction"])


@run_kind("--continue-prediction with a FIFO as efficiency.csv", 0, r"not a regular file")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").mkdir()
    os.mkfifo(f / "out" / "efficiency.csv")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--continue-prediction"], timeout=120)


def _router(p, data: bytes | None = None, make=None):
    f = p.folder()
    router = f / "router.toml"
    if make:
        make(router)
    elif data is not None:
        router.write_bytes(data)
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--router", router], timeout=60)


run_kind("binary --router file", 2, r"not a text file")(lambda p: _router(p, b"\xff\xfe\x00garbage\x80"))
run_kind("--router is a folder", 2, r"is a directory|not a regular file")(
    lambda p: _router(p, make=lambda r: r.mkdir())
)
run_kind("--router is missing", 2, r"no such file")(lambda p: _router(p))
run_kind("--router is a FIFO", 2, r"not a regular file")(lambda p: _router(p, make=os.mkfifo))
run_kind("--router is not TOML", 2, r"not valid TOML")(lambda p: _router(p, b"[[rules]\nmodels = "))
run_kind("--router names an unknown model", 2, r"unknown model 'nope'")(
    lambda p: _router(p, b'version = 1\n[modalities]\nCT = ["CT"]\n[[rules]]\nmodels = ["nope"]\n'))
run_kind("--router too large", 2, r"at most 1048576")(lambda p: _router(p, b"#" * (2 << 20)))


@run_kind("--reference-mask is a .npy file", 2, r"a \.npy file")
def _(p):
    f = p.folder()
    (f / "ref.npz").write_bytes(case())
    np.save(f / "mask.npy", np.ones((48, 48), np.uint8))
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--reference", f / "ref.npz", "--reference-mask",
                     f / "mask.npy"], timeout=60)


@run_kind("--reference is random bytes", 2, r"reference .*not a valid \.npz")
def _(p):
    f = p.folder()
    (f / "ref.npz").write_bytes(os.urandom(512))
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--reference", f / "ref.npz"], timeout=60)


@run_kind("--head is random bytes", 2, r"--head .*not a usable head")
def _(p):
    f = p.folder()
    (f / "head.onnx").write_bytes(os.urandom(512))
    return f, p.run(
        ["infer", "-i", f / "in", "-o", f / "out", "--prompt", "self", "--head", f / "head.onnx"], timeout=60
    )


def _infer(p, *args, env=None, case="2DBox_CT_a.npz", timeout=120):
    """A fresh folder with one tiny valid case, run with these options."""
    f = p.folder(case)
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", *args], env=env, timeout=timeout)


run_kind("--threads 1000", 0, r"--threads 1000 is more than the \d+ CPU")(lambda p: _infer(p, "--threads", "1000"))
run_kind("--threads 99999999999", 2, r"not a usable number of threads")(lambda p: _infer(p, "--threads", "99999999999"))
run_kind("--threads 0", 2, r"not a usable number of threads")(lambda p: _infer(p, "--threads", "0"))
run_kind("--threads -4", 2, r"not a usable number of threads")(lambda p: _infer(p, "--threads", "-4"))
run_kind("LITEMEDSAM_THREADS=99999999999", 2, r"LITEMEDSAM_THREADS 99999999999 is not a usable")(
    lambda p: _infer(p, env={"LITEMEDSAM_THREADS": "99999999999"}))
run_kind("LITEMEDSAM_THREADS=many", 2, r"is not a number of threads")(
    lambda p: _infer(p, env={"LITEMEDSAM_THREADS": "many"}))


def _models(p, change):
    from litemedsam.models.registry import MODELS, work_dir

    spec = MODELS["litemedsam"]
    f = p.folder("2DBox_CT_a.npz", "2DBox_CT_b.npz")
    models = f / "models"
    models.mkdir()
    for entry in spec.files:
        (models / entry.file).symlink_to(work_dir() / entry.file)
    change(models / spec.encoder.file)
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out"], env={"LITEMEDSAM_WORK_DIR": str(models)}, timeout=120)


def _unreadable(path: Path):
    real = path.resolve()
    path.unlink()
    if os.geteuid() == 0:
        path.symlink_to("/proc/self/mem")  # reading it fails (EIO), even for root
    else:
        shutil.copy(real, path)
        path.chmod(0)


def _altered(path: Path):
    data = bytearray(path.resolve().read_bytes())
    data[-10] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


run_kind("unreadable model file", 2, r"model file .*litemedsam_encoder\.onnx cannot be read")(
    lambda p: _models(p, _unreadable)
)
run_kind("altered model file", 2, r"has sha256 .* not the registered model")(lambda p: _models(p, _altered))
run_kind("missing model file", 2, r"no model of rule .* is built: litemedsam: missing .*encoder\.onnx \(build it with")(
    lambda p: _models(p, Path.unlink)
)


@run_kind("-o is a file", 2, r"not a folder|cannot make the output folder|Directory")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "out").write_text("a file")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out"], timeout=60)


@run_kind("-o below a file", 2, r"cannot make the output folder")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "file").write_text("a file")
    return f, p.run(["infer", "-i", f / "in", "-o", f / "file" / "out"], timeout=60)


@run_kind("-i does not exist", 2, r"does not exist")
def _(p):
    f = p.folder()
    return f, p.run(["infer", "-i", f / "missing", "-o", f / "out"], timeout=60)


@run_kind("-i is a FIFO", 1, r"a FIFO, not a case file")
def _(p):
    f = p.folder()
    os.mkfifo(f / "in" / "pipe.npz")
    return f, p.run(["infer", "-i", f / "in" / "pipe.npz", "-o", f / "out"], timeout=60)


@run_kind("empty input folder", 0, r"no \.npz cases")
def _(p):
    f = p.folder()
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out"], timeout=60)


run_kind("--modality unknown", 2, r"--modality 'Sonar' is not a modality")(lambda p: _infer(p, "--modality", "Sonar"))
run_kind("--model unknown", 2, r"Invalid value for '--model'")(lambda p: _infer(p, "--model", "gpt"))
run_kind("--prompt none without a prompt-free model", 2, r"--prompt none needs --model")(
    lambda p: _infer(p, "--prompt", "none"))


@run_kind("a second run into the same output folder, after the first", 0, r"1 segmented")
def _(p):
    f = p.folder("2DBox_CT_a.npz")
    (f / "in2").mkdir()
    (f / "in2" / "2DBox_CT_b.npz").write_bytes(case())
    first = p.run(["infer", "-i", f / "in2", "-o", f / "out"])
    done = p.run(["infer", "-i", f / "in", "-o", f / "out"])
    rows = (f / "out" / "efficiency.csv").read_text().splitlines()[1:]
    cases = {c["case"] for c in json.loads((f / "out" / "run.json").read_text())["cases"]}
    if first.returncode or {r.split(",")[0] for r in rows} != {"2DBox_CT_a.npz", "2DBox_CT_b.npz"} or \
            cases != {"2DBox_CT_a.npz", "2DBox_CT_b.npz"}:
        done.stderr += f"\nPROBE: the books lost the first run's case: {rows} {cases}"
    return f, done


def _setup(p, make):
    f = p.folder()
    models = f / "models"
    make(models)
    return f, p.run(["models", "setup"], env={"LITEMEDSAM_WORK_DIR": str(models)}, timeout=60)


run_kind("models setup with LITEMEDSAM_WORK_DIR a file", 2, r"the models folder .* cannot be made")(
    lambda p: _setup(p, lambda m: m.write_text("a file")))
run_kind("models setup with LITEMEDSAM_WORK_DIR a symbolic link loop", 2, r"the models folder .* cannot be made")(
    lambda p: _setup(p, lambda m: m.symlink_to(m)))


@run_kind("model not built for a router rule", 0, r"model efficientsam-ti-int8 is not built")
def _(p):
    f = p.folder("2DBox_XRay_a.npz")
    (f / "router.toml").write_text('version = 1\n[[rules]]\nmodels = ["efficientsam-ti-int8", "litemedsam"]\n')
    return f, p.run(["infer", "-i", f / "in", "-o", f / "out", "--router", f / "router.toml"], timeout=120)


# ---- running it all ------------------------------------------------------------------------------------------

def probe_files(p: Probe) -> None:
    f = p.folder()
    (f / "notes.txt").write_text("hello\n")
    for kind in FILE_KINDS:
        kind.make(f / "in", kind.file)
    before = digest_tree(f / "in")
    done = p.run(["infer", "-i", f / "in", "-o", f / "out"], env={"LITEMEDSAM_MAX_CASE_BYTES": str(BOMB_LIMIT)})
    common = invariants(p, done, f, before)
    rows = {}
    for line in done.stderr.splitlines():
        m = re.match(r"^(ERROR|WARNING) (.+?): (.*)$", line)
        if m:
            rows.setdefault(m.group(2), []).append(m.group(3))
    notices = [line for line in done.stderr.splitlines() if line.startswith("WARNING: skipped")]
    for kind in FILE_KINDS:
        key = shown(kind.file)
        out_exists = (f / "out" / kind.file).exists()
        if kind.expect == "skipped":
            hit = [n for n in notices if key in n]
            kind.got = hit[0].split(": ", 1)[1] if hit else "(no notice)"
            kind.ok = bool(hit) and re.search(kind.message, kind.got) is not None and not out_exists
            kind.code = "skipped"
        else:
            messages = rows.get(key, [])
            kind.got = " / ".join(messages)
            kind.code = "ok" if out_exists else "failed"
            kind.ok = kind.code == kind.expect and re.search(kind.message, kind.got) is not None
        kind.notes = list(common)
        kind.ok = kind.ok and not common
    for forged, kind in (("ERROR forged.npz", "newline and ERROR in the name"),
                         ("ERROR forged member", "member named with a newline and ERROR")):
        if any(line.startswith(forged) for line in done.stderr.splitlines()):
            FILE_KINDS[[k.name for k in FILE_KINDS].index(kind)].ok = False
    if done.returncode != 1:
        for kind in FILE_KINDS:
            kind.notes.append(f"batch exit code {done.returncode}, expected 1")
            kind.ok = False


PEAK = ("import resource, runpy, sys; sys.argv = ['litemedsam', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('litemedsam', run_name='__main__')\nfinally:\n"
        "    print(f'PEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)")


def memory(p: Probe) -> list:
    """Each file kind alone in a fresh process: (kind, peak resident memory in MB, seconds), under the batch's
    per-case limit (the "small file, huge memory" kinds must be refused cheaply and quickly)."""
    rows = []
    for kind in FILE_KINDS:
        f = p.folder()
        kind.make(f / "in", kind.file)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK, "infer", "-i", str(f / "in"), "-o", str(f / "out")],
                              capture_output=True, text=True, cwd=REPO, timeout=300, stdin=subprocess.DEVNULL,
                              env={**os.environ, "LITEMEDSAM_MAX_CASE_BYTES": str(BOMB_LIMIT)})
        peak = re.search(r"PEAK (\d+)", done.stderr)
        rows.append((kind.name, int(peak.group(1)) / 1024 if peak else float("nan"), time.perf_counter() - start))
    return rows


def probe_runs(p: Probe) -> None:
    for kind in RUN_KINDS:
        result = kind.make(p)
        if result is None:
            kind.code, kind.got, kind.skipped = (
                "n/a",
                "(skipped: needs unshare -rm)",
                "needs unshare -rm (a user namespace)",
            )
            continue
        f, done = result
        before = p.before  # taken just before the kind's run
        text = (done.stderr + "\n" + done.stdout).strip()
        kind.code = str(done.returncode)
        lines = [line for line in text.splitlines() if re.search(kind.message, line)]
        kind.got = lines[0] if lines else (text.splitlines() or [""])[0]
        if kind.expect == "143":
            kind.got = " ".join(text.split())
            lines = [kind.got] if re.search(kind.message, kind.got) else []
        kind.notes = invariants(p, done, f, before) + [line for line in text.splitlines() if line.startswith("PROBE")]
        kind.ok = kind.code == kind.expect and bool(lines) and not kind.notes


def table(markdown: bool, root: Path | None = None) -> str:
    rows = [("kind", "expected", "got", "message", "pass")]
    for kind in FILE_KINDS:
        rows.append((f"file: {kind.name}", kind.expect, kind.code, kind.got, "ok" if kind.ok else "FAIL"))
    for kind in RUN_KINDS:
        rows.append(
            (f"run: {kind.name}", f"exit {kind.expect}", f"exit {kind.code}", kind.got, "ok" if kind.ok else "FAIL")
        )

    def tidy(text) -> str:
        text = str(text).replace(str(root), "DIR") if root else str(text)
        text = re.sub(r"DIR/run\d+/", "DIR/", text).replace(str(REPO), ".")
        return text if len(text) <= 170 else text[:167] + "..."

    clean = [tuple(tidy(c) for c in row) for row in rows]
    if markdown:
        clean = [tuple(c.replace("|", "\\|") for c in row) for row in clean]
        lines = ["| " + " | ".join(clean[0]) + " |", "|" + "---|" * len(clean[0])]
        lines += ["| " + " | ".join(row) + " |" for row in clean[1:]]
        return "\n".join(lines)
    return "\n".join(f"{r[4]:4s}  {r[0][:60]:60s}  {r[1]:>9s} {r[2]:>9s}  {r[3][:140]}" for r in clean)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (docs/bad-input.md's)")
    parser.add_argument("--keep", type=Path, default=None, help="build the probe in this folder and keep it")
    parser.add_argument("--memory", action="store_true", help="also run each file kind alone: peak memory, seconds")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="litemedsam-probe-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        p = Probe(root)
        probe_files(p)
        probe_runs(p)
        peaks = memory(p) if args.memory else []
    finally:
        if args.keep is None:
            subprocess.run(["chmod", "-R", "u+rwx", str(root)], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
    print(table(args.markdown, root))
    if peaks:
        print("\n| file kind alone | peak memory (MB) | seconds (process start included) |\n|---|---|---|")
        print("\n".join(f"| {name} | {mb:.0f} | {seconds:.1f} |" for name, mb, seconds in peaks))
    kinds = FILE_KINDS + RUN_KINDS
    failed = [k for k in kinds if not k.ok and not k.skipped]
    for kind in failed:
        print(f"FAILED {kind.name}: expected {kind.expect}, got {kind.code}: {kind.got} {kind.notes}", file=sys.stderr)
    print(f"{len(kinds) - len(failed)} of {len(kinds)} kinds pass ({len(FILE_KINDS)} files, {len(RUN_KINDS)} runs), "
          f"{time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
