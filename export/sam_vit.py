"""SAM's ViT image encoder (segment-anything ``ImageEncoderViT``) with its checkpoint's key names, so that
SAM ViT-B checkpoints, and SAMed checkpoints once their LoRA is merged (``export/lora.py``), export
to ONNX like LiteMedSAM: encoder, box decoder and general prompt decoder, each checked against torch.

    python -m export.sam_vit --checkpoint sam_vit_b_01ec64.pth --out-dir DIR

Layout (``image_encoder.``): ``patch_embed.proj`` (16x16 conv), ``pos_embed`` (1, S/16, S/16, C),
``blocks.i.{norm1, attn.qkv, attn.proj, attn.rel_pos_h, attn.rel_pos_w, norm2, mlp.lin1, mlp.lin2}``
(windowed attention of 14 except the global blocks 2, 5, 8, 11; decomposed relative positions of
length 2*14-1, or 2*S/16-1 for global blocks), ``neck.{0,1,2,3}``; ViT-B: width 768, 12 blocks,
12 heads. ``prompt_encoder.*`` and ``mask_decoder.*`` are SAM's (export/sam_modules.py) at 1024.
The encoder graph takes the image already resized (longest side S), normalised with SAM's pixel
mean and std and zero-padded to S x S, as segment-anything's ``Sam.preprocess`` gives it.
Not yet wired into ``litemedsam infer`` (no SAM weights can be had here).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from export.sam_modules import LayerNorm2d, MaskDecoder, MLPBlock, PromptEncoder

VIT_B = dict(img_size=1024, width=768, depth=12, heads=12, window=14, global_blocks=(2, 5, 8, 11))


def rel_pos_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """(size, size, C) relative-position embeddings for q/k positions 0..size-1 (table resized if needed)."""
    length = 2 * size - 1
    if table.shape[0] != length:
        table = F.interpolate(table.T[None], size=length, mode="linear")[0].T
    idx = torch.arange(size)[:, None] - torch.arange(size)[None, :] + size - 1
    return table[idx]


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int, size: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, dim // heads))

    def forward(self, x):
        b, h, w, c = x.shape
        d = c // self.heads
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4).reshape(3, b * self.heads, h * w, d)
        attn = (q * d ** -0.5) @ k.transpose(-2, -1)
        rq = q.reshape(b * self.heads, h, w, d)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rel_pos_table(h, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rel_pos_table(w, self.rel_pos_w))
        attn = (attn.view(-1, h, w, h, w) + rel_h[..., :, None] + rel_w[..., None, :]).view(-1, h * w, h * w)
        out = (attn.softmax(dim=-1) @ v).view(b, self.heads, h, w, d).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int):
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ViTAttention(dim, heads, window or grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, 4 * dim, act=F.gelu)

    def forward(self, x):
        y = self.norm1(x)
        if self.window:
            b, h, w, c = y.shape
            ws = self.window
            ph, pw = (ws - h % ws) % ws, (ws - w % ws) % ws
            y = F.pad(y, (0, 0, 0, pw, 0, ph))
            hp, wp = h + ph, w + pw
            y = y.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, c)
            y = self.attn(y)
            y = y.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)[:, :h, :w]
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    def __init__(self, img_size=1024, width=768, depth=12, heads=12, window=14, global_blocks=(2, 5, 8, 11), out=256):
        super().__init__()
        grid = img_size // 16
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, 16, 16)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, width))
        self.blocks = nn.ModuleList(Block(width, heads, 0 if i in global_blocks else window, grid) for i in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(width, out, 1, bias=False), LayerNorm2d(out),
                                  nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, x):
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


class SamModel(nn.Module):
    """SAM's three top-level parts (the container the LiteMedSAM decoders in sam_modules expect)."""

    def __init__(self, num_multimask: int = 3, **vit):
        super().__init__()
        cfg = {**VIT_B, **vit}
        grid = cfg["img_size"] // 16
        self.image_encoder = ImageEncoderViT(**cfg)
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (cfg["img_size"], cfg["img_size"]))
        self.mask_decoder = MaskDecoder(256, num_multimask)


def load_model(checkpoint: Path, **vit) -> SamModel:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    mask_tokens = state["mask_decoder.mask_tokens.weight"].shape[0]
    model = SamModel(num_multimask=mask_tokens - 1, **vit)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(model: SamModel, out_dir: Path, prefix: str = "sam_vit_b") -> dict:
    from export.onnx_export import GraphSpec, export_graph
    from export.sam_modules import BoxDecoder, FastBoxDecoder, PromptDecoder

    torch.manual_seed(0)
    s = model.prompt_encoder.input_size[0]
    g = model.prompt_encoder.embedding_size[0]
    with torch.no_grad():
        emb = model.image_encoder(torch.randn(1, 3, s, s))
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.3, 0.1, 0.9, 0.5]]) * s
    pts = torch.tensor([[[0.3, 0.4], [0.1, 0.2], [0.6, 0.7]]]) * s
    graphs = [
        GraphSpec("encoder", model.image_encoder, (torch.randn(1, 3, s, s),), (torch.randn(1, 3, s, s),),
                  ["image"], ["image_embeddings"]),
        GraphSpec("decoder", FastBoxDecoder(model), (torch.randn(1, 256, g, g), boxes[:1]), (emb, boxes),
                  ["image_embeddings", "boxes"], ["low_res_logits", "iou_predictions"],
                  {"boxes": {0: "n"}, "low_res_logits": {0: "n"}, "iou_predictions": {0: "n"}},
                  reference=BoxDecoder(model), mask_outputs=("low_res_logits",)),
        GraphSpec("prompt_decoder", PromptDecoder(model),
                  (torch.randn(1, 256, g, g), pts[:, :2], torch.tensor([[2.0, 3.0]]), torch.zeros(1, 1, 4 * g, 4 * g), torch.zeros(1)),
                  (emb, pts, torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 1, 4 * g, 4 * g), torch.zeros(1)),
                  ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
                  ["low_res_logits", "iou_predictions"],
                  {"point_coords": {0: "n", 1: "p"}, "point_labels": {0: "n", 1: "p"}, "mask_input": {0: "n"},
                   "has_mask_input": {0: "n"}, "low_res_logits": {0: "n"}, "iou_predictions": {0: "n"}},
                  mask_outputs=("low_res_logits",)),
    ]
    return {"graphs": [export_graph(spec, out_dir / f"{prefix}_{spec.name}.onnx") for spec in graphs]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="SAM ViT-B, or a SAMed checkpoint merged by export/lora.py")
    parser.add_argument("--img-size", type=int, default=1024, help="SAMed uses 512")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    report = export(load_model(args.checkpoint, img_size=args.img_size), args.out_dir)
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
