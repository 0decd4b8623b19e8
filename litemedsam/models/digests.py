"""sha256 of files, remembered by fingerprint so that a fresh process does not hash the same model again.

A fingerprint is what the file system says of a file: device, inode, size, modification and change times
(``st_ctime`` changes with every write and cannot be set back by a user). The remembered digests live in
the private cache folder (litemedsam.models.graph_cache's); a file whose fingerprint differs is hashed again. With
no usable cache folder every file is hashed, as before.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from litemedsam.core.safeio import write_text
from litemedsam.core.settings import cache_dir

FINGERPRINTS = "fingerprints.json"
MAX_REMEMBERED = 256
_memo: dict = {}


def _hash(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path) -> str:
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"


def _known(folder: Path) -> dict:
    if folder not in _memo:
        try:
            data = json.loads((folder / FINGERPRINTS).read_text())
            _memo[folder] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            _memo[folder] = {}
    return _memo[folder]


def sha256_of(path) -> str:
    """The sha256 of a file (hex); remembered by fingerprint in the cache folder when there is one."""
    folder = cache_dir()
    if folder is None:
        return _hash(path)
    key = os.path.realpath(path)
    fingerprint = _fingerprint(path)
    known = _known(folder)
    entry = known.get(key)
    if isinstance(entry, list) and len(entry) == 2 and entry[0] == fingerprint:
        return entry[1]
    digest = _hash(path)
    if _fingerprint(path) == fingerprint:  # unchanged while it was read
        known[key] = [fingerprint, digest]
        for old in list(known)[:-MAX_REMEMBERED]:
            del known[old]
        try:
            write_text(folder / FINGERPRINTS, json.dumps(known, indent=0) + "\n")
        except OSError:
            pass
    return digest
