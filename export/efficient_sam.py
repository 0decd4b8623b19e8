"""EfficientSAM (yformer/EfficientSAM) in torch, matching its checkpoint format, and its ONNX export.

    python -m export --model efficientsam-ti --checkpoint efficient_sam_vitt.pt [--out-dir DIR]
    python -m export --model efficientsam-s --checkpoint efficient_sam_vits.pt

Checkpoint layout (upstream ``build_efficient_sam``): ``torch.load(f)["model"]`` is the state dict of a
module with ``image_encoder`` (plain ViT: ``patch_embed.proj``, ``pos_embed`` (1, 197, C) at the
224-pixel pretraining size with a class token, ``blocks.i.{norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2}``, ``neck.{0,1,2,3}`` = 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d),
``prompt_encoder`` (``pe_layer.positional_encoding_gaussian_matrix``, ``invalid_points``,
``point_embeddings``, ``bbox_top_left_embeddings``, ``bbox_bottom_right_embeddings``) and
``mask_decoder`` (``transformer.layers.i.*`` with MLPs as ``layers.j.0`` + ``fc``, ``iou_token``,
``mask_tokens`` (4), ``final_output_upscaling_layers.{0,1}``, ``output_hypernetworks_mlps.i``,
``iou_prediction_head``). ViT-Ti: width 192, 3 heads; ViT-S: width 384, 6 heads; both 12 blocks,
1024-pixel input, 16-pixel patches, GELU everywhere.

The encoder graph takes the image in [0, 1] at its own size and resizes it to 1024 x 1024 (bilinear)
and normalises it (ImageNet mean/std) inside, as upstream ``get_image_embeddings``. The decoder graph
takes points already scaled to the 1024 frame (box = corners labelled 2 and 3; padding label -1) and
returns the best of the three multimask outputs by predicted IoU, at 256 x 256.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from export.checkpoints import read_state
from export.graphs import upconv2x2_channels_last
from export.layers import LayerNorm2d
from export.onnx_export import GraphSpec, check_chain, export_graph
from export.prompt_encoder import RandomPositionEmbedding
from export.two_way import TwoWayBlock, TwoWayTransformer

VARIANTS = {
    "ti": dict(width=192, heads=3, model="efficientsam-ti"),
    "s": dict(width=384, heads=6, model="efficientsam-s"),
}
FULL = dict(img_size=1024, patch=16, depth=12, neck=256, dec_heads=8, dec_mlp=2048, dec_depth=2, iou_hidden=256)


# ----------------------------------------------------------------------------- image encoder


class EsamPatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)


class EsamViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class EsamViTMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class EsamViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EsamViTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = EsamViTMlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EsamImageEncoder(nn.Module):
    PRETRAIN_GRID = 14  # 224 / 16: pos_embed holds a class token and 14 x 14 positions

    def __init__(self, img_size: int, patch: int, width: int, depth: int, heads: int, neck: int):
        super().__init__()
        self.img_size = img_size
        self.grid = img_size // patch
        self.patch_embed = EsamPatchEmbed(patch, width)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.PRETRAIN_GRID ** 2 + 1, width))
        self.blocks = nn.ModuleList(EsamViTBlock(width, heads) for _ in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(width, neck, 1, bias=False),
            LayerNorm2d(neck),
            nn.Conv2d(neck, neck, 3, padding=1, bias=False),
            LayerNorm2d(neck),
        )

    def position(self):
        """(1, g, g, C): the pretraining positions (class token dropped) resized bicubically to the grid."""
        g0, g = self.PRETRAIN_GRID, self.grid
        pos = self.pos_embed[:, 1:].reshape(1, g0, g0, -1)
        if g != g0:
            pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(g, g), mode="bicubic", align_corners=False)
            pos = pos.permute(0, 2, 3, 1)
        return pos

    def forward(self, x):
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1) + self.position()
        b, g, _, c = x.shape
        x = x.reshape(b, g * g, c)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.reshape(b, g, g, c).permute(0, 3, 1, 2))


# ----------------------------------------------------------------------------- prompt encoder


class EsamPromptEncoder(nn.Module):
    def __init__(self, dim: int, grid: int, img_size: int):
        super().__init__()
        self.grid, self.img_size = grid, img_size
        self.pe_layer = RandomPositionEmbedding(dim // 2)
        self.invalid_points = nn.Embedding(1, dim)
        self.point_embeddings = nn.Embedding(1, dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, dim)

    def forward(self, points, labels):
        """points (N, P, 2) in the img_size frame, labels (N, P): -1 padding, 1 point, 2/3 box corners."""
        emb = self.pe_layer.encode((points + 0.5) / self.img_size)
        labels = labels[..., None]
        for value, table in ((-1, self.invalid_points), (1, self.point_embeddings),
                             (2, self.bbox_top_left_embeddings), (3, self.bbox_bottom_right_embeddings)):
            emb = emb + table.weight * (labels == value).to(emb.dtype)
        return emb

    def dense_pe(self):
        return self.pe_layer.grid(self.grid, self.grid)


# ----------------------------------------------------------------------------- mask decoder


class EsamMLPBlock(nn.Module):
    """Upstream's MLP: ``num_layers`` (Linear, GELU) pairs as ``layers.i.0``, then ``fc``."""

    def __init__(self, dim_in: int, hidden: int, dim_out: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [hidden] * num_layers
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.GELU()) for a, b in zip(dims[:-1], dims[1:]))
        self.fc = nn.Linear(hidden, dim_out)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class EsamTwoWayBlock(TwoWayBlock):
    """EfficientSAM's block: SAM's layers with a GELU MLP in upstream's MLPBlock layout; unlike SAM's,
    the self-attention is always residual and, after the first block, the query positions are
    added to the queries themselves."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__(dim, heads, mlp_dim, skip_first_pe)
        self.mlp = EsamMLPBlock(dim, mlp_dim, dim, 1)

    def self_attention(self, queries, query_pe):
        if not self.skip_first_pe:
            queries = queries + query_pe
        return self.norm1(queries + self.self_attn(queries, queries, queries))


class EsamMaskDecoder(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, depth: int, iou_hidden: int = 256, num_multimask: int = 3):
        super().__init__()
        self.num_mask_tokens = num_multimask + 1
        self.transformer = TwoWayTransformer(depth, dim, heads, mlp_dim, block=EsamTwoWayBlock)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        up = [dim // 4, dim // 8]  # upstream: [64, 32] for width 256
        self.final_output_upscaling_layers = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(dim, up[0], 2, 2), nn.GroupNorm(1, up[0]), nn.GELU()),
            nn.Sequential(nn.ConvTranspose2d(up[0], up[1], 2, 2), nn.Identity(), nn.GELU()),
        ])
        self.output_hypernetworks_mlps = nn.ModuleList(EsamMLPBlock(dim, dim, up[1], 2)
                                                       for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = EsamMLPBlock(dim, iou_hidden, self.num_mask_tokens, 2)

    def forward(self, image_embeddings, image_pe, sparse):
        """image_embeddings (1, C, h, w), sparse (N, P, C) -> multimask logits (N, 3, 4h, 4w), IoUs (N, 3)."""
        n = sparse.shape[0]
        _, c, h, w = image_embeddings.shape
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens[None].expand(n, -1, -1), sparse], dim=1)
        hs, src = self.transformer(image_embeddings.expand(n, -1, -1, -1), image_pe.expand(n, -1, -1, -1), tokens)
        x = src.transpose(1, 2).reshape(n, c, h, w)
        for layer in self.final_output_upscaling_layers:
            x = layer(x)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        _, cu, hu, wu = x.shape
        masks = (hyper @ x.reshape(n, cu, hu * wu)).reshape(n, -1, hu, wu)
        iou = self.iou_prediction_head(hs[:, 0])
        return masks[:, 1:], iou[:, 1:]


class EfficientSam(nn.Module):
    """Container with the checkpoint's three top-level keys (pixel mean/std are not in the state dict)."""

    def __init__(self, width: int, heads: int, img_size=1024, patch=16, depth=12, neck=256,
                 dec_heads=8, dec_mlp=2048, dec_depth=2, iou_hidden=256):
        super().__init__()
        self.image_encoder = EsamImageEncoder(img_size, patch, width, depth, heads, neck)
        self.prompt_encoder = EsamPromptEncoder(neck, img_size // patch, img_size)
        self.mask_decoder = EsamMaskDecoder(neck, dec_heads, dec_mlp, dec_depth, iou_hidden)
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)


