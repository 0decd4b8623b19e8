"""Self-prompting (as in few-shot-self-prompt-SAM): a linear pixel classifier on the image embedding
gives a coarse mask; its box (and/or the point deepest inside it) prompts the decoder. No box is
needed at inference. LiteMedSAM was trained with box prompts only and all but ignores point prompts
(DSC ~0 with a point alone on the Kvasir dev cases), so the default prompt is the box.

The classifier is logistic regression on the 256 channels of each embedding cell (64 x 64 cells for
LiteMedSAM), fitted on k labelled images, with L2 penalty 1/2 |w|^2 (scikit-learn's default C = 1)
by Newton's method. It is saved as a tiny ONNX graph (1x1 convolution + sigmoid) that ONNX Runtime
runs on the embedding.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from litemedsam.methods.prompting import SlicePrompting
from litemedsam.core.transforms import bounding_box
from litemedsam.core.safeio import write_bytes
from litemedsam.models.segmenter import Embedding, Segmenter

KERNEL = np.ones((5, 5), np.uint8)


def training_pixels(seg: Segmenter, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Embedding cells of the image (n, 256) and their labels (n,): the mask resized like the image,
    then to the embedding grid (nearest), as upstream does with SAM's 64 x 64 grid."""
    emb = seg.encode(image)
    labels = emb.frame.image_to_grid(mask)
    rows, cols = emb.frame.grid_cells()
    x = emb.features[0, :, :rows, :cols].reshape(emb.features.shape[1], -1).T
    return x.astype(np.float64), labels[:rows, :cols].ravel().astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 30) -> tuple[np.ndarray, float]:
    """Weights (d,) and bias minimising sum of log-losses + l2/2 |w|^2, by Newton's method."""
    n, d = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w[:-1], float(w[-1])


def save_head(path: Path, weights: np.ndarray, bias: float, metadata: dict) -> None:
    """The classifier as an ONNX graph: image_embeddings (1, C, h, w) -> probability (1, 1, h, w)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise RuntimeError("saving a head needs the onnx package: pip install onnx (or 'litemedsam[export]')") from None
    c = len(weights)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image_embeddings", "weight", "bias"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["probability"])],
        "self_prompt_head",
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, c, "h", "w"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [1, 1, "h", "w"])],
        [numpy_helper.from_array(weights.reshape(1, c, 1, 1).astype(np.float32), "weight"),
         numpy_helper.from_array(np.array([bias], np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="litemedsam fit-head")
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model)
    write_bytes(path, model.SerializeToString())


def head_metadata(session) -> dict:
    return dict(session.get_modelmeta().custom_metadata_map)


def coarse_mask(head, emb: Embedding) -> np.ndarray:
    """The head's foreground (probability > 0.5) at the original image size (nearest, as upstream)."""
    (prob,) = head.run(None, {"image_embeddings": emb.features})
    return emb.frame.grid_to_image(prob[0, 0] > 0.5).astype(np.uint8)


def self_prompts(mask: np.ndarray):
    """Upstream's prompts from a coarse mask: the point deepest inside it (distance transform) and
    the box of the mask after erosion (3 x) and dilation (5 x) with a 5 x 5 kernel. None if empty."""
    if not mask.any():
        return None
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    grown = cv2.dilate(cv2.erode(mask.astype(np.uint8), KERNEL, iterations=3), KERNEL, iterations=5)
    if not grown.any():
        grown = mask.astype(np.uint8)
    return np.array([x, y], np.float64), np.array(bounding_box(grown), np.float64)


def segment_self(seg: Segmenter, head, image: np.ndarray, prompt: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """(H, W[, 3]) image -> (label map with 1 on the object, the head's coarse mask)."""
    return segment_embedded(seg, head, seg.encode(image), prompt)


def segment_embedded(seg: Segmenter, head, emb: Embedding, prompt: str = "box") -> tuple[np.ndarray, np.ndarray]:
    """segment_self on an image already encoded; ``prompt``: box, point or point+box."""
    coarse = coarse_mask(head, emb)
    out = np.zeros(emb.original_hw, np.uint8)
    prompts = self_prompts(coarse)
    if prompts is None:
        return out, coarse
    point, box = prompts
    box = emb.frame.boxes_to_model(box[None])[0]  # (truncated to integers for LiteMedSAM, as every box prompt)
    if prompt == "box":  # the box decoder (the general one gives the same masks, slower)
        out[seg.predict(emb, box[None])[0]] = 1
        return out, coarse
    point = emb.frame.points_to_model(point[None])
    if prompt == "point":
        pts, labels = point, [1]
    else:
        pts, labels = np.concatenate([point, box.reshape(2, 2)]), [1, 2, 3]
    masks, _, _ = seg.predict_points(emb, pts[None], np.array([labels], np.float32))
    out[masks[0]] = 1
    return out, coarse


class SelfPrompt(SlicePrompting):
    """infer --prompt self: the head's model, prompted by the head (2D cases)."""

    name = "self-prompting (--prompt self)"
    dims = ("2D",)

    def __init__(self, head):
        self.head = head
        self.model = head_metadata(head).get("model", "litemedsam")

    def segment_image(self, seg: Segmenter, image: np.ndarray) -> np.ndarray:
        return segment_self(seg, self.head, image)[0]
