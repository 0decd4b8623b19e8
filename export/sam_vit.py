"""SAM's ViT image encoder (segment-anything ``ImageEncoderViT``) with its checkpoint's key names, so that
SAM ViT-B checkpoints, and SAMed checkpoints with their LoRA merged in (``export/lora.py``), export to
ONNX: encoder + box decoder + general prompt decoder (``sam-vit-b``), or encoder + SAMed's prompt-free
semantic decoder (``samed``), each graph checked against torch.

    python -m export --model sam-vit-b --checkpoint sam_vit_b_01ec64.pth
    python -m export --model samed --checkpoint sam_vit_b_01ec64.pth --lora samed_lora.pth [--img-size 512]

Layout (``image_encoder.``): ``patch_embed.proj`` (16x16 conv), ``pos_embed`` (1, S/16, S/16, C),
``blocks.i.{norm1, attn.qkv, attn.proj, attn.rel_pos_h, attn.rel_pos_w, norm2, mlp.lin1, mlp.lin2}``
(windowed attention of 14 except the global blocks 2, 5, 8, 11; decomposed relative positions of
length 2*14-1, or 2*S/16-1 for global blocks), ``neck.{0,1,2,3}``; ViT-B: width 768, 12 blocks,
12 heads. ``prompt_encoder.*`` and ``mask_decoder.*`` are SAM's (export/prompt_encoder.py, export/mask_decoder.py) at S.
As SAMed's ``load_from``, a checkpoint made for another input size (SAM's 1024 for SAMed's 512) gets
its ``pos_embed`` resized bilinearly and its global blocks' relative-position tables linearly.
SAMed (hitachinsk/SAMed ``segment_anything/build_sam.py``, ``mask_decoder.py``): K classes make K + 1
mask tokens; with no prompt (no sparse embedding, ``no_mask_embed`` as dense) every token's mask is
returned, channel 0 the background, and the label map is their argmax.
The encoder graph takes the image already resized, normalised and padded (``litemedsam.models.segmenter``
does it: SAM's mean and std for ``sam-vit-b``; SAMed's [0, 1] with mean 0 and std 1).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from export.checkpoints import read_state
from export.layers import LayerNorm2d, MLPBlock
from export.mask_decoder import MaskDecoder
from export.prompt_encoder import PromptEncoder

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
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, d)
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
        self.blocks = nn.ModuleList(Block(width, heads, 0 if i in global_blocks else window, grid)
                                    for i in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(width, out, 1, bias=False), LayerNorm2d(out),
                                  nn.Conv2d(out, out, 3, padding=1, bias=False), LayerNorm2d(out))

    def forward(self, x, taps: tuple = ()):
        """Image -> embedding; with ``taps`` (block indices) also those blocks' outputs as (B, C, h, w)."""
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1) + self.pos_embed
        tapped = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in taps:
                tapped.append(x.permute(0, 3, 1, 2))
        out = self.neck(x.permute(0, 3, 1, 2))
        return (out, tapped) if taps else out


class SamModel(nn.Module):
    """SAM's three top-level parts (the container the decoder graphs of export/graphs.py expect)."""

    def __init__(self, num_multimask: int = 3, **vit):
        super().__init__()
        cfg = {**VIT_B, **vit}
        grid = cfg["img_size"] // 16
        self.image_encoder = ImageEncoderViT(**cfg)
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (cfg["img_size"], cfg["img_size"]))
        self.mask_decoder = MaskDecoder(256, num_multimask)


def fit_to_size(state: dict, model: nn.Module) -> dict:
    """SAMed's rule for a checkpoint of another input size: ``pos_embed`` bilinear, relative-position
    tables linear along their length (align_corners=False), to the shapes of ``model``."""
    target = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        want = target.get(key)
        if want is None or want.shape == value.shape:
            continue
        if key.endswith("pos_embed") and value.ndim == 4:
            out[key] = F.interpolate(value.permute(0, 3, 1, 2), size=tuple(want.shape[1:3]), mode="bilinear",
                                     align_corners=False).permute(0, 2, 3, 1)
        elif "rel_pos" in key and value.ndim == 2:
            out[key] = F.interpolate(value[None, None], size=tuple(want.shape), mode="bilinear",
                                     align_corners=False)[0, 0]
    return out


