"""The optimised-graph cache: ONNX Runtime's optimised form of each model graph, kept per machine so that a
fresh process creates its sessions without optimising the graphs again.

An entry is named by the source graph's sha256 and a machine key (ONNX Runtime's version, the processor
architecture and its feature flags: the fully optimised graph may hold kernels laid out for this CPU), and
has a sidecar recording the key and the entry's own sha256. An entry is used only when its key is this
machine's and its bytes hash to the sidecar's value; anything else (stale, foreign, damaged) is rebuilt,
never trusted. Where: ``settings.cache_dir()``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from functools import lru_cache
from pathlib import Path

from litemedsam.digests import sha256_of
from litemedsam.safeio import remove_stale_temps, temp_path, write_text
from litemedsam.settings import cache_dir


@lru_cache(maxsize=1)
def machine_key() -> str:
    import onnxruntime as ort

    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    text = f"onnxruntime {ort.__version__} | {platform.machine()} | {flags}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _paths(sha256: str) -> tuple[Path, Path] | None:
    folder = cache_dir()
    if folder is None:
        return None
    stem = f"{sha256[:32]}-{machine_key()}"
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def lookup(sha256: str) -> Path | None:
    """The cached optimised graph of the graph with this sha256, when it is there and intact; else None."""
    paths = _paths(sha256)
    if paths is None or not paths[0].is_file() or paths[0].is_symlink():
        return None
    try:
        record = json.loads(paths[1].read_text())
        if record.get("source_sha256") == sha256 and record.get("machine") == machine_key() \
                and record.get("sha256") == sha256_of(paths[0]):
            return paths[0]
    except (OSError, ValueError, AttributeError):
        pass
    return None


def reserve(sha256: str) -> Path | None:
    """A fresh temporary file in the cache folder for ONNX Runtime to write the optimised graph to."""
    if _paths(sha256) is None:
        return None
    remove_stale_temps(cache_dir())  # of processes killed while writing an entry
    try:
        return temp_path(cache_dir())
    except OSError:
        return None


def commit(sha256: str, written: Path) -> None:
    """Make ``written`` the entry for ``sha256`` (a failure only means no entry)."""
    target, sidecar = _paths(sha256)
    try:
        os.replace(written, target)
        record = {"source_sha256": sha256, "machine": machine_key(), "sha256": sha256_of(target)}
        write_text(sidecar, json.dumps(record) + "\n")
    except OSError:
        written.unlink(missing_ok=True)


def discard(sha256: str) -> None:
    for path in _paths(sha256) or ():
        path.unlink(missing_ok=True)
