"""The prompt-free models' runtime objects (the registry's families "samed" and "promise" name them): one image
in, the model's classes out, through their ONNX sessions. litemedsam.methods.promptless segments cases with them."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from litemedsam.core.transforms import rgb
from litemedsam.models.registry import ModelSpec, model_files
from litemedsam.models.session import graph_size, make_session

SAMED_INPUT_SIZE = 224  # SAMed's test.py first resizes every slice to its training input size


class SemanticSegmenter:
    """SAMed (family "samed"): image -> label map, 0 background and 1..K the model's classes.

    As SAMed's ``test_single_volume``: intensities / 255, resized (bicubic) to 224 x 224 and then to the
    encoder's S x S, the same grey slice on three channels; the K + 1 low-res logit maps are brought to
    S x S bilinearly, their argmax taken, and the labels resized back with nearest neighbours.
    """

    def __init__(self, spec: ModelSpec, threads: int | None = None, model_dir: Path | None = None):
        (encoder, enc_sha), (decoder, dec_sha) = model_files(spec, model_dir)
        self.spec = spec
        self.encoder = make_session(encoder, threads, enc_sha)
        self.decoder = make_session(decoder, threads, dec_sha)
        self.size = graph_size(self.encoder)

    def segment(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x: np.ndarray = rgb(image).astype(np.float32) / np.float32(255)
        for side in (SAMED_INPUT_SIZE, self.size):
            if x.shape[:2] != (side, side):
                x = cv2.resize(x, (side, side), interpolation=cv2.INTER_CUBIC)
        (emb,) = self.encoder.run(None, {"image": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
        (logits,) = self.decoder.run(None, {"image_embeddings": emb})
        up = cv2.resize(np.ascontiguousarray(logits[0].transpose(1, 2, 0)), (self.size, self.size),
                        interpolation=cv2.INTER_LINEAR)
        labels = (up.argmax(axis=2) if up.ndim == 3 else np.zeros(up.shape, np.int64)).astype(np.uint8)
        return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST) if (h, w) != labels.shape else labels


class AutoPromptSegmenter:
    """ProMISe (family "promise"): one graph finds its own point prompts and returns the mask.

    As ProMISe's evaluation: image resized to S x S (bilinear) in [0, 1] (the graph normalises), mask
    token 1's low-res logits >= 0 (sigmoid >= 0.5) on their S/4 grid, morphological opening with a
    5 x 5 square, then resized to the image (bilinear on the 0/1 map, >= 0.5).
    """

    OPENING = np.ones((5, 5), np.uint8)

    def __init__(self, spec: ModelSpec, threads: int | None = None, model_dir: Path | None = None):
        ((graph, sha256),) = model_files(spec, model_dir)
        self.spec = spec
        self.session = make_session(graph, threads, sha256)
        self.size = graph_size(self.session)

    def predict(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W[, 3]) uint8 -> (H, W) bool mask and the (P, 2) points it prompted itself with (image pixels)."""
        h, w = image.shape[:2]
        x = cv2.resize(rgb(image), (self.size, self.size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
        logits, points = self.session.run(None, {"image": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})
        low = cv2.morphologyEx((logits[0, 0] >= 0).astype(np.uint8), cv2.MORPH_OPEN, self.OPENING)
        mask = cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
        return mask, points[0] * np.array([w / self.size, h / self.size], np.float32)

    def segment(self, image: np.ndarray) -> np.ndarray:
        return self.predict(image)[0].astype(np.uint8)
