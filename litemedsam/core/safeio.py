"""How litemedsam writes a whole file: atomically, through a temporary file that is created exclusively
(never through a symbolic link planted at its name), removed on any error or interrupt, and named so that
leftovers of killed runs can be recognised and cleaned up. (The browser app's work files, which grow record by
record, are appended by litemedsam.serve.interactive, and written whole through here.)"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from litemedsam.core.errors import OutputError

TEMP_PREFIX = ".litemedsam-"
TEMP_SUFFIX = ".tmp"
# ours: .litemedsam-<pid>-<random>.tmp; of earlier builds: .<case>.npz.<pid>.tmp, .efficiency.csv.<pid>.tmp
_OURS = re.compile(r"^\.litemedsam-(\d+)-[^/]*\.tmp(?:\.[A-Za-z0-9]+)?$")
_LEGACY = re.compile(r"^\..+\.(?:npz|NPZ|csv)\.(\d+)\.tmp$")


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read once (reading it means setting it, which other threads must not see)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_path(folder, suffix: str = "") -> Path:
    """A new, empty temporary file of ours in ``folder``, created exclusively (mkstemp: O_CREAT | O_EXCL |
    O_NOFOLLOW), for writers that need a path (ONNX exporters, ONNX Runtime, SimpleITK, which needs the
    format's ``suffix`` at the end); the caller renames or removes it."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX + suffix, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as a file the user makes (mkstemp's is 0600): it becomes an output
    finally:
        os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_file(path, mode: str = "wb", **open_args):
    """Yield a handle on a fresh temporary file beside ``path``; when the block ends normally the file
    replaces ``path`` (readers never see a partial file). On any error, Ctrl-C or SIGTERM the temporary
    file is removed and nothing at ``path`` changes. OSErrors become OutputError naming ``path``."""
    path = Path(path)
    try:
        # mkstemp: O_CREAT | O_EXCL (| O_NOFOLLOW), mode 0600; then the usual permissions of a new file
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **open_args) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` are one file (the same path, a symbolic link or a hard link to it); False when
    either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # ValueError: a NUL in a path
        return False


def read_small(path, limit: int, what: str) -> bytes:
    """The bytes of a small file the user names (a key, a label table): a regular file only (a FIFO would hang,
    /dev/zero would fill the memory), at most ``limit`` bytes; ValueError saying what is wrong (``what`` names it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO does not wait for a writer
    except (OSError, ValueError) as e:
        raise ValueError(f"{what}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode) else \
                "a device or special file"
            raise ValueError(f"{what}: {kind}, not a regular file")
        if info.st_size > limit:
            raise ValueError(f"{what}: {info.st_size} bytes; at most {limit} are read")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what}: larger than {limit} bytes")
    return data


def write_bytes(path, data: bytes) -> None:
    with atomic_file(path) as handle:
        handle.write(data)


def write_text(path, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this run has written nothing yet: a leftover of an earlier process with our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid <= 2**22  # exists (another user's), unless it cannot be a pid at all
    return True


def remove_stale_temps(folder) -> list:
    """Remove the temporary files that killed litemedsam runs left in ``folder`` (those whose process no
    longer runs; a concurrent run's are kept). Links are removed, never followed. Returns the names."""
    removed: list = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _OURS.match(entry.name) or _LEGACY.match(entry.name)
        if not m or _running(int(m.group(1))):
            continue
        try:
            if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            pass
    return removed
