"""How many encoder sessions a volume's slices use at once, and how many threads each: one 256 x 256 slice does
not keep many cores busy (one session's intra-op scaling flattens past a few threads), while slices are
independent of each other (the propagation needs each slice's masks, not its encoding, in order).

``choose(threads)`` splits a process's thread budget into ``sessions`` x ``threads_each``: ``LITEMEDSAM_SLICE_SESSIONS``
(an integer) forces the number of sessions; else the split timed on this machine for that budget (once, by
``litemedsam models setup`` or ``time_splits``: the same slices encoded by each candidate split, interleaved round
by round, kept in the cache folder under this machine's name), taken when it is ``MARGIN`` times faster than one
session; else one session with every thread (as before). Every split gives the same embeddings to the bit (each
output element is computed the same way whatever the thread count: tests/test_parallel.py).
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from litemedsam.core.errors import UsageError, shown
from litemedsam.core.safeio import write_text
from litemedsam.models.graph_cache import cpu, machine_record, read_record
from litemedsam.models.session import available_cpus

MARGIN = 1.1  # a split must encode slices this much faster than one session to be taken
MAX_SESSIONS = 4  # splits timed: 1, 2, 4 sessions (each holds its weights and buffers, ~0.2-0.3 GB)
SESSION_BYTES = 320 << 20  # an encoder session's weights, arena and buffers, measured: ~0.2-0.3 GB
ROUNDS = 3  # timed rounds per split, interleaved, after one warm-up round
SLICES = 8  # slices per round (shared among the split's sessions)
ENV = "LITEMEDSAM_SLICE_SESSIONS"


@dataclass(frozen=True)
class Split:
    sessions: int  # encoder sessions running at once on a volume's slices
    threads: int  # intra-op threads of each
    reason: str  # why, for run.json and `litemedsam models list`

    def describe(self) -> str:
        return f"{self.sessions} session(s) x {self.threads} thread(s): {self.reason}"


def candidates(threads: int) -> list[int]:
    """Numbers of sessions worth timing for a budget of ``threads``: 1, 2, 4, up to the budget (at most
    MAX_SESSIONS: timing holds every candidate's sessions at once, 7 of them for 4)."""
    found, n = [], 1
    while n <= min(threads, MAX_SESSIONS):
        found.append(n)
        n *= 2
    return found


def _record_path() -> Path | None:
    return machine_record("slice-split")


def _read() -> dict:
    return read_record(_record_path())


def forced(threads: int) -> Split | None:
    """The split ``LITEMEDSAM_SLICE_SESSIONS`` asks for (UsageError for a value that is not a number of sessions)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        sessions = int(value)
    except ValueError:
        sessions = 0
    if not 1 <= sessions <= 64:
        raise UsageError(f"{ENV}={shown(value)!r} is not a number of encoder sessions (1-64)")
    cap = max(1, min(sessions, room_for_sessions(), available_cpus()))
    if cap < sessions:
        return Split(cap, max(1, threads // cap), f"{ENV}={sessions}, capped to {cap}: no more sessions than CPUs "
                                                  f"({available_cpus()}), each about {SESSION_BYTES >> 20} MB of the "
                                                  f"memory available")
    return Split(sessions, max(1, threads // sessions), f"{ENV}={sessions}")


def room_for_sessions() -> int:
    """How many encoder sessions the memory available holds (each SESSION_BYTES), leaving half of it for the
    images and their embeddings; at least 1."""
    from litemedsam.core.limits import available_memory

    free = available_memory()
    return 64 if free is None else max(1, free // 2 // SESSION_BYTES)


def choose(threads: int) -> Split:
    """The split of ``threads`` for a volume's slices on this machine, and why."""
    split = forced(threads)
    if split is not None:
        return split
    if threads < 2:
        return Split(1, threads, "one thread: nothing to split")
    timed = _read().get(str(threads))
    if not isinstance(timed, dict) or not isinstance(timed.get("seconds_per_slice"), dict):
        return Split(1, threads, "not timed on this machine yet (litemedsam models setup)")
    try:
        seconds = {int(k): float(v) for k, v in timed["seconds_per_slice"].items()}
        best = min(seconds, key=lambda k: seconds[k])
        gain = seconds[1] / seconds[best]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return Split(1, threads, "its timing record is unreadable (litemedsam models setup times again)")
    when = str(timed.get("date", "?"))[:10]
    if best == 1 or gain < MARGIN:
        return Split(1, threads, f"one session is as fast here (timed {when})")
    return Split(best, threads // best, f"{gain:.2f}x the slices per second of one session here (timed {when})")


def time_splits(encoder: Path, sha256: str | None, threads: int, rounds: int = ROUNDS) -> dict:
    """Seconds per slice of each candidate split of ``threads`` (sessions -> seconds), the same slices encoded by
    each in turn, round by round; kept for ``choose`` where there is a cache folder."""
    from litemedsam.models.session import make_session

    splits = {n: [make_session(encoder, threads // n, sha256) for _ in range(n)] for n in candidates(threads)}
    size = int(splits[1][0].get_inputs()[0].shape[-1])
    images = np.random.default_rng(0).random((SLICES, 1, 3, size, size), dtype=np.float32)
    seconds: dict = {n: [] for n in splits}
    for i in range(rounds + 1):
        for n, sessions in splits.items():
            with ThreadPoolExecutor(n) as pool:
                start = time.perf_counter()
                list(pool.map(lambda k: [sessions[k].run(None, {"image": x}) for x in images[k::n]], range(n)))
                if i:  # the first round is a warm-up
                    seconds[n].append((time.perf_counter() - start) / SLICES)
    result = {str(n): round(float(np.median(v)), 4) for n, v in seconds.items()}
    path = _record_path()
    if path is not None:
        record = _read()
        record[str(threads)] = {"seconds_per_slice": result, "date": date.today().isoformat(), "cpu": cpu()[0]}
        try:
            write_text(path, json.dumps(record, indent=1))
        except OSError:
            pass
    return result
