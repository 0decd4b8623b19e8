"""Where the seconds go: efficiency.csv (seconds and status per case, rewritten after every case; an existing
one, of an earlier run or of the challenge scripts, read tolerantly) and the phases of a case (``infer
--profile``)."""
from __future__ import annotations

import csv
import io
import os
import stat
import time
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable

from litemedsam.core.errors import shown
from litemedsam.core.safeio import write_text

EFFICIENCY_CSV = "efficiency.csv"
MAX_TIMES_BYTES = 64 << 20  # an efficiency.csv larger than this is not ours


def read_times(path: Path, echo: Callable[[str], None]) -> dict:
    """The rows of an existing efficiency.csv, read tolerantly: columns other than case, time and status are
    ignored (the challenge scripts write case,time). A file that cannot be read as such a table is moved
    aside to efficiency.csv.unreadable[.N] with a warning; the run goes on without it."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return {}
    except OSError as e:
        echo(f"WARNING: {shown(path)} cannot be read ({e.strerror or e}); it will be rewritten")
        return {}
    rows = _times_table(path, info)
    if isinstance(rows, dict):
        return rows
    _move_aside(path, rows, echo)
    return {}


def _times_table(path: Path, info: os.stat_result) -> dict | str:
    """The rows of the efficiency.csv at ``path`` (``info``: its lstat), or what keeps it from being one."""
    try:
        if not stat.S_ISREG(info.st_mode):
            problem = "it is not a regular file"
        elif info.st_size > MAX_TIMES_BYTES:
            problem = f"it is {info.st_size} bytes, too large for a table of times"
        else:
            # as written: UTF-8, case names that are not UTF-8 kept as their bytes
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if "\0" in text:
                problem = "it is binary"
            elif text.strip() and "case" not in (reader.fieldnames or ()):
                problem = "it has no 'case' column"
            else:
                return {r["case"]: {"time": r.get("time") or "",
                                    "status": r.get("status") or ("ok" if r.get("time") else "")}
                        for r in reader if r.get("case")}
    except csv.Error:
        problem = "it is not a CSV table"
    except OSError as e:
        problem = e.strerror or str(e)
    return problem


def _move_aside(path: Path, problem: str, echo: Callable[[str], None]) -> None:
    """A file that is not a table of times, renamed to efficiency.csv.unreadable[.N] with a warning."""
    aside = path.with_name(path.name + ".unreadable")
    n = 1
    while aside.exists() or aside.is_symlink():
        aside, n = path.with_name(f"{path.name}.unreadable.{n}"), n + 1
    try:
        os.rename(path, aside)
        echo(f"WARNING: {shown(path)} is not a table of case times ({problem}); moved aside to {shown(aside.name)}")
    except OSError as e:
        echo(f"WARNING: {shown(path)} is not a table of case times ({problem}) and cannot be moved aside "
             f"({e.strerror}); it will be replaced")


def write_times(path: Path, rows: dict) -> None:
    """Rewrite efficiency.csv atomically (case names that are not UTF-8 are kept as their bytes)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["case", "time", "status"])
    for case in sorted(rows):
        writer.writerow([case, rows[case]["time"], rows[case]["status"]])
    write_text(path, out.getvalue())


_phases: ContextVar[dict[str, float] | None] = ContextVar("litemedsam_phases", default=None)  # as progress's reporter


@contextmanager
def phase(name: str):
    """Add the seconds of the block to phase ``name`` (read, load, encode, decode, write) of the ``timing``
    block it runs in (none: not counted)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases = _phases.get()
        if phases is not None:
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def timing():
    """The seconds of each phase timed in the block (name -> seconds, filled as the block runs)."""
    token = _phases.set({})
    try:
        yield _phases.get()
    finally:
        _phases.reset(token)


def process_seconds() -> float | None:
    """Seconds since this process started (Linux; 10 ms resolution), None where unknown."""
    try:
        with open("/proc/self/stat") as handle:
            started = int(handle.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as handle:
            return float(handle.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return None
