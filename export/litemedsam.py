"""Export LiteMedSAM (the real lite_medsam.pth) to an encoder and a box decoder ONNX graph.

    python -m export --model litemedsam [--checkpoint PATH] [--out-dir DIR]
    python -m export --model litemedsam-ft --checkpoint FINE_TUNED.pth   # the router's slot

A fine-tuned checkpoint is accepted in lite_medsam.pth's layout (``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*``; optionally wrapped in ``{"model": ...}`` as training
scripts save it, keys optionally prefixed ``module.``). When it holds only ``image_encoder.*`` (an
encoder-only fine-tune), the prompt encoder and mask decoder come from the verified lite_medsam.pth.

Both graphs are checked right after export (ONNX checker, then ONNX Runtime against torch on
inputs unlike the export dummies), and so is the chained pipeline image -> masks. The decoder is
exported in a faster arrangement (FastBoxDecoder) and checked against the reference one. Prints a JSON
report with the errors and each file's sha256.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torch import nn

from export.checkpoints import read_state
from export.graphs import BoxDecoder, FastBoxDecoder, PromptDecoder
from export.mask_decoder import MaskDecoder
from export.onnx_export import GraphSpec, check_chain, export_graph
from export.prompt_encoder import PromptEncoder
from export.tiny_vit import TinyViT
from litemedsam.models.registry import CHECKPOINTS, sha256_of, verified_path, work_dir, write_manifest


class LiteMedSAM(nn.Module):
    """Container with the checkpoint's three top-level keys."""

    def __init__(self):
        super().__init__()
        self.image_encoder = TinyViT()
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()


def load_model(checkpoint: Path, base: Path | None = None) -> LiteMedSAM:
    """LiteMedSAM with all of ``checkpoint``'s weights (strict); parts it lacks come from ``base``."""
    model = LiteMedSAM()
    state = read_state(checkpoint)
    parts = {k.split(".", 1)[0] for k in state}
    if parts == {"image_encoder"} and base is not None:
        state = {**{k: v for k, v in read_state(base).items() if not k.startswith("image_encoder.")}, **state}
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_image(seed: int, size: int = 256) -> torch.Tensor:
    """A structured [0, 1] image (ellipses on a smooth background with noise), zero-padded like real input."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.3 + 0.2 * np.sin(6 * xx + rng.uniform(0, 3)) * np.cos(4 * yy)
    for _ in range(4):
        cx, cy, rx, ry = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
        img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1] = rng.uniform(0.6, 1.0)
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    img[int(size * 0.8):] = 0  # padding rows, as for a non-square image
    return torch.from_numpy(np.repeat(img[None, None], 3, axis=1).astype(np.float32))


def export_model(spec, checkpoint: Path | None = None, out_dir: Path | None = None) -> dict:
    """Export a LiteMedSAM-family model (``litemedsam``: the verified lite_medsam.pth by default;
    ``litemedsam-ft``: ``checkpoint``, a fine-tuned LiteMedSAM) into ``out_dir`` (default work_dir/), checked."""
    out_dir = out_dir or work_dir()
    if checkpoint is None and not spec.pinned:
        raise ValueError(f"{spec.name} needs a checkpoint ({spec.source})")
    base_path = work_dir() / CHECKPOINTS["lite_medsam.pth"].file
    checkpoint = checkpoint or verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch")

    torch.manual_seed(0)
    model = load_model(checkpoint, base_path if base_path.is_file() else None)
    decoder = BoxDecoder(model)
    with torch.no_grad():
        test_emb = model.image_encoder(test_image(1))
    graphs = [
        GraphSpec(
            name="encoder",
            module=model.image_encoder,
            dummy=(torch.rand(1, 3, 256, 256),),
            test=(torch.cat([test_image(2), test_image(3)]),),
            input_names=["image"],
            output_names=["image_embeddings"],
            dynamic_axes={"image": {0: "batch"}, "image_embeddings": {0: "batch"}},
        ),
        GraphSpec(
            name="decoder",
            module=FastBoxDecoder(model),
            reference=decoder,
            dummy=(torch.randn(1, 256, 64, 64), torch.tensor([[10.0, 20.0, 120.0, 90.0], [0.0, 0.0, 255.0, 255.0]])),
            test=(test_emb, torch.tensor([[30.0, 40.0, 150.0, 160.0], [5.0, 5.0, 60.0, 200.0],
                                          [100.0, 10.0, 250.0, 190.0], [0.0, 0.0, 256.0, 256.0],
                                          [77.0, 77.0, 78.0, 79.0]])),
            input_names=["image_embeddings", "boxes"],
            output_names=["low_res_logits", "iou_predictions"],
            dynamic_axes={"boxes": {0: "num_boxes"}, "low_res_logits": {0: "num_boxes"},
                          "iou_predictions": {0: "num_boxes"}},
            mask_outputs=("low_res_logits",),
        ),
    ]
    # the general prompt decoder: two prompts of 3 points, the second with a mask input
    pts = torch.tensor([[[60.0, 70.0], [30.0, 40.0], [150.0, 160.0]], [[100.0, 50.0], [0.0, 0.0], [0.0, 0.0]]])
    lab = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, -1.0]])
    with torch.no_grad():
        prev, _ = decoder(test_emb, torch.tensor([[30.0, 40.0, 150.0, 160.0]]))
    graphs.append(GraphSpec(
        name="prompt_decoder",
        module=PromptDecoder(model),
        dummy=(torch.randn(1, 256, 64, 64), torch.rand(1, 2, 2) * 255, torch.tensor([[2.0, 3.0]]),
               torch.zeros(1, 1, 256, 256), torch.zeros(1)),
        test=(test_emb, pts, lab, torch.cat([torch.zeros(1, 1, 256, 256), prev]), torch.tensor([0.0, 1.0])),
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
        output_names=["low_res_logits", "iou_predictions"],
        dynamic_axes={"point_coords": {0: "num_prompts", 1: "num_points"},
                      "point_labels": {0: "num_prompts", 1: "num_points"}, "mask_input": {0: "num_prompts"},
                      "has_mask_input": {0: "num_prompts"},
                      "low_res_logits": {0: "num_prompts"}, "iou_predictions": {0: "num_prompts"}},
        mask_outputs=("low_res_logits",),
    ))
    paths = {"encoder": out_dir / spec.encoder.file, "decoder": out_dir / spec.decoder.file,
             "prompt_decoder": out_dir / spec.prompt_decoder.file}
    reports = [export_graph(g, paths[g.name]) for g in graphs]
    chain = check_chain(lambda image, boxes: decoder(model.image_encoder(image), boxes), paths["encoder"],
                        paths["decoder"], test_image(4), {"boxes": torch.tensor([[20.0, 30.0, 200.0, 180.0],
                                                                                 [60.0, 60.0, 140.0, 150.0]])})
    report = {
        "checkpoint": str(checkpoint),
        "graphs": reports,
        "chain": chain,
        "sha256": {p.name: sha256_of(p) for p in paths.values()},
        "torch": torch.__version__,
    }
    if not spec.pinned:
        write_manifest(spec, out_dir, checkpoint=str(checkpoint), checkpoint_sha256=sha256_of(checkpoint),
                       export=report)
    return report
