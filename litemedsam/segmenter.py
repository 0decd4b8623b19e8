"""Box-prompted segmentation with an ONNX encoder/decoder pair: encode an image once, decode many boxes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from litemedsam import transforms
from litemedsam.registry import ModelSpec, get_model, verified_path
from litemedsam.session import make_session


@dataclass
class Embedding:
    """An encoded image: features plus the geometry needed to map masks back."""

    features: np.ndarray  # (1, 256, 64, 64) float32
    resized_hw: tuple[int, int]
    original_hw: tuple[int, int]


class Segmenter:
    """LiteMedSAM-style segmenter (the shape of segment-anything's SamPredictor).

    ``encode`` runs the image encoder once per image; ``predict`` decodes any number of boxes
    against that embedding, in chunks of ``max_batch`` boxes per decoder call.
    """

    def __init__(self, model: str | ModelSpec = "litemedsam", threads: int | None = None,
                 model_dir: Path | None = None, max_batch: int = 8):
        self.spec = get_model(model) if isinstance(model, str) else model
        build = self.spec.build
        self.encoder = make_session(verified_path(self.spec.encoder, build, model_dir), threads)
        self.decoder = make_session(verified_path(self.spec.decoder, build, model_dir), threads)
        self.size = self.spec.image_size
        self.max_batch = max_batch

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

    def logits(self, emb: Embedding, boxes256: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the resized frame -> (N, S, S) low-res logits."""
        boxes256 = np.asarray(boxes256, dtype=np.float32).reshape(-1, 4)
        out = []
        for start in range(0, len(boxes256), self.max_batch):
            chunk = boxes256[start:start + self.max_batch]
            masks, _ = self.decoder.run(None, {"image_embeddings": emb.features, "boxes": chunk})
            out.append(masks[:, 0])
        if not out:
            return np.zeros((0, self.size, self.size), dtype=np.float32)
        return np.concatenate(out)

    def predict(self, emb: Embedding, boxes256: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in the resized frame -> (N, H, W) bool masks at the original size."""
        return transforms.postprocess_masks(self.logits(emb, boxes256), emb.resized_hw, emb.original_hw)
