"""Reading .npz files from outside safely: no pickles, no surprise allocations, clear messages.

Each wanted member's .npy header is read and checked before any array memory is allocated: the dtype
must be plain numbers (object arrays are never loaded), the data it declares must be present in the
archive, and all declared arrays together must stay under ``max_case_bytes()`` (default 4 GiB,
``$LITEMEDSAM_MAX_CASE_BYTES``) and, times ``MEMORY_FACTOR``, under the memory this process can still
get (cgroup limit or MemAvailable). Every problem is a CaseError whose message says what is wrong
with the file; nothing from it is shown raw (no numpy hint about ``allow_pickle``)."""
from __future__ import annotations

import errno
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from litemedsam.errors import CaseError, shown

DEFAULT_MAX_CASE_BYTES = 4 << 30
MAX_OBJECTS = 65535  # boxes (objects) of one case: its labels are uint16
MEMORY_FACTOR = 3  # a case needs about its arrays' size three times over (input, labels, working copies)
COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


def human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def max_case_bytes() -> int:
    """The documented limit on the arrays of one case (bytes): $LITEMEDSAM_MAX_CASE_BYTES or 4 GiB."""
    env = os.environ.get("LITEMEDSAM_MAX_CASE_BYTES", "")
    return int(env) if env.isdigit() and int(env) > 0 else DEFAULT_MAX_CASE_BYTES


CGROUP_MEMORY = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))  # v1
NO_LIMIT = 1 << 60  # cgroup v1 writes a huge number (page-rounded LONG_MAX) where there is no limit


def available_memory() -> int | None:
    """Bytes this process can still allocate: its cgroup's limit (v2, or v1 as under ``docker -m`` on older hosts)
    less its usage, or MemAvailable, whichever is smaller."""
    found = []
    for limit_file, usage_file in CGROUP_MEMORY:
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < NO_LIMIT:
                found.append(int(limit) - int(Path(usage_file).read_text()))
        except (OSError, ValueError):
            pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return max(0, min(found)) if found else None


def check_size(need: int, over: str, subject: str = "it") -> None:
    """CaseError when ``need`` bytes are over the per-case limit (``over``: what needs them, e.g. "its volume
    (512, 512, 300) needs 300.0 MiB") or, times MEMORY_FACTOR, over the memory available (``subject``)."""
    if need > max_case_bytes():
        raise CaseError(f"{over}, more than the limit of {human(max_case_bytes())} per case (LITEMEDSAM_MAX_CASE_BYTES)")
    free = available_memory()
    if free is not None and need * MEMORY_FACTOR > free:
        raise CaseError(f"{subject} needs about {human(need * MEMORY_FACTOR)} of memory; {human(free)} is available")


def check_file(path: Path) -> None:
    """A regular file we can open, else a CaseError saying what it is instead."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CaseError("a symbolic link loop, not a file") from None
        if e.errno == errno.ENOENT and os.path.islink(path):
            raise CaseError(f"a broken symbolic link (its target {os.readlink(path)!r} does not exist)") from None
        raise CaseError(f"cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise CaseError(f"{kind}, not an .npz file")


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, records: bool = False) -> tuple:
    """(shape, dtype, declared bytes, header length) of a member, checked, reading only its header. An object
    array is refused unless ``records`` (then litemedsam.records reads it, never numpy's pickle loader)."""
    if info.flag_bits & 0x1:
        raise CaseError(f"member '{key}' is encrypted; .npz files are not")
    if info.compress_type not in COMPRESSIONS:
        raise CaseError(f"member '{key}' uses zip compression method {info.compress_type}, which .npz files do "
                        f"not use (supported: {', '.join(COMPRESSIONS.values())})")
    with archive.open(info) as member:
        if member.read(6) != b"\x93NUMPY":
            raise CaseError(f"member '{key}' is not a NumPy array (no .npy header)")
        version = tuple(member.read(2))
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise CaseError(f"member '{key}' has .npy format version {version}, not 1.0 or 2.0")
        header_len = member.tell()
    if dtype.hasobject and records:
        from litemedsam.records import MAX_RECORD_BYTES

        if info.file_size - header_len > MAX_RECORD_BYTES:
            raise CaseError(f"'{key}' holds {human(info.file_size - header_len)} of pickled data; at most "
                            f"{human(MAX_RECORD_BYTES)} of records are read")
        return shape, dtype, info.file_size - header_len, header_len
    if dtype.hasobject:
        raise CaseError(f"'{key}' holds Python objects (pickled data), which litemedsam never loads")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise CaseError(f"'{key}' declares an invalid shape {shape}")
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size - header_len:
        raise CaseError(f"'{key}' declares {human(declared)} ({dtype} {shape}) but the file holds only "
                        f"{human(max(0, info.file_size - header_len))} for it: malformed or truncated")
    return shape, dtype, declared, header_len


def _describe(e: Exception) -> str:
    if isinstance(e, zlib.error):
        return "its compressed data is corrupt"
    if isinstance(e, EOFError):
        return "it ends early (truncated)"
    if isinstance(e, zipfile.BadZipFile):
        return f"it is damaged: {e}"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return f"{type(e).__name__}: {e}"


def read_npz(path, required: tuple, optional: tuple = (), records: tuple = ()) -> dict:
    """The arrays ``required`` (all must be present) and ``optional`` of an .npz file, checked as the
    module says; raises CaseError naming the problem (the caller adds the file name). Members named in
    ``records`` may instead be object arrays of dicts of numbers: they come back as lists of dicts, read by
    litemedsam.records (a restricted unpickler); other members' names are in ``arrays["__members__"]``."""
    path = Path(path)
    check_file(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
            if magic == b"\x93NUMPY":
                raise CaseError("a .npy file (a single array), not an .npz archive of named arrays")
            handle.seek(0)
            try:
                archive = zipfile.ZipFile(handle)
            except zipfile.BadZipFile:
                what = ("a zip archive that is truncated or damaged (no directory of its members)"
                        if magic.startswith(b"PK\x03\x04") else "it is not a zip archive")
                raise CaseError(f"not a valid .npz file ({what})") from None
            with archive:
                members = {}
                for info in archive.infolist():
                    key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    members.setdefault(key, info)
                missing = [k for k in required if k not in members]
                if missing:
                    found = ", ".join(shown(m) for m in sorted(members)[:20]) or "none"
                    raise CaseError(f"missing array(s) {', '.join(missing)}; found: {found}")
                wanted = [k for k in (*required, *optional) if k in members]
                headers = {k: _header(archive, members[k], k, k in records) for k in wanted}
                total = sum(h[2] for h in headers.values())
                check_size(total, f"its arrays declare {human(total)} ("
                           + ", ".join(f"'{k}' {h[1]} {h[0]}" for k, h in headers.items()) + ")",
                           f"its arrays declare {human(total)}; segmenting it")
                arrays = {"__members__": sorted(members)}
                for k in wanted:
                    with archive.open(members[k]) as member:
                        if headers[k][1].hasobject:
                            from litemedsam.records import load_records

                            member.read(headers[k][3])
                            arrays[k] = load_records(member.read(headers[k][2] + 1), k, MAX_OBJECTS)
                        else:
                            arrays[k] = np.lib.format.read_array(member, allow_pickle=False)
                return arrays
    except CaseError:
        raise
    except MemoryError:
        raise CaseError("not enough memory to read its arrays") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError, KeyError, OverflowError, TypeError) as e:
        raise CaseError(f"not a readable .npz file ({_describe(e)})") from None
