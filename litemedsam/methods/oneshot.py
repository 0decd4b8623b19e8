"""One-shot part-aware prompting (as in P2SAM): one reference image with its mask segments the same
kind of object in other images, with no boxes.

From the reference: the image-embedding cells under the mask (the mask resized like the image, then
bilinearly to the grid, > 0.5) are the object's patches; k-means splits them into n parts whose
normalised means are part prototypes. On a target image: each prototype's cosine similarity to the
normalised target cells, upsampled to the image, gives one positive point at its maximum; the
location least similar to the whole object (the mean prototype) is a negative point. The decoder
then runs the cascade: points; points + the previous low-res mask; points + that mask's box + the
mask. This is tried for n = 1..max_parts, and the n whose predicted object patches are closest to
the reference patches (an entropic optimal-transport estimate of the Wasserstein distance between
the two sets of cell features) is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from litemedsam.methods.prompting import SlicePrompting
from litemedsam.models.segmenter import Embedding, Segmenter
from litemedsam.core.transforms import bounding_box


@dataclass
class Reference:
    patches: np.ndarray  # (n, C) embedding cells under the reference mask
    prototypes: dict  # parts -> (parts, C) normalised prototypes


def kmeans(x: np.ndarray, k: int, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """Labels (n,) of k-means with k-means++ seeding (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    seeds = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(1) for c in seeds], axis=0)
        seeds.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
    centres = np.array(seeds)
    labels = np.zeros(len(x), int)
    for _ in range(iterations):
        new = ((x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None]).argmin(1)
        if (new == labels).all() and _ > 0:
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                centres[j] = x[labels == j].mean(0)
    return labels


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def build_reference(seg: Segmenter, emb: Embedding, mask: np.ndarray, max_parts: int = 3) -> Reference:
    """Part prototypes of the object under ``mask`` in an encoded reference image."""
    cells = emb.frame.image_to_grid(mask, cv2.INTER_LINEAR) > 0.5
    patches = emb.features[0].transpose(1, 2, 0)[cells].astype(np.float64)  # (n, C)
    if len(patches) == 0:
        raise ValueError("the reference mask covers no embedding cell (empty or too small)")
    prototypes = {}
    for parts in range(1, max_parts + 1):
        if len(patches) < parts:
            break
        if parts == 1:
            prototypes[1] = normalise(patches.mean(0, keepdims=True))
        else:
            labels = kmeans(patches, parts)
            prototypes[parts] = normalise(np.stack([patches[labels == j].mean(0) for j in range(parts)
                                                    if (labels == j).any()]))
    return Reference(patches, prototypes)


def wasserstein(a: np.ndarray, b: np.ndarray, reg: float = 0.05, iterations: int = 100, most: int = 256) -> float:
    """Entropic OT estimate of the 2-Wasserstein cost between point sets a (n, C), b (m, C), uniform
    weights, squared Euclidean cost (scaled by its median), Sinkhorn iterations in the log domain.
    Sets larger than ``most`` are evenly subsampled (deterministic)."""
    a = a[np.linspace(0, len(a) - 1, most).astype(int)] if len(a) > most else a
    b = b[np.linspace(0, len(b) - 1, most).astype(int)] if len(b) > most else b
    cost = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)
    scale = max(float(np.median(cost)), 1e-12)
    k = -cost / (scale * reg)
    log_a, log_b = -np.log(len(a)) * np.ones(len(a)), -np.log(len(b)) * np.ones(len(b))
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(iterations):
        f = log_a - np.logaddexp.reduce(k + g[None, :], axis=1)
        g = log_b - np.logaddexp.reduce(k + f[:, None], axis=0)
    plan = np.exp(k + f[:, None] + g[None, :])
    return float((plan * cost).sum())


def similarity_maps(emb: Embedding, prototypes: np.ndarray) -> np.ndarray:
    """(parts, C) prototypes -> (parts, H, W) cosine similarity at the image size."""
    feats = emb.features[0]
    c, g, _ = feats.shape
    cells = normalise(feats.reshape(c, -1).T)  # (g*g, C)
    sims = (cells @ prototypes.T).T.reshape(-1, g, g)
    return np.stack([emb.frame.grid_to_image(s, cv2.INTER_LINEAR) for s in sims])