class EncoderGraph(nn.Module):
    """image (1, 3, H, W) in [0, 1], any H, W -> embeddings: resize to the square input, normalise, encode."""

    def __init__(self, model: EfficientSam):
        super().__init__()
        self.model = model

    def forward(self, image):
        s = self.model.image_encoder.img_size
        x = F.interpolate(image, size=(s, s), mode="bilinear", align_corners=False)
        return self.model.image_encoder((x - self.model.pixel_mean) / self.model.pixel_std)


class DecoderGraph(nn.Module):
    """embeddings, points (N, P, 2), labels (N, P) -> best-of-three logits (N, 1, 4h, 4w) and its IoU (N, 1)."""

    def __init__(self, model: EfficientSam):
        super().__init__()
        self.model = model

    def forward(self, image_embeddings, points, point_labels):
        pe = self.model.prompt_encoder
        masks, iou = self.model.mask_decoder(image_embeddings, pe.dense_pe(), pe(points, point_labels))
        best = iou.argmax(dim=1, keepdim=True)
        mask = torch.gather(masks, 1, best[:, :, None, None].expand(-1, -1, masks.shape[2], masks.shape[3]))
        return mask, torch.gather(iou, 1, best)


class FastDecoderGraph(DecoderGraph):
    """DecoderGraph's function arranged for speed on the CPU (the exported one; checked against
    DecoderGraph): the image tokens enter the transformer once for all prompts (they are the same
    for every prompt until the first image-to-token attention), later attentions are factored
    through the prompt tokens (TwoWayTransformer.fast), and the upscaling runs
    channels-last with its transposed convolutions as matrix products. Only the three multimask
    outputs are upscaled-and-projected, and the best one is chosen before the projection."""

    def forward(self, image_embeddings, points, point_labels):
        pe, md = self.model.prompt_encoder, self.model.mask_decoder
        sparse = pe(points, point_labels)
        n = sparse.shape[0]
        _, c, h, w = image_embeddings.shape
        tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens[None].expand(n, -1, -1), sparse], dim=1)
        hs, keys = md.transformer.fast(image_embeddings, pe.dense_pe(), tokens, outputs=1 + md.num_mask_tokens)
        iou = md.iou_prediction_head(hs[:, 0])[:, 1:]
        best = iou.argmax(dim=1, keepdim=True)  # (N, 1) among the multimask outputs 1..3
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1)[:, 1:]
        hyper = torch.gather(hyper, 1, best[:, :, None].expand(-1, -1, hyper.shape[2]))  # (N, 1, C/8)
        (up0, norm, _), (up1, _, _) = md.final_output_upscaling_layers
        x = upconv2x2_channels_last(keys.reshape(n, h, w, c), up0)  # (N, 2h, 2w, C/4)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
        x = F.gelu((x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias)
        x = F.gelu(upconv2x2_channels_last(x, up1))  # (N, 4h, 4w, C/8)
        masks = (x.reshape(n, 16 * h * w, -1) @ hyper.transpose(1, 2)).reshape(n, 1, 4 * h, 4 * w)
        return masks, torch.gather(iou, 1, best)


# ----------------------------------------------------------------------------- loading and export


def build(variant: str, **small) -> EfficientSam:
    """The upstream architecture of a variant ('ti' or 's'); ``small`` overrides sizes (tests only)."""
    v = VARIANTS[variant]
    return EfficientSam(v["width"], v["heads"], **{**FULL, **small})


def load_model(checkpoint: Path, variant: str, **small) -> EfficientSam:
    model = build(variant, **small)
    model.load_state_dict(read_state(checkpoint), strict=True)
    return model.eval()


def test_points(n: int, size: int, seed: int, with_point: bool) -> tuple:
    rng = np.random.default_rng(seed)
    pts = np.full((n, 6, 2), -1.0, dtype=np.float32)
    labels = np.full((n, 6), -1.0, dtype=np.float32)
    for i in range(n):
        x0, y0 = rng.uniform(0, size * 0.6, 2)
        x1, y1 = x0 + rng.uniform(size * 0.1, size * 0.4), y0 + rng.uniform(size * 0.1, size * 0.4)
        corners = [[x0, y0], [x1, y1]]
        lab = [2, 3]
        if with_point:
            corners = [[(x0 + x1) / 2, (y0 + y1) / 2]] + corners
            lab = [1] + lab
        pts[i, :len(lab)] = corners
        labels[i, :len(lab)] = lab
    return torch.from_numpy(pts), torch.from_numpy(labels)


def export(model: EfficientSam, encoder_path: Path, decoder_path: Path) -> dict:
    """Export both graphs, check each against torch, then the chain image -> best mask."""
    torch.manual_seed(0)
    model.eval()
    s = model.image_encoder.img_size
    enc, dec = EncoderGraph(model), DecoderGraph(model)
    fast = FastDecoderGraph(model)
    image = torch.rand(1, 3, 300, 220)
    with torch.no_grad():
        emb = enc(image)
    graphs = [
        GraphSpec(
            name="encoder", module=enc,
            dummy=(torch.rand(1, 3, 240, 320),), test=(image,),
            input_names=["image"], output_names=["image_embeddings"],
            dynamic_axes={"image": {2: "height", 3: "width"}},
        ),
        GraphSpec(
            name="decoder", module=fast, reference=dec,
            dummy=(torch.randn_like(emb), *test_points(2, s, 1, False)),
            test=(emb, *test_points(5, s, 2, True)),
            input_names=["image_embeddings", "points", "point_labels"],
            output_names=["low_res_logits", "iou_predictions"],
            dynamic_axes={"points": {0: "num_prompts", 1: "num_points"},
                          "point_labels": {0: "num_prompts", 1: "num_points"},
                          "low_res_logits": {0: "num_prompts"}, "iou_predictions": {0: "num_prompts"}},
            mask_outputs=("low_res_logits",),
        ),
    ]
    reports = [export_graph(g, p) for g, p in zip(graphs, (encoder_path, decoder_path))]
    chain = check_chain(lambda image, points, labels: dec(enc(image), points, labels), encoder_path, decoder_path,
                        torch.rand(1, 3, 180, 260), dict(zip(("points", "point_labels"), test_points(3, s, 3, False))))
    return {"graphs": reports, "chain": chain}


def export_model(spec, checkpoint: Path, out_dir: Path | None = None) -> dict:
    """Export an EfficientSAM entry of the registry from upstream's checkpoint, checked, with its manifest."""
    from litemedsam.models.registry import sha256_of, work_dir, write_manifest

    variant = next(v for v, info in VARIANTS.items() if info["model"] == spec.name)
    out_dir = out_dir or work_dir()
    report = export(load_model(checkpoint, variant), out_dir / spec.encoder.file, out_dir / spec.decoder.file)
    write_manifest(spec, out_dir, checkpoint=str(checkpoint), checkpoint_sha256=sha256_of(checkpoint), export=report)
    return report
