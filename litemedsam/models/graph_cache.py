"""The optimised-graph cache: ONNX Runtime's optimised form of each model graph, kept per machine so that a
fresh process creates its sessions without optimising the graphs again.

An entry is named by the source graph's sha256 and a machine key (ONNX Runtime's version, the processor
architecture and its feature flags: the fully optimised graph may hold kernels laid out for this CPU). It is
the graph (``.onnx``), its weights in a file of their own (``-<random>.data``: ONNX Runtime maps such a file
instead of parsing the weights out of the graph, a session of LiteMedSAM's encoder loads in ~0.03 s instead
of ~0.06 s) and a sidecar (``.json``) recording the key, the weights file's name and both files' sha256. An
entry is used only when its key is this machine's and both files hash to the sidecar's values; anything
else (stale, foreign, damaged) is rebuilt, never trusted. Where: ``settings.cache_dir()``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
from functools import lru_cache
from pathlib import Path

from litemedsam.models.digests import sha256_of
from litemedsam.core.safeio import remove_stale_temps, temp_path, write_text
from litemedsam.core.settings import cache_dir


@lru_cache(maxsize=1)
def cpu() -> tuple[str, frozenset]:
    """(the CPU's model name, its feature flags) from /proc/cpuinfo (``Features`` on ARM); ("", {}) where there
    is none. Entries are named by the flags; litemedsam.models.fastest also looks for VNNI in them."""
    name, flags = platform.processor(), frozenset[str]()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return name, flags


@lru_cache(maxsize=1)
def machine_key() -> str:
    import onnxruntime as ort

    text = f"onnxruntime {ort.__version__} | {platform.machine()} | {' '.join(sorted(cpu()[1]))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine_record(kind: str) -> Path | None:
    """Where a record of what was timed on this machine is kept (``kind``: e.g. "encoder-choice"), named by the
    machine key and the CPU's model name (a Docker image built on another CPU times again); None without a cache
    folder."""
    folder = cache_dir()
    if folder is None:
        return None
    return folder / f"{kind}-{machine_key()}-{hashlib.sha256(cpu()[0].encode()).hexdigest()[:8]}.json"


def read_record(path: Path | None) -> dict:
    """A machine record (``machine_record``) as a dict; {} where there is none or it is unreadable."""
    try:
        record = json.loads(path.read_text()) if path else {}
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _paths(sha256: str) -> tuple[Path, Path] | None:
    folder = cache_dir()
    if folder is None:
        return None
    stem = f"{sha256[:32]}-{machine_key()}"
    return folder / f"{stem}.onnx", folder / f"{stem}.json"


def _is_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def lookup(sha256: str) -> Path | None:
    """The cached optimised graph of the graph with this sha256, when it is there and intact; else None."""
    paths = _paths(sha256)
    if paths is None or not _is_file(paths[0]):
        return None
    try:
        record = json.loads(paths[1].read_text())
        data = paths[0].parent / str(record.get("data"))
        if record.get("source_sha256") == sha256 and record.get("machine") == machine_key() \
                and _weights_name(paths[0], record.get("data")) and _is_file(data) \
                and record.get("sha256") == sha256_of(paths[0]) and record.get("data_sha256") == sha256_of(data):
            return paths[0]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    return None


def _weights_name(entry: Path, name) -> bool:
    """Whether ``name`` is a weights file name this module gives an entry (a plain name beside it)."""
    return isinstance(name, str) and re.fullmatch(re.escape(entry.stem) + r"-[0-9a-f]{16}\.data", name) is not None


class Slot:
    """Where ONNX Runtime writes a new entry: a temporary graph file and the weights file it will refer to."""

    def __init__(self, graph: Path, data: Path):
        self.graph, self.data = graph, data

    def session_config(self) -> dict:
        return {"session.optimized_model_external_initializers_file_name": self.data.name,
                "session.optimized_model_external_initializers_min_size_in_bytes": "1024"}

    def remove(self) -> None:
        self.graph.unlink(missing_ok=True)
        self.data.unlink(missing_ok=True)


def reserve(sha256: str) -> Slot | None:
    """A fresh slot in the cache folder for ONNX Runtime to write the optimised graph of ``sha256`` to."""
    paths = _paths(sha256)
    if paths is None:
        return None
    remove_stale_temps(cache_dir())  # of processes killed while writing an entry
    try:
        graph = temp_path(cache_dir())
    except OSError:
        return None
    return Slot(graph, paths[0].with_name(f"{paths[0].stem}-{secrets.token_hex(8)}.data"))


def commit(sha256: str, slot: Slot) -> None:
    """Make ``slot``'s files the entry for ``sha256`` (a failure only means no entry); weights files of this
    graph that the entry no longer names (an earlier entry's, a concurrent writer's) are removed."""
    paths = _paths(sha256)
    if paths is None:  # no cache folder (a slot was never given for it)
        return
    target, sidecar = paths
    try:
        if not _is_file(slot.data):
            raise OSError("ONNX Runtime wrote no weights file")
        os.replace(slot.graph, target)
        record = {"source_sha256": sha256, "machine": machine_key(), "sha256": sha256_of(target),
                  "data": slot.data.name, "data_sha256": sha256_of(slot.data)}
        write_text(sidecar, json.dumps(record) + "\n")
    except OSError:
        slot.remove()
        return
    for old in target.parent.glob(f"{target.stem}-*.data"):
        if old.name != slot.data.name:
            old.unlink(missing_ok=True)


def discard(sha256: str) -> None:
    paths = _paths(sha256)
    if paths is None:
        return
    for path in (*paths, *paths[0].parent.glob(f"{paths[0].stem}-*.data")):
        path.unlink(missing_ok=True)