def segment_oneshot(seg: Segmenter, ref: Reference, emb: Embedding) -> tuple[np.ndarray, dict]:
    """Encoded image -> (label map with 1 on the object, what was chosen). The part counts are
    decoded together: one decoder call per cascade step, their points padded with label -1."""
    h, w = emb.original_hw
    # every prototype of every part count in one similarity computation; the first is the whole object
    sims = similarity_maps(emb, np.concatenate(list(ref.prototypes.values())))
    peaks = [np.unravel_index(int(np.argmax(s)), s.shape)[::-1] for s in sims]
    negative = np.unravel_index(int(np.argmin(sims[0])), sims[0].shape)[::-1]
    configs, first = [], 0
    for parts, protos in ref.prototypes.items():
        pos = peaks[first:first + len(protos)]
        first += len(protos)
        configs.append((parts, np.array(pos + [negative], np.float64), [1.0] * len(pos) + [0.0]))
    p = max(len(c[2]) for c in configs)
    points = np.zeros((len(configs), p + 2, 2), np.float32)
    labels = np.full((len(configs), p + 2), -1.0, np.float32)
    for i, (_, pts, lab) in enumerate(configs):
        points[i, :len(lab)] = emb.frame.points_to_model(pts)
        labels[i, :len(lab)] = lab
    # step 1: points; step 2: points + mask; step 3: points + box of that mask + mask
    masks, logits, _ = seg.predict_points(emb, points[:, :p], labels[:, :p])
    masks, logits, _ = seg.predict_points(emb, points[:, :p], labels[:, :p], logits)
    for i, mask in enumerate(masks):
        found = bounding_box(mask)
        if found is not None:
            box = np.array(found).reshape(2, 2)
            points[i, p:] = np.trunc(emb.frame.points_to_model(box))
            labels[i, p:] = [2, 3]
    masks, logits, _ = seg.predict_points(emb, points, labels, logits)
    g = emb.features.shape[2]
    best: tuple | None = None
    for i, (parts, pts, _) in enumerate(configs):
        predicted = cv2.resize(logits[i], (g, g), interpolation=cv2.INTER_LINEAR) > 0
        patches = emb.features[0].transpose(1, 2, 0)[predicted].astype(np.float64)
        score = wasserstein(ref.patches, patches) if len(patches) else np.inf
        if best is None or score < best[0]:
            best = (score, masks[i], {"parts": parts, "distance": score, "points": pts.tolist()})
    assert best is not None  # configs is never empty
    out = np.zeros((h, w), np.uint8)
    out[best[1]] = 1
    return out, best[2]


class OneShot(SlicePrompting):
    """infer --reference: one reference image and mask prompt every target image (2D cases)."""

    name = "one-shot prompting (--reference)"
    dims = ("2D",)

    def __init__(self, image: np.ndarray, mask: np.ndarray, model: str = "litemedsam", max_parts: int = 3):
        self.image, self.mask, self.model, self.max_parts = image, mask, model, max_parts
        self.reference: Reference | None = None

    def prepare(self, seg: Segmenter, path) -> None:
        """Build the reference now (before the first case): UsageError naming ``path`` when it cannot serve."""
        from litemedsam.core.errors import UsageError, shown

        try:
            self.reference = build_reference(seg, seg.encode(self.image), self.mask, self.max_parts)
        except ValueError as e:
            raise UsageError(f"reference {shown(path)}: {e}") from None

    def segment_image(self, seg: Segmenter, image: np.ndarray) -> np.ndarray:
        if self.reference is None:  # built with the run's segmenter, on first use (prepare builds it sooner)
            self.reference = build_reference(seg, seg.encode(self.image), self.mask, self.max_parts)
        return segment_oneshot(seg, self.reference, seg.encode(image))[0]


def load_reference(path, mask_path=None):
    """A reference case: a 2D case of any format and its mask (``mask_path``, else ``gts`` in the same .npz, else
    ``../gts/<name>`` beside it: litemedsam.io.formats.read_labelled_2d). Raises UsageError naming the file."""
    from pathlib import Path

    from litemedsam.core.errors import CaseError, UsageError, shown
    from litemedsam.io.formats import read_labelled_2d

    path = Path(path)
    try:
        image, mask = read_labelled_2d(path, mask_path)
    except CaseError as e:
        raise UsageError(f"reference {shown(path)}: {e}") from None
    if not mask.any():
        raise UsageError(f"reference {shown(path)}: the reference mask is empty")
    return image, mask
