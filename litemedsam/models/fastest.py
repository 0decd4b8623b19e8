"""Which encoder runs for a model: the float graph or the model's int8 twin (export.quantize).

By default the float one: the int8 encoder fails the accuracy gate (``python -m benchmarks.bench_int8``: masks
through 3D propagation drift from the float ones, e.g. per-object Dice 0.77 on a BraTS volume, and 2D CT loses
0.7 DSC point), so it is never chosen for the user. ``LITEMEDSAM_INT8=auto`` opts in where it pays: the twin is
then a candidate only on a CPU with VNNI (``avx512_vnni`` or ``avx_vnni``; its full 8-bit weights can saturate
AVX2's ``u8 x s8`` products elsewhere) and is chosen when its encoder run is at least ``MARGIN`` times faster
than the float one, timed once per machine (interleaved) and kept in the cache folder (settings.cache_dir),
named by the machine (graph_cache.machine_key and the CPU's model name: a Docker image built on another CPU
times again). ``LITEMEDSAM_INT8=on`` takes the twin without timing. ``infer --exact`` never asks.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from litemedsam.models.graph_cache import cpu, machine_record, read_record
from litemedsam.models.registry import MODELS, get_model, missing_file, model_files
from litemedsam.core.safeio import write_text

MARGIN = 1.15  # int8 must be this much faster per encoder run
RUNS = 4  # timed runs per graph, interleaved, after one warm-up each


@dataclass(frozen=True)
class Choice:
    model: str  # the registered model to run
    reason: str  # why, for run.json and `models list`


def has_vnni() -> bool:
    return bool({"avx512_vnni", "avx_vnni"} & cpu()[1])


def _record_path() -> Path | None:
    return machine_record("encoder-choice")


def _read() -> dict:
    return read_record(_record_path())


def time_encoders(name: str, directory: Path | None = None, runs: int = RUNS) -> dict:
    """Median seconds per encoder run of ``name`` and its int8 twin on this machine, interleaved run by run."""
    from litemedsam.models.session import make_session

    sessions = {}
    for key, model in (("float", name), ("int8", f"{name}-int8")):
        ((path, sha256),) = model_files(get_model(model), directory, entries=(get_model(model).encoder,))
        sessions[key] = make_session(path, None, sha256)
    size = int(sessions["float"].get_inputs()[0].shape[-1])
    image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    seconds: dict[str, list] = {key: [] for key in sessions}
    for i in range(runs + 1):
        for key, session in sessions.items():
            start = time.perf_counter()
            session.run(None, {"image": image})
            if i:  # the first run of each is a warm-up
                seconds[key].append(time.perf_counter() - start)
    return {f"{key}_s": round(float(np.median(v)), 4) for key, v in seconds.items()}


def _timed(name: str, directory: Path | None, measure: bool) -> dict | None:
    """This machine's timing of ``name``'s float and int8 encoders: as recorded, else timed now and recorded
    (when ``measure`` and there is a cache folder to keep it), else None."""
    record = _read().get(name)
    if isinstance(record, dict) and {"float_s", "int8_s"} <= set(record):
        return record
    path = _record_path()
    if not measure or path is None:
        return None
    record = {**time_encoders(name, directory), "date": date.today().isoformat(), "cpu": cpu()[0]}
    try:
        write_text(path, json.dumps({**_read(), name: record}, indent=1) + "\n")
    except OSError:
        pass
    return record


def choose(name: str, directory: Path | None = None, measure: bool = True) -> Choice:
    """The model to run for ``name`` on this machine (``name`` itself or ``name``-int8) and why. Times both
    once per machine when ``measure`` and the cache folder can keep the result."""
    twin = f"{name}-int8"
    if twin not in MODELS:
        return Choice(name, "")
    setting = os.environ.get("LITEMEDSAM_INT8", "off").strip().lower()
    if setting not in ("auto", "on"):
        return Choice(name, "float encoder (int8 fails the accuracy gate; LITEMEDSAM_INT8=auto opts in)")
    if missing_file(get_model(twin), directory):
        return Choice(name, f"float encoder: {twin} is not built ({get_model(twin).build})")
    if setting == "on":
        return Choice(twin, "int8 encoder: LITEMEDSAM_INT8=on")
    if not has_vnni():
        return Choice(name, "float encoder: this CPU has no VNNI (int8 would gain little and may saturate)")
    record = _timed(name, directory, measure)
    if record is None:
        return Choice(name, "float encoder: int8 not timed on this machine yet (litemedsam models setup)")
    try:
        float_s, int8_s = float(record["float_s"]), float(record["int8_s"])
        ratio = float_s / int8_s
    except (TypeError, ValueError, ZeroDivisionError):
        return Choice(name, "float encoder: the timing record is damaged")
    timed = f"{int8_s:.3f} s vs {float_s:.3f} s per run, timed {str(record.get('date', '?'))[:10]}"
    if ratio >= MARGIN:
        return Choice(twin, f"int8 encoder: {ratio:.2f}x faster than float on this CPU ({timed})")
    return Choice(name, f"float encoder: int8 only {ratio:.2f}x faster on this CPU ({timed}; needs {MARGIN}x)")
