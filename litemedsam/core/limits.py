"""The limits on one case, decided here for every format: bytes of its arrays (``max_case_bytes``, default 4 GiB,
``$LITEMEDSAM_MAX_CASE_BYTES``), memory it may take (``MEMORY_FACTOR`` times its arrays, against the cgroup limit
or MemAvailable), objects per case (``MAX_OBJECTS``), and that a case file is a regular file."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from litemedsam.core.errors import CaseError

DEFAULT_MAX_CASE_BYTES = 4 << 30
MAX_OBJECTS = 65535  # boxes (objects) of one case: its labels are uint16
MAX_POINTS = 1000  # points (clicks) of one object given at once: to the API's Predictor, to the protocol server
POINT_BYTES = 330 << 10  # the prompt decoder's memory per point of an object (measured: 1,000 points 0.36 GB)
MEMORY_FACTOR = 3  # a case needs about its arrays' size three times over (input, labels, working copies)


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


CGROUP_FILES = {"v2": ("", ("memory.max", "memory.current")),
                "v1": ("memory", ("memory.limit_in_bytes", "memory.usage_in_bytes"))}
NO_LIMIT = 1 << 60  # cgroup v1 writes a huge number (page-rounded LONG_MAX) where there is no limit


def available_memory(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process can still allocate: the least left under any memory limit of its own cgroups (v2, and v1
    as under Slurm, systemd or ``docker -m`` on older hosts), from its own cgroup up to the root, or MemAvailable,
    whichever is smaller."""
    found = cgroup_room(proc, root)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return max(0, min(found)) if found else None


def resident_bytes() -> int:
    """This process's resident memory now (bytes; 0 where the system does not say)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def room(budget: int | None = None) -> int | None:
    """Bytes this process may still allocate: ``available_memory``, and within ``budget`` (the most the process
    may hold, a user's --memory) less what it holds now."""
    free = available_memory()
    if budget is not None:
        free = min(free if free is not None else budget, max(0, budget - resident_bytes()))
    return free


def cgroup_room(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> list[int]:
    """Bytes left under each memory limit of the cgroups this process is in (``proc``: its /proc/PID/cgroup; lines
    ``0::/path`` for v2, ``N:memory,...:/path`` for v1), walking from its own cgroup up to the mount's root. In a
    container (a cgroup namespace) the path named may not exist below the mount: the mount's root is then its own."""
    try:
        lines = Path(proc).read_text().splitlines()
    except OSError:
        return []
    room = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        version = "v2" if parts[0] == "0" and parts[1] == "" else "v1" if "memory" in parts[1].split(",") else None
        if version is None:
            continue
        mount, (limit_file, usage_file) = CGROUP_FILES[version]
        base, own = Path(root) / mount, Path(parts[2].lstrip("/"))
        for folder in dict.fromkeys([base / own, *(base / up for up in own.parents)]):
            try:
                limit = (folder / limit_file).read_text().strip()
                if limit != "max" and int(limit) < NO_LIMIT:
                    room.append(int(limit) - int((folder / usage_file).read_text()))
            except (OSError, ValueError):
                continue
    return room


def check_size(need: int, over: str, subject: str = "it") -> None:
    """CaseError when ``need`` bytes are over the per-case limit (``over``: what needs them, e.g. "its volume
    (512, 512, 300) needs 300.0 MiB") or, times MEMORY_FACTOR, over the memory available (``subject``)."""
    if need > max_case_bytes():
        raise CaseError(f"{over}, more than the limit of {human(max_case_bytes())} per case "
                        f"(LITEMEDSAM_MAX_CASE_BYTES)")
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
        raise CaseError(f"{kind}, not a case file")
