"""Reading .npz files from outside safely: no pickles, no surprise allocations, clear messages.

Each wanted member's .npy header is read and checked before any array memory is allocated: the dtype
must be plain numbers (object arrays are never loaded), the data it declares must be present in the
archive, and all declared arrays together must stay under ``max_case_bytes()`` (default 4 GiB,
``$LITEMEDSAM_MAX_CASE_BYTES``) and, times ``MEMORY_FACTOR``, under the memory this process can still
get (cgroup limit or MemAvailable). Every problem is a CaseError whose message says what is wrong
with the file; nothing from it is shown raw (no numpy hint about ``allow_pickle``)."""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from litemedsam.core.errors import CaseError, shown
from litemedsam.core.limits import MAX_OBJECTS, check_file, check_size, human

COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str) -> tuple:
    """(shape, dtype, header length) of a member's .npy header (format 1.0 or 2.0), reading nothing more."""
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
        return shape, dtype, member.tell()


def _header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, records: bool = False) -> tuple:
    """(shape, dtype, declared bytes, header length) of a member, checked, reading only its header. An object
    array is refused unless ``records`` (then litemedsam.io.records reads it, never numpy's pickle loader)."""
    if info.flag_bits & 0x1:
        raise CaseError(f"member '{key}' is encrypted; .npz files are not")
    if info.compress_type not in COMPRESSIONS:
        raise CaseError(f"member '{key}' uses zip compression method {info.compress_type}, which .npz files do "
                        f"not use (supported: {', '.join(COMPRESSIONS.values())})")
    shape, dtype, header_len = _npy_header(archive, info, key)
    if dtype.hasobject and records:
        from litemedsam.io.records import MAX_RECORD_BYTES

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


def array_headers(path: Path, keys: tuple) -> dict:
    """(shape, dtype) of each of ``keys`` present, from its .npy header, reading nothing else; CaseError or an
    OSError for a file that is not such an archive."""
    with zipfile.ZipFile(path) as archive:
        members = {i.filename: i for i in archive.infolist()}
        return {k: _header(archive, members[f"{k}.npy"], k, records=True)[:2] for k in keys if f"{k}.npy" in members}


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
    litemedsam.io.records (a restricted unpickler); other members' names are in ``arrays["__members__"]``."""
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
                members: dict = {}
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
                arrays: dict = {"__members__": sorted(members)}
                for k in wanted:
                    with archive.open(members[k]) as member:
                        if headers[k][1].hasobject:
                            from litemedsam.io.records import load_records

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
