"""Embeddings kept on disk, so that a restarted server, a reopened case or a volume sent again costs a read (a few
ms a slice) instead of an encode (0.3-0.7 s a slice on 2 cores).

An entry is named by its key (the model, its encoder's checksum, the image's shape and content digest) and this
machine (ONNX Runtime's version and the CPU's features: another CPU may round differently), so an entry is only
ever what this encoder made of this image here. It lives in the private cache folder
(litemedsam.core.settings.cache_dir: this user's, written by nobody else), written atomically; it carries a
checksum of its bytes (CRC-32), and one that does not read back as an embedding (cut short, damaged, foreign) is ignored
and made again. The least recently used entries are removed beyond ``max_bytes``.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import zlib
from pathlib import Path

import numpy as np

from litemedsam.core.errors import OutputError
from litemedsam.core.safeio import remove_stale_temps, write_bytes
from litemedsam.core.settings import cache_dir

MAGIC = b"litemedsam embedding 2\n"
DIGEST = 4  # bytes of CRC-32 over the rest of the file (the folder is private: it guards against damage, 1 ms a
# slice where blake2b took 4)
MAX_ENTRY = 256 << 20  # an entry larger than this is not read (LiteMedSAM's: 4 MiB)
SUFFIX = ".emb"


def checksum(body: bytes | memoryview) -> bytes:
    return zlib.crc32(body).to_bytes(DIGEST, "big")


def npy_array(body: memoryview) -> np.ndarray:
    """The float32 4D array of an .npy file's bytes, on those bytes (no copy); ValueError if it is not one."""
    head = io.BytesIO(bytes(body[:4096]))
    version = np.lib.format.read_magic(head)
    if version not in ((1, 0), (2, 0)):
        raise ValueError("not an embedding")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(head)
    if fortran or dtype != np.float32 or len(shape) != 4:
        raise ValueError("not an embedding")
    count = int(np.prod(shape))
    if head.tell() + count * 4 != len(body):
        raise ValueError("cut short")
    return np.frombuffer(body, np.float32, count, head.tell()).reshape(shape)


class EmbeddingStore:
    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), int(max_bytes)
        self.lock = threading.Lock()
        self.bytes: int | None = None  # what the folder holds, counted when first needed
        self.reads = self.writes = self.rejected = 0

    @classmethod
    def default(cls, max_bytes: int) -> "EmbeddingStore | None":
        """The store in the cache folder's ``embeddings/`` (None: no budget, or no private cache folder)."""
        base = cache_dir() if max_bytes > 0 else None
        if base is None:
            return None
        folder = base / "embeddings"
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
        if folder.is_symlink() or not folder.is_dir():
            return None
        remove_stale_temps(folder)  # what a killed server was writing
        return cls(folder, max_bytes)

    def path(self, key: tuple) -> Path:
        from litemedsam.models.graph_cache import machine_key

        name = hashlib.sha256(repr((machine_key(), key)).encode()).hexdigest()[:40]
        return self.folder / (name + SUFFIX)

    def get(self, key: tuple) -> np.ndarray | None:
        """The features kept for ``key``, None when there are none that read back whole (read once into the array's
        own buffer: ~2 ms for LiteMedSAM's 4 MiB, where copies of it took 4)."""
        path = self.path(key)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_ENTRY:
                    raise ValueError("too large")
                data = bytearray(size)
                if handle.readinto(data) != size:
                    raise ValueError("cut short")
            view = memoryview(data)
            start = len(MAGIC) + DIGEST
            if view[:len(MAGIC)] != MAGIC:
                raise ValueError("not an embedding")
            if checksum(view[start:]) != view[len(MAGIC):start]:
                raise ValueError("damaged")
            features = npy_array(view[start:])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            self.rejected += 1  # made again and written over it
            return None
        try:
            os.utime(path)  # used now: kept before those used longer ago
        except OSError:
            pass
        self.reads += 1
        return features

    def put(self, key: tuple, features: np.ndarray) -> None:
        """Keep ``features`` for ``key``; a failure (a full disk) only costs the next read an encode."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(features, np.float32), allow_pickle=False)
        body = buffer.getvalue()
        data = MAGIC + checksum(body) + body
        try:
            write_bytes(self.path(key), data)
        except (OSError, OutputError):
            return
        self.writes += 1
        with self.lock:
            if self.bytes is None:
                self.bytes = self._held()
            else:
                self.bytes += len(data)
            if self.bytes > self.max_bytes:
                self.bytes = self._evict()

    def _entries(self) -> list:
        found = []
        try:
            with os.scandir(self.folder) as listing:
                for entry in listing:
                    if entry.name.endswith(SUFFIX) and entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found.append((info.st_mtime, info.st_size, Path(entry.path)))
        except OSError:
            pass
        return found

    def _held(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> int:
        """Remove the least recently used entries until the rest fit in ``max_bytes``; returns what is held."""
        entries = sorted(self._entries())
        held = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if held <= self.max_bytes:
                break
            try:
                path.unlink()
                held -= size
            except OSError:
                pass
        return held