def vit_config(state: dict) -> dict:
    """The encoder's shape read off a checkpoint: width, depth, heads, window and global blocks
    (global blocks' relative-position tables span the whole grid, 2 * S/16 - 1)."""
    grid, width = state["image_encoder.pos_embed"].shape[1], state["image_encoder.pos_embed"].shape[-1]
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    tables = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in range(depth)]
    global_blocks = tuple(i for i, t in enumerate(tables) if t.shape[0] == 2 * grid - 1)
    windowed = [t.shape[0] for i, t in enumerate(tables) if i not in global_blocks]
    return dict(img_size=16 * grid, width=width, depth=depth, heads=width // tables[0].shape[1],
                window=(min(windowed) + 1) // 2 if windowed else 0, global_blocks=global_blocks)


def load_model(checkpoint, **vit) -> SamModel:
    """A SAM (or SAMed, merged) checkpoint (path or state dict) -> SamModel with the checkpoint's shape
    (``vit`` overrides, e.g. ``img_size``); K + 1 mask tokens as the file has."""
    state = read_state(checkpoint)
    mask_tokens = state["mask_decoder.mask_tokens.weight"].shape[0]
    model = SamModel(num_multimask=mask_tokens - 1, **{**vit_config(state), **vit})
    model.load_state_dict(fit_to_size(state, model), strict=True)
    return model.eval()


class SemanticDecoder(nn.Module):
    """SAMed's prompt-free decoder: image embedding -> low-res logits of background + K classes (1, K+1, 4g, 4g)."""

    def __init__(self, model: SamModel):
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder

    def forward(self, image_embeddings):
        pe = self.prompt_encoder
        masks, _ = self.mask_decoder.all_masks(image_embeddings, pe.dense_pe(), None, pe.no_mask_dense())
        return masks


def export(model: SamModel, out_dir: Path, prefix: str = "sam_vit_b", semantic: bool = False) -> dict:
    """Encoder + box decoder + prompt decoder, or (``semantic``) encoder + SAMed's semantic decoder."""
    from export.onnx_export import GraphSpec, export_graph
    from export.graphs import BoxDecoder, FastBoxDecoder, PromptDecoder

    torch.manual_seed(0)
    s = model.prompt_encoder.input_size[0]
    g = model.prompt_encoder.embedding_size[0]
    with torch.no_grad():
        emb = model.image_encoder(torch.randn(1, 3, s, s))
    boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7], [0.3, 0.1, 0.9, 0.5]]) * s
    pts = torch.tensor([[[0.3, 0.4], [0.1, 0.2], [0.6, 0.7]]]) * s
    graphs = [GraphSpec("encoder", model.image_encoder, (torch.randn(1, 3, s, s),), (torch.randn(1, 3, s, s),),
                        ["image"], ["image_embeddings"])]
    if semantic:
        graphs.append(GraphSpec("semantic_decoder", SemanticDecoder(model), (torch.randn(1, 256, g, g),), (emb,),
                                ["image_embeddings"], ["low_res_logits"], mask_outputs=("low_res_logits",)))
    else:
        graphs += [
            GraphSpec("decoder", FastBoxDecoder(model), (torch.randn(1, 256, g, g), boxes[:1]), (emb, boxes),
                      ["image_embeddings", "boxes"], ["low_res_logits", "iou_predictions"],
                      {"boxes": {0: "n"}, "low_res_logits": {0: "n"}, "iou_predictions": {0: "n"}},
                      reference=BoxDecoder(model), mask_outputs=("low_res_logits",)),
            GraphSpec("prompt_decoder", PromptDecoder(model),
                      (torch.randn(1, 256, g, g), pts[:, :2], torch.tensor([[2.0, 3.0]]),
                       torch.zeros(1, 1, 4 * g, 4 * g), torch.zeros(1)),
                      (emb, pts, torch.tensor([[1.0, 2.0, 3.0]]), torch.zeros(1, 1, 4 * g, 4 * g), torch.zeros(1)),
                      ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
                      ["low_res_logits", "iou_predictions"],
                      {"point_coords": {0: "n", 1: "p"}, "point_labels": {0: "n", 1: "p"}, "mask_input": {0: "n"},
                       "has_mask_input": {0: "n"}, "low_res_logits": {0: "n"}, "iou_predictions": {0: "n"}},
                      mask_outputs=("low_res_logits",)),
        ]
    return {"graphs": [export_graph(spec, out_dir / f"{prefix}_{spec.name}.onnx") for spec in graphs]}


def export_model(spec, checkpoint, out_dir: Path | None = None, lora: Path | None = None,
                 img_size: int | None = None) -> dict:
    """Export ``sam-vit-b`` (encoder, box and prompt decoders) or ``samed`` (encoder and semantic decoder) from a
    SAM ViT checkpoint, with a SAMed LoRA file merged in first when given; checked, with its manifest."""
    from export.lora import merge
    from litemedsam.models.registry import work_dir, write_manifest

    state = read_state(checkpoint)
    if lora is not None:
        state = merge(state, read_state(lora), "sam")
    size = img_size or spec.input_size
    out_dir = out_dir or work_dir()
    report = export(load_model(state, img_size=size), out_dir, spec.encoder.file.rsplit("_encoder", 1)[0],
                    semantic=not spec.takes_boxes)
    write_manifest(spec, out_dir, checkpoint=str(checkpoint), lora=str(lora) if lora else None, img_size=size)
    return report
