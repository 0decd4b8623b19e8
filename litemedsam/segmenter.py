"""Box-prompted segmentation with an ONNX encoder/decoder pair: encode an image once, decode many boxes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from litemedsam import transforms
from litemedsam.registry import PROMPT_FREE_FAMILIES, ModelSpec, get_model, model_paths
from litemedsam.session import make_session


@dataclass
class Embedding:
    """An encoded image: features plus the geometry needed to map masks back."""

    features: np.ndarray  # (1, 256, h, w) float32
    resized_hw: tuple[int, int]  # the part of the low-res logits that covers the image
    original_hw: tuple[int, int]


class Segmenter:
    """LiteMedSAM-style segmenter (the shape of segment-anything's SamPredictor).

    ``encode`` runs the image encoder once per image; ``predict`` decodes any number of boxes
    against that embedding, in chunks of ``max_batch`` boxes per decoder call.
    """

    upsample = cv2.INTER_LINEAR  # how low-res logits are brought to the image size

    def __init__(self, model: str | ModelSpec = "litemedsam", threads: int | None = None,
                 model_dir: Path | None = None, max_batch: int = 8):
        self.spec = get_model(model) if isinstance(model, str) else model
        encoder, decoder = model_paths(self.spec, model_dir)
        self.encoder = make_session(encoder, threads)
        self.decoder = make_session(decoder, threads)
        self.size = self.spec.image_size
        self.max_batch = max_batch
        self.prompt = "box"  # what the decoder is given per box; see EfficientSamSegmenter
        self.model_dir = model_dir
        self.threads = threads
        self._prompt_decoder = None

    @property
    def prompt_decoder(self):
        """SAM's general decoder (points, boxes as corners, mask input), loaded when first needed."""
        if self._prompt_decoder is None:
            if self.spec.prompt_decoder is None:
                from litemedsam.registry import ModelError

                raise ModelError(f"model {self.spec.name} has no point/mask decoder")
            (path,) = model_paths(self.spec, self.model_dir, entries=(self.spec.prompt_decoder,))
            self._prompt_decoder = make_session(path, self.threads)
        return self._prompt_decoder

    def predict_points(self, emb: Embedding, points: np.ndarray, labels: np.ndarray,
                       mask_input: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Any prompt: points (N, P, 2) in the resized frame with labels (N, P) (1 foreground,
        0 background, 2/3 box corners, -1 padding) and optional low-res mask logits (N, S, S) ->
        (N, H, W) bool masks and (N, S, S) low-res logits (to feed back as ``mask_input``)."""
        n = len(points)
        has = np.zeros(n, np.float32) if mask_input is None else np.ones(n, np.float32)
        mask_input = np.zeros((n, self.size, self.size), np.float32) if mask_input is None else mask_input
        logits, _ = self.prompt_decoder.run(None, {
            "image_embeddings": emb.features, "point_coords": np.asarray(points, np.float32),
            "point_labels": np.asarray(labels, np.float32),
            "mask_input": np.asarray(mask_input, np.float32)[:, None], "has_mask_input": has})
        logits = logits[:, 0]
        return transforms.postprocess_masks(logits, emb.resized_hw, emb.original_hw), logits

    def scale_points_hw(self, points: np.ndarray, h: int, w: int) -> np.ndarray:
        """(..., 2) pixel coordinates of an (h, w) image -> the resized frame (not truncated)."""
        return (np.asarray(points, np.float64) * (self.size / max(h, w))).astype(np.float32)

    def encode(self, image: np.ndarray) -> Embedding:
        """uint8 (H, W) or (H, W, 3) image -> Embedding."""
        h, w = image.shape[:2]
        x = transforms.preprocess(image, self.size)
        (features,) = self.encoder.run(None, {"image": x})
        return Embedding(features, transforms.resized_shape(h, w, self.size), (h, w))

    def scale_boxes(self, emb: Embedding, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in original pixels -> the model's resized frame."""
        return self.scale_boxes_hw(boxes, *emb.original_hw)

    def scale_boxes_hw(self, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
        """(N, 4) boxes in pixels of an (h, w) image -> the model's resized frame."""
        return transforms.scale_boxes(boxes, h, w, self.size)

    def box_from_mask(self, mask: np.ndarray, label: int, margin: int) -> np.ndarray | None:
        """Prompt box around a (H, W) mask of a neighbouring slice, in the model's frame."""
        return transforms.box_from_mask(mask, label, self.size, margin)

    def decode(self, emb: Embedding, boxes: np.ndarray) -> np.ndarray:
        """One decoder call: (n, 4) float32 boxes in the model's frame -> (n, 1, s, s) low-res logits."""
        masks, _ = self.decoder.run(None, {"image_embeddings": emb.features, "boxes": boxes})
        return masks

    def logits(self, emb: Embedding, boxes256: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the resized frame -> (N, s, s) low-res logits, ``max_batch`` boxes per call."""
        boxes256 = np.asarray(boxes256, dtype=np.float32).reshape(-1, 4)
        out = [self.decode(emb, boxes256[i:i + self.max_batch])[:, 0] for i in range(0, len(boxes256), self.max_batch)]
        if not out:
            low = emb.features.shape[2] * 4
            return np.zeros((0, low, low), dtype=np.float32)
        return np.concatenate(out)

    def predict(self, emb: Embedding, boxes256: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the resized frame -> (N, H, W) bool masks at the original size."""
        return transforms.postprocess_masks(self.logits(emb, boxes256), emb.resized_hw, emb.original_hw, self.upsample)


class EfficientSamSegmenter(Segmenter):
    """EfficientSAM (yformer/EfficientSAM) behind the same interface.

    The encoder takes the image at its own size in [0, 1] and resizes it to 1024 x 1024 in the
    graph (no aspect-ratio padding), so the prompt frame is that square: x * 1024 / W, y * 1024 / H.
    A box is two corner points labelled 2 and 3; with ``prompt = "box+center"`` the box centre is
    added as a foreground point (label 1). Points are padded to 6 with label -1, as upstream.
    """

    MAX_POINTS = 6
    upsample = cv2.INTER_CUBIC  # as upstream

    def encode(self, image: np.ndarray) -> Embedding:
        h, w = image.shape[:2]
        x = np.ascontiguousarray(rgb(image).transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
        (features,) = self.encoder.run(None, {"image": x})
        low = self.size // 4
        return Embedding(features, (low, low), (h, w))

    def scale_boxes_hw(self, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
        scale = np.array([w, h, w, h], dtype=np.float64)
        return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * self.size / scale).astype(np.float32)

    def box_from_mask(self, mask: np.ndarray, label: int, margin: int) -> np.ndarray | None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return None
        h, w = mask.shape
        # margin is given in pixels of a 256-pixel frame (LiteMedSAM's); keep it proportionate here
        m = margin * max(h, w) / 256
        box = np.array([[max(0, xs.min() - m), max(0, ys.min() - m), min(w - 1, xs.max() + m), min(h - 1, ys.max() + m)]])
        return self.scale_boxes_hw(box, h, w)[0]

    def prompts(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes in the 1024 frame -> points (N, 6, 2) and labels (N, 6)."""
        n = len(boxes)
        corners = boxes.reshape(n, 2, 2)
        labels = [2, 3]
        if self.prompt == "box+center":
            corners = np.concatenate([corners.mean(axis=1, keepdims=True), corners], axis=1)
            labels = [1, 2, 3]
        points = np.full((n, self.MAX_POINTS, 2), -1.0, dtype=np.float32)
        point_labels = np.full((n, self.MAX_POINTS), -1.0, dtype=np.float32)
        points[:, :len(labels)] = corners
        point_labels[:, :len(labels)] = labels
        return points, point_labels

    def decode(self, emb: Embedding, boxes: np.ndarray) -> np.ndarray:
        points, labels = self.prompts(boxes)
        masks, _ = self.decoder.run(None, {"image_embeddings": emb.features, "points": points, "point_labels": labels})
        return masks


SAM_PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
SAM_PIXEL_STD = np.array([58.395, 57.12, 57.375], np.float32)


def rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) -> (H, W, 3)."""
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def graph_size(session) -> int:
    """The square input size an image graph was exported for."""
    return int(session.get_inputs()[0].shape[-1])


class SamSegmenter(Segmenter):
    """SAM ViT (segment-anything's layout; SAM ViT-B or a LoRA-merged one) behind the same interface, as
    segment-anything's SamPredictor feeds it: longest side to S (bilinear; area when shrinking), SAM's
    pixel mean and std, zero padding; boxes scaled, not truncated; low-res logits cover S / 4."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.size = graph_size(self.encoder)

    def encode(self, image: np.ndarray) -> Embedding:
        h, w = image.shape[:2]
        nh, nw = transforms.resized_shape(h, w, self.size)
        shrink = cv2.INTER_AREA if max(h, w) > self.size else cv2.INTER_LINEAR
        small = cv2.resize(rgb(image), (nw, nh), interpolation=shrink).astype(np.float32)
        x = np.zeros((1, 3, self.size, self.size), np.float32)
        x[0, :, :nh, :nw] = ((small - SAM_PIXEL_MEAN) / SAM_PIXEL_STD).transpose(2, 0, 1)
        (features,) = self.encoder.run(None, {"image": x})
        return Embedding(features, (max(1, round(nh / 4)), max(1, round(nw / 4))), (h, w))

    def scale_boxes_hw(self, boxes: np.ndarray, h: int, w: int) -> np.ndarray:
        return (np.asarray(boxes, np.float64).reshape(-1, 4) * (self.size / max(h, w))).astype(np.float32)

    def box_from_mask(self, mask: np.ndarray, label: int, margin: int) -> np.ndarray | None:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            return None
        h, w = mask.shape
        m = margin * max(h, w) / 256  # the margin is given in LiteMedSAM's 256 frame
        box = np.array([[max(0, xs.min() - m), max(0, ys.min() - m), min(w - 1, xs.max() + m), min(h - 1, ys.max() + m)]])
        return self.scale_boxes_hw(box, h, w)[0]


def make_segmenter(model: str | ModelSpec, threads: int | None = None, model_dir: Path | None = None):
    """The segmenter class for the model's family (prompt-free families: litemedsam.promptless)."""
    spec = get_model(model) if isinstance(model, str) else model
    if spec.family in PROMPT_FREE_FAMILIES:
        from litemedsam.promptless import AutoPromptSegmenter, SemanticSegmenter

        cls = SemanticSegmenter if spec.family == "samed" else AutoPromptSegmenter
        return cls(spec, threads=threads, model_dir=model_dir)
    cls = {"efficientsam": EfficientSamSegmenter, "sam": SamSegmenter}.get(spec.family, Segmenter)
    return cls(spec, threads=threads, model_dir=model_dir)
