"""Box-prompted segmentation with an ONNX encoder/decoder pair: encode an image once, decode many prompts
(the shape of segment-anything's SamPredictor). One class per model family; each says how it feeds its
encoder, which frame an image gets in it (litemedsam.core.frame) and how its decoder takes a box.

Every box segmenter offers: ``frame(h, w)``, ``encode(image) -> Embedding``, ``predict(emb, boxes, prompt)``
with boxes in the model's input frame (``emb.frame.boxes_to_model``), and ``max_batch``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from litemedsam.core import transforms
from litemedsam.core.errors import ModelError
from litemedsam.core.frame import Frame
from litemedsam.models.registry import ModelSpec, get_model, load_object, model_files
from litemedsam.models import parallel
from litemedsam.models.session import default_threads, graph_size, make_session
from litemedsam.core.timing import phase


@dataclass
class Embedding:
    """An encoded image: its features and its frame (how the image sits in the model)."""

    features: np.ndarray  # (1, C, G, G) float32
    frame: Frame

    @property
    def original_hw(self) -> tuple:
        return self.frame.original_hw


class BoxSegmenter(Protocol):
    """What litemedsam.methods.pipeline and the servers need of a model that takes boxes (registry: ``takes_boxes``;
    ``Segmenter`` below is one, and a wrapper forwards what it does not change)."""

    max_batch: int
    encoder_file: tuple | None  # (path, sha256) of its encoder: what its embeddings are keyed by (None: not pinned)

    def frame(self, h: int, w: int) -> Frame: ...

    def encode(self, image: np.ndarray, session=None, options=None) -> Embedding: ...

    def predict(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box") -> np.ndarray: ...

    def logit_maps(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box"): ...

    def scored_logit_maps(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box"):
        """(logit map, the decoder's predicted IoU or None) per box."""

    def slice_encoders(self) -> list:
        """Encoder sessions that encode a volume's slices at once ([]: one slice at a time)."""

    def warm_up(self) -> None:
        """Run the decoder until it is as fast as it gets (once; the servers, before the first prompt)."""


class ImageSegmenter(Protocol):
    """A model that takes no prompt (litemedsam.methods.promptless): an image to a label map."""

    def segment(self, image: np.ndarray) -> np.ndarray: ...


class Segmenter:
    """LiteMedSAM (family "litemedsam"): image resized (longest side S, area), min-max normalised, padded;
    boxes scaled and truncated to integers; low-res logits S x S; embedding cells S / 4, as the reference
    script. ``max_batch`` boxes go through the decoder per call."""

    logit_stride = 1  # input pixels per low-res logit
    warmed = False  # set once its decoder has run twice (warm_up)
    grid_stride = 4  # input pixels per embedding cell
    upsample = cv2.INTER_LINEAR  # how low-res logits are brought to the image size

    def __init__(self, model: str | ModelSpec = "litemedsam", threads: int | None = None,
                 model_dir: Path | None = None, max_batch: int = 8):
        self.spec = get_model(model) if isinstance(model, str) else model
        encoder, decoder = model_files(self.spec, model_dir)
        self.encoder_file = encoder
        self.encoder = make_session(encoder[0], threads, encoder[1])
        self.decoder = make_session(decoder[0], threads, decoder[1])
        self.size = self.input_size()
        self.max_batch = max_batch
        self.model_dir = model_dir
        self.threads = threads
        self._prompt_decoder = None
        self._slice_encoders: list | None = None
        self._lock = threading.Lock()

    def input_size(self) -> int:
        return self.spec.input_size

    def frame(self, h: int, w: int) -> Frame:
        return Frame.longest_side(h, w, self.size, self.size // self.logit_stride, self.size // self.grid_stride,
                                  truncate_boxes=True, reference_boxes_from_masks=True)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W) or (H, W, 3) -> the encoder's (1, 3, S, S) float32 input."""
        return transforms.preprocess(image, self.size)

    def encode(self, image: np.ndarray, session=None, options=None) -> Embedding:
        """The embedding of a uint8 image, by ``session`` (one of ``slice_encoders``; default the encoder, with
        every thread); ``options``: the run's (litemedsam.models.session.interruptible)."""
        x = self.preprocess(image)
        with phase("encode"):
            (features,) = (session or self.encoder).run(None, {"image": x}, options)
        return Embedding(features, self.frame(*image.shape[:2]))

    def slice_encoders(self) -> list:
        """The encoder sessions that encode a volume's slices at once (litemedsam.models.parallel splits the
        threads among them), made when first asked; [the encoder] when the split is one session."""
        with self._lock:
            if self._slice_encoders is None:
                split = parallel.choose(self.threads or default_threads())
                path, sha256 = self.encoder_file
                self._slice_encoders = [self.encoder] if split.sessions == 1 else [
                    make_session(path, split.threads, sha256) for _ in range(split.sessions)]
            return self._slice_encoders

    def warm_up(self) -> None:
        """Run the decoder twice on an empty embedding: ONNX Runtime's first runs of a session are slow (~2-4x: its
        buffers are made then), so a server does this before the first prompt comes, with no image needed
        (values do not change what a run costs). Once per segmenter; a decoder whose embedding has no fixed shape
        is left to warm on its first prompts."""
        if self.warmed:
            return
        shape = [1, *self.encoder.get_outputs()[0].shape[1:]]
        if not all(isinstance(n, int) for n in shape):
            return
        emb = Embedding(np.zeros(shape, np.float32), self.frame(self.size, self.size))
        box = emb.frame.boxes_to_model([[0, 0, self.size - 1, self.size - 1]])
        for _ in range(2):
            self.predict(emb, box)
        self.warmed = True

    def decoder_feeds(self, emb: Embedding, boxes: np.ndarray, prompt: str) -> dict:
        """The box decoder's inputs for (n, 4) boxes in the input frame (``prompt`` is the router's prompt
        style; LiteMedSAM takes the box alone whatever it is)."""
        return {"image_embeddings": emb.features, "boxes": boxes}

    def decode(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box") -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes in the input frame -> (N, L, L) low-res logits and (N,) the decoder's predicted IoU of
        each mask (its confidence), ``max_batch`` boxes per call."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        with phase("decode"):
            out = [self.decoder.run(None, self.decoder_feeds(emb, boxes[i:i + self.max_batch], prompt))
                   for i in range(0, len(boxes), self.max_batch)]
        if not out:
            low = emb.frame.logit_size
            return np.zeros((0, low, low), dtype=np.float32), np.zeros(0, dtype=np.float32)
        return np.concatenate([o[0][:, 0] for o in out]), np.concatenate([o[1].reshape(-1) for o in out])

    def logits(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box") -> np.ndarray:
        """(N, 4) boxes in the input frame -> (N, L, L) low-res logits, ``max_batch`` boxes per call."""
        return self.decode(emb, boxes, prompt)[0]

    def predict(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box") -> np.ndarray:
        """(N, 4) boxes in the input frame -> (N, H, W) bool masks at the image size."""
        return emb.frame.masks(self.logits(emb, boxes, prompt), self.upsample)

    def scored_logit_maps(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box"):
        """(N, 4) boxes in the input frame -> N pairs of an (H, W) float32 logit map at the image size and the
        decoder's predicted IoU, one at a time; at most ``max_batch`` boxes' low-res logits held at once."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        for start in range(0, len(boxes), self.max_batch):
            for low, score in zip(*self.decode(emb, boxes[start:start + self.max_batch], prompt)):
                yield emb.frame.logit_map(low, self.upsample), float(score)

    def logit_maps(self, emb: Embedding, boxes: np.ndarray, prompt: str = "box"):
        """(N, 4) boxes in the input frame -> N (H, W) float32 logit maps at the image size, one at a time
        (``predict`` is each thresholded at 0)."""
        return (up for up, _ in self.scored_logit_maps(emb, boxes, prompt))

    @property
    def prompt_decoder(self):
        """SAM's general decoder (points, boxes as corners, mask input), loaded when first needed."""
        if self._prompt_decoder is None:
            if self.spec.prompt_decoder is None:
                raise ModelError(f"model {self.spec.name} has no point/mask decoder")
            ((path, sha256),) = model_files(self.spec, self.model_dir, entries=(self.spec.prompt_decoder,))
            self._prompt_decoder = make_session(path, self.threads, sha256)
        return self._prompt_decoder

    def predict_points(self, emb: Embedding, points: np.ndarray, labels: np.ndarray,
                       mask_input: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Any prompt: points (N, P, 2) in the input frame with labels (N, P) (1 foreground, 0 background,
        2/3 box corners, -1 padding) and optional low-res mask logits (N, L, L) -> (N, H, W) bool masks and
        (N, L, L) low-res logits (to feed back as ``mask_input``) and (N,) the decoder's predicted IoU of each."""
        n = len(points)
        low = emb.frame.logit_size
        has = np.zeros(n, np.float32) if mask_input is None else np.ones(n, np.float32)
        mask_input = np.zeros((n, low, low), np.float32) if mask_input is None else mask_input
        feeds = {"image_embeddings": emb.features, "point_coords": np.asarray(points, np.float32),
                 "point_labels": np.asarray(labels, np.float32),
                 "mask_input": np.asarray(mask_input, np.float32)[:, None], "has_mask_input": has}
        decoder = self.prompt_decoder  # loaded when first needed
        with phase("decode"):
            logits, scores = decoder.run(None, feeds)
        logits = logits[:, 0]
        return emb.frame.masks(logits), logits, scores.reshape(-1)


class SamSegmenter(Segmenter):
    """SAM ViT (family "sam": segment-anything's layout; SAM ViT-B or a LoRA-merged one), fed as segment-anything's
    SamPredictor does: longest side to S (bilinear; area when shrinking), SAM's pixel mean and std, zero
    padding; boxes scaled, not truncated; low-res logits S / 4; embedding cells S / 16."""

    logit_stride = 4
    grid_stride = 16

    def input_size(self) -> int:
        return graph_size(self.encoder)  # SAM and SAMed graphs are exported at several sizes

    def frame(self, h: int, w: int) -> Frame:
        return Frame.longest_side(h, w, self.size, self.size // self.logit_stride, self.size // self.grid_stride)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        nh, nw = transforms.resized_shape(h, w, self.size)
        shrink = cv2.INTER_AREA if max(h, w) > self.size else cv2.INTER_LINEAR
        small = cv2.resize(transforms.rgb(image), (nw, nh), interpolation=shrink).astype(np.float32)
        x = np.zeros((1, 3, self.size, self.size), np.float32)
        x[0, :, :nh, :nw] = ((small - transforms.SAM_PIXEL_MEAN) / transforms.SAM_PIXEL_STD).transpose(2, 0, 1)
        return x


class EfficientSamSegmenter(Segmenter):
    """EfficientSAM (family "efficientsam", yformer/EfficientSAM).

    The encoder takes the image at its own size in [0, 1] and resizes it to S x S in the graph (no
    aspect-ratio padding), so the frame is that square: x * S / W, y * S / H. A box is two corner points
    labelled 2 and 3; with prompt "box+center" the box centre is added as a foreground point (label 1).
    Points are padded to 6 with label -1, as upstream; logits are upsampled bicubically, as upstream.
    """

    MAX_POINTS = 6
    logit_stride = 4
    grid_stride = 16
    upsample = cv2.INTER_CUBIC

    def frame(self, h: int, w: int) -> Frame:
        return Frame.stretched(h, w, self.size, self.size // self.logit_stride, self.size // self.grid_stride)

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(transforms.rgb(image).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)

    def decoder_feeds(self, emb: Embedding, boxes: np.ndarray, prompt: str) -> dict:
        """(n, 4) boxes in the S x S frame -> points (n, 6, 2) and labels (n, 6)."""
        n = len(boxes)
        corners = boxes.reshape(n, 2, 2)
        labels = [2, 3]
        if prompt == "box+center":
            corners = np.concatenate([corners.mean(axis=1, keepdims=True), corners], axis=1)
            labels = [1, 2, 3]
        points = np.full((n, self.MAX_POINTS, 2), -1.0, dtype=np.float32)
        point_labels = np.full((n, self.MAX_POINTS), -1.0, dtype=np.float32)
        points[:, :len(labels)] = corners
        point_labels[:, :len(labels)] = labels
        return {"image_embeddings": emb.features, "points": points, "point_labels": point_labels}


def runtime_class(spec: ModelSpec):
    """The class that runs a model, as its registry entry names it."""
    return load_object(spec.runtime)


def make_segmenter(model: str | ModelSpec, threads: int | None = None, model_dir: Path | None = None):
    """The runtime object of a registered model: a box segmenter (this module's classes) or, for models that
    take no prompt, an image segmenter (litemedsam.methods.promptless)."""
    spec = get_model(model) if isinstance(model, str) else model
    return runtime_class(spec)(spec, threads=threads, model_dir=model_dir)


class Segmenters:
    """The runtime objects of one run's models, made when a case first needs them (one session set per model,
    also when threads ask at once, as the web app's do)."""

    def __init__(self, threads: int | None = None, factory: Callable[[str], object] | None = None):
        self.factory = factory or (lambda name: make_segmenter(name, threads=threads))
        self.loaded: dict = {}
        self.lock = threading.Lock()

    def get(self, name: str):
        with self.lock:
            if name not in self.loaded:
                with phase("load"):
                    self.loaded[name] = self.factory(name)
            return self.loaded[name]
