"""Small files that declare huge things are refused from their headers, before anything is allocated: JPEG and
TIFF sizes, TIFF pages, NIfTI header extensions; the memory available is read under cgroup v1 as under v2."""
import gzip
import os
import struct
from pathlib import Path

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


def cgroup_tree(root, version: str, own: str, limits_by_folder: dict) -> tuple:
    """A cgroup file system below ``root`` as the kernel lays it out, and the /proc/self/cgroup naming ``own``."""
    mount, files = {"v1": ("memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")),
                    "v2": ("", ("memory.max", "memory.current"))}[version]
    for folder, (limit, usage) in limits_by_folder.items():
        where = root / "cgroup" / mount / folder
        where.mkdir(parents=True, exist_ok=True)
        (where / files[0]).write_text(f"{limit}\n")
        (where / files[1]).write_text(f"{usage}\n")
    proc = root / "proc-self-cgroup"
    proc.write_text(("0::" if version == "v2" else "9:pids:/\n4:memory,hugetlb:") + own + "\n")
    return str(proc), str(root / "cgroup")


def test_memory_available_is_the_tightest_limit_of_the_process_own_cgroups(tmp_path, monkeypatch):
    """A Slurm or systemd job: a 1 GiB child cgroup below a root with no limit. The process's own cgroup is read
    (v1 and v2), up to the root, and the tightest limit wins; in a container whose cgroup path is not below the
    mount, the mount's root is its own."""
    none = str((1 << 63) - 4096)  # v1's "no limit"
    proc, root = cgroup_tree(tmp_path / "a", "v1", "/slurm/job_7/step_0", {
        "": (none, 16 << 30), "slurm": (none, 15 << 30), "slurm/job_7": (1 << 30, 200 << 20),
        "slurm/job_7/step_0": (none, 100 << 20)})
    assert limits.cgroup_room(proc, root) == [(1 << 30) - (200 << 20)]
    assert limits.available_memory(proc, root) == (1 << 30) - (200 << 20)
    proc, root = cgroup_tree(tmp_path / "b", "v2", "/user.slice/run.scope", {
        "": ("max", 9 << 30), "user.slice": (4 << 30, 3 << 30), "user.slice/run.scope": (2 << 30, 512 << 20)})
    assert sorted(limits.cgroup_room(proc, root)) == [1 << 30, (2 << 30) - (512 << 20)]
    assert limits.available_memory(proc, root) == 1 << 30
    proc, root = cgroup_tree(tmp_path / "c", "v2", "/docker/abc", {"": (512 << 20, 128 << 20)})  # a namespace
    assert limits.available_memory(proc, root) == 384 << 20
    monkeypatch.setattr(limits, "available_memory", lambda: 384 << 20)
    with pytest.raises(CaseError, match=r"needs about 600\.0 MiB of memory; 384\.0 MiB is available"):
        limits.check_size(200 << 20, "x", "its volume")


def test_memory_available_in_a_real_child_cgroup(tmp_path):
    """The real kernel's files: a process moved into a 1 GiB child of this process's cgroup (where the machine
    lets one be made: root, cgroup v1 or v2) sees at most 1 GiB, whatever the machine has."""
    import subprocess
    import sys

    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [line.split(":", 2)[2] for line in lines if "memory" in line.split(":")[1].split(",")]
    own = (
        Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/")
        if v1
        else Path("/sys/fs/cgroup") / lines[-1].split(":", 2)[2].lstrip("/")
    )
    limit_file = "memory.limit_in_bytes" if v1 else "memory.max"
    child = own / f"litemedsam-test-{os.getpid()}"
    try:
        child.mkdir()
        (child / limit_file).write_text(str(1 << 30))
    except OSError as e:
        pytest.skip(f"cannot make a child cgroup here ({e.strerror})")
    try:
        code = ("import os, sys; open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()));"
                "from litemedsam.core.limits import available_memory; print(available_memory())")
        done = subprocess.run([sys.executable, "-c", code, str(child)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert 0 < int(done.stdout) <= 1 << 30
    finally:
        child.rmdir()