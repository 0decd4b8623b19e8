"""Arrays on the wire of the nnInteractive protocol (its client's ``serialization.py`` documents the format; this
is our own reading of it): a header, then blosc2-compressed chunks.

    b"NNIA" | version 1 | codec (1 ZSTD, 2 LZ4) | ndim | len(dtype) | dtype name (ascii) | shape (<q each)
    | chunk count (<I) | per chunk: raw length (<Q), compressed length (<Q), the blosc2 frame

``unpack`` trusts nothing: every length is checked against the body and the declared shape before anything is
decompressed, the array's size against ``limit`` before it is allocated, and only plain numeric dtypes are read
(never objects), so a hostile body gives a ValueError saying what is wrong, not a crash, a hang or a huge
allocation.
"""
from __future__ import annotations

import struct

import blosc2
import numpy as np

MAGIC, VERSION = b"NNIA", 1
CODECS = {1: blosc2.Codec.ZSTD, 2: blosc2.Codec.LZ4}
DTYPES = {"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float16", "float32",
          "float64"}
CHUNK = 1 << 30  # blosc2 compresses at most 2 GiB per call
HEAD = struct.Struct("<4sBBBB")
SIZES = struct.Struct("<QQ")


def pack(array: np.ndarray, codec: int = 1) -> bytes:
    """``array`` (a plain numeric dtype) in the wire format; masks and label maps compress best unshuffled."""
    array = np.ascontiguousarray(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    name = array.dtype.name.encode("ascii")
    raw = memoryview(array.data).cast("B") if array.size else memoryview(b"")  # type: ignore[arg-type]
    chunks = [raw[i:i + CHUNK] for i in range(0, len(raw), CHUNK)]
    parts = [HEAD.pack(MAGIC, VERSION, codec, array.ndim, len(name)), name,
             struct.pack(f"<{array.ndim}q", *array.shape), struct.pack("<I", len(chunks))]
    for chunk in chunks:
        frame = blosc2.compress2(chunk, typesize=array.dtype.itemsize, codec=CODECS[codec], clevel=3,
                                 filters=[blosc2.Filter.NOFILTER])
        parts += [SIZES.pack(len(chunk), len(frame)), frame]
    return b"".join(parts)


def header(body: bytes) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, where the chunks start) of a wire body, read from its header alone (nothing decompressed);
    ValueError saying what is wrong with a body that is not one."""
    if len(body) < HEAD.size:
        raise ValueError(f"a packed array starts with a {HEAD.size}-byte header; the body has {len(body)} bytes")
    magic, version, codec, ndim, name_len = HEAD.unpack_from(body, 0)
    if magic != MAGIC:
        raise ValueError("the body is not a packed array (it does not start with NNIA)")
    if version != VERSION:
        raise ValueError(f"packed array version {version}; this server reads version {VERSION}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec} (1: ZSTD, 2: LZ4)")
    if not 1 <= ndim <= 4:
        raise ValueError(f"a packed array of {ndim} dimensions; 1 to 4 are read")
    at = HEAD.size
    name = body[at:at + name_len].decode("ascii", "replace")
    if name not in DTYPES:
        raise ValueError(f"dtype {name[:20]!r} is not read (numbers and bool only)")
    at += name_len
    if len(body) < at + 8 * ndim + 4:
        raise ValueError("the body ends inside the array's header")
    shape = struct.unpack_from(f"<{ndim}q", body, at)
    if any(n < 0 or n > 1 << 40 for n in shape):
        raise ValueError(f"shape {list(shape)} has a negative or absurd dimension")
    return tuple(shape), np.dtype(name), at + 8 * ndim


def unpack(body: bytes, limit: int) -> np.ndarray:
    """The array a wire body holds; ValueError saying what is wrong with a body that is not one, or one whose
    array would take more than ``limit`` bytes."""
    shape, dtype, at = header(body)
    name = dtype.name
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > limit:
        raise ValueError(f"an array of shape {list(shape)} {name} takes {nbytes} bytes; at most {limit} are accepted")
    (count,) = struct.unpack_from("<I", body, at)
    at += 4
    if count != -(-nbytes // CHUNK):
        raise ValueError(f"{count} chunks for {nbytes} bytes (chunks of at most {CHUNK})")
    out = np.empty(nbytes // dtype.itemsize, dtype)
    dest = out.view(np.uint8)
    done = 0
    for _ in range(count):
        if len(body) < at + SIZES.size:
            raise ValueError("the body ends inside a chunk's header")
        size, packed = SIZES.unpack_from(body, at)
        at += SIZES.size
        if size != min(CHUNK, nbytes - done) or packed > len(body) - at:
            raise ValueError("a chunk's lengths do not match the array or the body")
        frame = memoryview(body)[at:at + packed]
        try:
            declared = blosc2.get_cbuffer_sizes(frame)[0]
        except Exception:  # blosc2 raises several kinds for a frame that is not one
            declared = -1
        if declared != size:
            raise ValueError("a chunk is not a blosc2 frame of its declared length")
        try:
            blosc2.decompress2(frame, dst=dest[done:done + size])
        except Exception as e:
            raise ValueError(f"a chunk does not decompress ({type(e).__name__})") from None
        done += size
        at += packed
    if at != len(body):
        raise ValueError(f"{len(body) - at} bytes after the array")
    return out.reshape(shape)
