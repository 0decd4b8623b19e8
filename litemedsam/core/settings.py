"""Where things are: the settings read from the environment, in one place."""
from __future__ import annotations

import os
import stat
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def work_dir() -> Path:
    """Where checkpoints and generated models live (``litemedsam models list`` says which): $LITEMEDSAM_WORK_DIR,
    else the checkout's work_dir/ when running from one, else this user's data folder (``user_data_dir``), the
    same from any current folder."""
    return work_dir_and_why()[0]


def work_dir_and_why() -> tuple[Path, str]:
    env = os.environ.get("LITEMEDSAM_WORK_DIR")
    if env:
        return Path(env).expanduser(), "$LITEMEDSAM_WORK_DIR"
    if (REPO_ROOT / "pyproject.toml").exists():  # a checkout (an installed package has none beside it)
        return REPO_ROOT / "work_dir", "this checkout's work_dir"
    return user_data_dir(), "this user's data folder"


def user_data_dir() -> Path:
    """This user's folder for litemedsam's models by the platform's rule: $XDG_DATA_HOME/litemedsam (default
    ~/.local/share/litemedsam) on Linux, ~/Library/Application Support/litemedsam on macOS,
    %LOCALAPPDATA%\\litemedsam on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "")
        base = base if os.path.isabs(base) else str(Path.home() / ".local" / "share")  # the spec: relative is ignored
    return Path(base) / "litemedsam"


def dev_data_dir() -> Path:
    """The real dev cases in challenge format (imgs/, gts/, baseline/) that tests, benchmarks and the int8 gate
    use: $LITEMEDSAM_DEV_DATA, else ../shared/data/cvpr24-dev beside the repository. Never read at inference."""
    env = os.environ.get("LITEMEDSAM_DEV_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data" / "cvpr24-dev"


def _private(folder: Path) -> bool:
    """A folder of this user's that nobody else can write (so nobody else can plant an entry)."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


@lru_cache(maxsize=1)
def cache_dir() -> Path | None:
    """The private cache folder (optimised graphs, remembered digests): $LITEMEDSAM_CACHE_DIR (``off`` disables
    caching), else work_dir()/cache when it can be written, else a folder of this user's in the temporary
    directory. A folder that another user can write is never used (nobody else can plant an entry)."""
    env = os.environ.get("LITEMEDSAM_CACHE_DIR", "")
    if env.lower() in ("off", "0", "no", "false"):
        return None
    candidates = [Path(env).expanduser()] if env else [
        work_dir() / "cache", Path(tempfile.gettempdir()) / f"litemedsam-cache-{os.getuid()}"]
    for folder in candidates:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if _private(folder) and os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None
