"""Torch modules for LiteMedSAM: TinyViT image encoder, SAM prompt encoder and mask decoder.

Written for export only. Module and parameter names follow the checkpoint layout of
``lite_medsam.pth`` (bowang-lab/MedSAM, branch LiteMedSAM) so that the checkpoint loads
strictly; the prompt encoder and mask decoder follow segment-anything's key names.
"""
from __future__ import annotations

import itertools
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- common


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by batch norm (keys ``c`` and ``bn``)."""

    def __init__(self, cin, cout, kernel=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))


# ----------------------------------------------------------------------------- TinyViT


class MBConv(nn.Module):
    def __init__(self, dim: int, expand: float):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x):
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        y = self.conv3(y)
        return F.gelu(x + y)


class PatchMerging(nn.Module):
    """Pointwise conv, depthwise 3x3 conv (stride 2 except into the 320-wide stage), pointwise conv."""

    def __init__(self, resolution, dim: int, out_dim: int):
        super().__init__()
        self.resolution = resolution
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x):
        if x.dim() == 3:  # tokens (B, L, C) -> (B, C, H, W)
            h, w = self.resolution
            x = x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class WindowAttention(nn.Module):
    """Multi-head attention inside a window with a learned bias per (|dy|, |dx|) offset."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window), range(window)))
        offsets: dict = {}
        index = []
        for p in points:
            for q in points:
                key = (abs(p[0] - q[0]), abs(p[1] - q[1]))
                index.append(offsets.setdefault(key, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer(
            "bias_index", torch.tensor(index).view(len(points), len(points)), persistent=False
        )

    def forward(self, x):
        b, n, _ = x.shape
        x = self.norm(x)
        # per head the qkv projection is laid out as [q | k | v]
        qkv = self.qkv(x).view(b, n, self.num_heads, 3 * self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn + self.attention_biases[:, self.bias_index]
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


class TokenMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution, num_heads: int, window: int, mlp_ratio: float):
        super().__init__()
        self.resolution = resolution
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x):
        h, w = self.resolution
        b, n, c = x.shape
        ws = self.window
        if h == ws and w == ws:
            y = self.attn(x)
        else:
            y = x.view(b, h, w, c)
            pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pad_b or pad_r:  # zero tokens take part in attention, as upstream
                y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            y = y.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            y = self.attn(y)
            y = y.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            y = y[:, :h, :w].reshape(b, n, c)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class Stage(nn.Module):
    """One TinyViT stage: ``blocks`` then an optional ``downsample``."""

    def __init__(self, blocks, downsample=None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT as configured for LiteMedSAM: 256x256 input, 256x64x64 embedding."""

    def __init__(
        self,
        img_size=256,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio=4.0,
        mbconv_expand=4.0,
        out_chans=256,
    ):
        super().__init__()
        d0 = embed_dims[0]
        self.patch_embed = nn.Module()
        self.patch_embed.seq = nn.Sequential(ConvBN(3, d0 // 2), nn.GELU(), ConvBN(d0 // 2, d0))
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            side = img_size // (2 ** (i - 1 if i == 3 else i))
            res = (side, side)
            last = i == len(embed_dims) - 1
            down = None if last else PatchMerging(res, dim, embed_dims[i + 1])
            if i == 0:
                blocks = [MBConv(dim, mbconv_expand) for _ in range(depths[i])]
            else:
                blocks = [
                    TinyViTBlock(dim, res, num_heads[i], window_sizes[i], mlp_ratio)
                    for _ in range(depths[i])
                ]
            self.layers.append(Stage(blocks, down))
        self.out_side = img_size // 4
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x):
        x = self.patch_embed.seq(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.out_side, self.out_side, c).permute(0, 3, 1, 2)
        return self.neck(x)


# ----------------------------------------------------------------------------- SAM prompt encoder


class RandomPositionEmbedding(nn.Module):
    def __init__(self, num_feats: int = 128):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords):
        """coords in [0, 1], (..., 2) as (x, y) -> (..., 2 * num_feats)."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, h: int, w: int):
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return self.encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)[None]


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim=256, embedding_size=(64, 64), input_size=(256, 256), mask_chans=16):
        super().__init__()
        self.embedding_size = embedding_size
        self.input_size = input_size
        self.pe_layer = RandomPositionEmbedding(embed_dim // 2)
        # 0/1: negative/positive point, 2/3: box top-left/bottom-right corner
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_chans // 4, 2, 2),
            LayerNorm2d(mask_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_chans // 4, mask_chans, 2, 2),
            LayerNorm2d(mask_chans),
            nn.GELU(),
            nn.Conv2d(mask_chans, embed_dim, 1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self):
        return self.pe_layer.grid(*self.embedding_size)

    def embed_boxes(self, boxes):
        """boxes (N, 4) as x0, y0, x1, y1 in input-image pixels -> sparse embeddings (N, 2, C)."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        h, w = self.input_size
        emb = self.pe_layer.encode(torch.stack([corners[..., 0] / w, corners[..., 1] / h], dim=-1))
        corner_ids = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return emb + corner_ids[None]

    def no_mask_dense(self):
        h, w = self.embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)

    def embed_points(self, points, labels):
        """points (N, P, 2) in input-image pixels, labels (N, P): -1 padding, 0 negative, 1 positive,
        2/3 box corners -> sparse embeddings (N, P, C) (SAM's rule: padding gets no position)."""
        h, w = self.input_size
        points = points + 0.5
        emb = self.pe_layer.encode(torch.stack([points[..., 0] / w, points[..., 1] / h], dim=-1))
        labels = labels[..., None]
        emb = emb * (labels != -1).to(emb.dtype) + self.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i, table in enumerate(self.point_embeddings):
            emb = emb + table.weight * (labels == i).to(emb.dtype)
        return emb

    def embed_masks(self, masks, has_mask):
        """masks (N, 1, 4h, 4w) low-res logits, has_mask (N,) 0/1 -> dense embeddings (N, C, h, w)."""
        has = has_mask.reshape(-1, 1, 1, 1)
        return has * self.mask_downscaling(masks) + (1 - has) * self.no_mask_embed.weight.reshape(1, -1, 1, 1)


# ----------------------------------------------------------------------------- SAM mask decoder


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, downsample: int = 1):
        super().__init__()
        inner = dim // downsample
        self.num_heads = num_heads
        self.scale = (inner // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q, k, v):
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        out = attn.softmax(dim=-1) @ v
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))

    # The same function, factored through the few prompt tokens (T ~ 7) where the other side is the
    # image (M = 4096 tokens) and differs per prompt: per image token, T x C work per head-side product
    # instead of the C x C/2 of a projection (about 2.3 times fewer operations in SAM's decoder).

    def _head_weights(self, linear):
        """A projection's weight as (heads, d, C)."""
        return linear.weight.reshape(self.num_heads, -1, linear.in_features)

    def few_queries(self, q, k, v):
        """forward() for a few query tokens q (N, T, C) over many keys and values k, v (N, M, C): the key
        and value projections are folded into the queries' side. The key bias adds the same number to a
        query's logits (the softmax ignores it); the softmax rows sum to 1, so the value bias passes through."""
        n, t, _ = q.shape
        h = self.num_heads
        qk = (self._heads(self.q_proj(q)) @ self._head_weights(self.k_proj)) * self.scale  # (N, H, T, C)
        p = (qk.reshape(n, h * t, -1) @ k.transpose(1, 2)).softmax(dim=-1)  # (N, H*T, M)
        pv = (p @ v).reshape(n, h, t, -1)  # (N, H, T, C)
        out = pv @ self._head_weights(self.v_proj).transpose(1, 2) + self.v_proj.bias.reshape(h, 1, -1)
        return self.out_proj(out.transpose(1, 2).reshape(n, t, -1))

    def few_keys(self, q, k, v, shared_queries: bool = False):
        """forward() for many queries q (N or 1, M, C) over a few key and value tokens k, v (N, T, C): the
        output projection is folded into the values and, unless ``shared_queries`` (q is one image for
        all N prompts, projected once as in forward()), the query projection into the keys."""
        n, t, _ = k.shape
        h = self.num_heads
        kh = self._heads(self.k_proj(k))  # (N, H, T, d)
        if shared_queries:
            logits = (self._heads(self.q_proj(q)) @ kh.transpose(-2, -1)) * self.scale  # (N, H, M, T)
            p = logits.softmax(dim=-1).permute(0, 2, 1, 3)  # (N, M, H, T)
        else:
            kq = (kh @ self._head_weights(self.q_proj)) * self.scale  # (N, H, T, C)
            kb = (kh @ self.q_proj.bias.reshape(h, -1, 1)) * self.scale  # (N, H, T, 1)
            logits = q @ kq.reshape(n, h * t, -1).transpose(1, 2) + kb.reshape(n, 1, h * t)  # (N, M, H*T)
            p = logits.reshape(n, -1, h, t).softmax(dim=-1)  # (N, M, H, T)
        wo = self.out_proj.weight.reshape(self.out_proj.out_features, h, -1).permute(1, 2, 0)  # (H, d, C)
        vo = (self._heads(self.v_proj(v)) @ wo).reshape(n, h * t, -1)  # (N, H*T, C)
        return p.reshape(n, -1, h * t) @ vo + self.out_proj.bias


class MLPBlock(nn.Module):
    """segment-anything's MLPBlock: ReLU in the two-way transformer, GELU in the ViT encoder (and, with
    another output width, ProMISe's FFNBlock)."""

    def __init__(self, dim: int, hidden: int, act=F.relu, out: int | None = None):
        super().__init__()
        self.act = act
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.lin2(self.act(self.lin1(x)))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_pe: bool):
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, 2)

    def forward(self, queries, keys, query_pe, key_pe, token_to_image=None, image_to_token=None):
        """``token_to_image``, ``image_to_token``: other arrangements of the two cross attentions (the
        same functions; see TwoWayTransformer.fast)."""
        queries = self.self_attention(queries, query_pe)
        k = keys + key_pe
        token_to_image = token_to_image or self.cross_attn_token_to_image
        queries = self.norm2(queries + token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        image_to_token = image_to_token or self.cross_attn_image_to_token
        keys = self.norm4(keys + image_to_token(k, queries + query_pe, queries))
        return queries, keys

    def self_attention(self, queries, query_pe):
        """The prompt tokens' self-attention and norm1 (segment-anything's: no residual in the first block)."""
        if self.skip_first_pe:
            return self.norm1(self.self_attn(queries, queries, queries))
        q = queries + query_pe
        return self.norm1(queries + self.self_attn(q, q, queries))


class TwoWayTransformer(nn.Module):
    def __init__(self, depth=2, dim=256, num_heads=8, mlp_dim=2048, block=None):
        super().__init__()
        block = block or TwoWayBlock  # EfficientSAM passes its own block
        self.layers = nn.ModuleList([block(dim, num_heads, mlp_dim, i == 0) for i in range(depth)])
        self.final_attn_token_to_image = Attention(dim, num_heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image, image_pe, tokens):
        """image, image_pe: (B, C, H, W); tokens: (B, T, C) -> (tokens (B, T, C), image (B, HW, C))."""
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        out = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + out), keys

    def fast(self, image, image_pe, tokens, outputs: int):
        """forward() for N prompts on one image (1, C, H, W), arranged for the CPU; the first ``outputs``
        tokens of the result (the ones the heads read) and the image tokens are the same function.

        The image enters once: the first block's image-side projections serve all prompts. After it the
        image tokens differ per prompt, and attention between them and the prompt tokens is factored
        through the prompt side (Attention.few_queries, few_keys). The final attention updates only
        the ``outputs`` tokens that are read."""
        keys = image.flatten(2).permute(0, 2, 1)  # (1, HW, C) until the first image-to-token attention
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for i, layer in enumerate(self.layers):
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            queries, keys = layer(queries, keys, tokens, key_pe, token_to_image=t2i if i == 0 else t2i.few_queries,
                                  image_to_token=partial(i2t.few_keys, shared_queries=i == 0))
        queries, tokens = queries[:, :outputs], tokens[:, :outputs]
        out = self.final_attn_token_to_image.few_queries(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + out), keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, depth: int):
        super().__init__()
        dims = [dim_in] + [hidden] * (depth - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, dim=256, num_multimask=3, iou_depth=3, iou_hidden=256):
        super().__init__()
        self.num_masks = num_multimask + 1
        self.transformer = TwoWayTransformer(dim=dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_masks, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, 2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, 2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            [MLP(dim, dim, dim // 8, 3) for _ in range(self.num_masks)]
        )
        self.iou_prediction_head = MLP(dim, iou_hidden, self.num_masks, iou_depth)

    def forward(self, image_embeddings, image_pe, sparse, dense):
        """Single-mask output (SAM's ``multimask_output=False``) for each of the N prompts.

        image_embeddings (1, C, h, w), image_pe (1, C, h, w), sparse (N, T, C), dense (1, C, h, w)
        -> low-res logits (N, 1, 4h, 4w), predicted IoU (N, 1).
        """
        n = sparse.shape[0]
        tokens = self.prompt_tokens(sparse)
        _, c, h, w = image_embeddings.shape
        src = (image_embeddings + dense).expand(n, -1, -1, -1)
        pos = image_pe.expand(n, -1, -1, -1)
        hs, src = self.transformer(src, pos, tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper, iou = self.heads(hs)
        b, cu, hu, wu = upscaled.shape
        masks = (hyper[:, None, :] @ upscaled.reshape(b, cu, hu * wu)).reshape(b, 1, hu, wu)
        return masks, iou

    def prompt_tokens(self, sparse, token_shift=None):
        """(N, T, C) prompt embeddings (None: no prompt) -> (N, 1 + masks + T, C): the IoU token, the
        mask tokens (plus ``token_shift`` (N, masks, C) when given: ProMISe's pattern shift), prompts."""
        if token_shift is None:  # (this arrangement is the one the pinned LiteMedSAM graphs were traced with)
            out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)[None]
            if sparse is None:
                return out_tokens
            return torch.cat([out_tokens.expand(sparse.shape[0], -1, -1), sparse], dim=1)
        n = token_shift.shape[0]
        mask_tokens = self.mask_tokens.weight[None] + token_shift
        out_tokens = torch.cat([self.iou_token.weight[None].expand(n, -1, -1), mask_tokens], dim=1)
        return out_tokens if sparse is None else torch.cat([out_tokens, sparse.expand(n, -1, -1)], dim=1)

    def all_masks(self, image_embeddings, image_pe, sparse, dense, token_shift=None):
        """Every mask token's low-res logits (N, masks, 4h, 4w) and IoUs (N, masks), as SAMed and ProMISe
        use the decoder. ``sparse`` None: no prompt at all (one output, N = 1 unless a shift says so)."""
        tokens = self.prompt_tokens(sparse, token_shift)
        n = tokens.shape[0]
        _, c, h, w = image_embeddings.shape
        src = (image_embeddings + dense).expand(n, -1, -1, -1)
        hs, src = self.transformer(src, image_pe.expand(n, -1, -1, -1), tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(n, c, h, w))
        hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, cu, hu, wu = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        return masks, self.iou_prediction_head(hs[:, 0, :])

    def heads(self, hs):
        """Transformer token outputs -> hypernetwork weights of the first mask (N, C/8), its IoU (N, 1)."""
        return self.output_hypernetworks_mlps[0](hs[:, 1, :]), self.iou_prediction_head(hs[:, 0, :])[:, :1]


# ----------------------------------------------------------------------------- LiteMedSAM


class LiteMedSAM(nn.Module):
    """Container with the checkpoint's three top-level keys."""

    def __init__(self):
        super().__init__()
        self.image_encoder = TinyViT()
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()


class BoxDecoder(nn.Module):
    """Reference arrangement: image embedding + N boxes (256-pixel frame) -> N low-res logits and IoUs."""

    def __init__(self, model: LiteMedSAM):
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder

    def forward(self, image_embeddings, boxes):
        sparse = self.prompt_encoder.embed_boxes(boxes)
        return self.mask_decoder(
            image_embeddings,
            self.prompt_encoder.dense_pe(),
            sparse,
            self.prompt_encoder.no_mask_dense(),
        )


def upconv2x2_channels_last(x, conv: nn.ConvTranspose2d):
    """ConvTranspose2d(kernel 2, stride 2) on (N, h, w, Cin) -> (N, 2h, 2w, Cout), as one matrix product
    per pixel followed by depth-to-space (ONNX Runtime's ConvTranspose is several times slower)."""
    cin, cout = conv.weight.shape[:2]
    n, h, w, _ = x.shape
    weight = conv.weight.permute(0, 2, 3, 1).reshape(cin, 4 * cout)  # columns ordered (dy, dx, cout)
    y = x @ weight + conv.bias.repeat(4)
    y = y.reshape(n, h, w, 2, 2, cout).permute(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, cout)


class FastBoxDecoder(BoxDecoder):
    """The same function as BoxDecoder, arranged for speed on the CPU.

    - The image tokens enter the two-way transformer once, not once per box: until the first
      image-to-token attention they are the same for every box, so the projections of the first
      block are computed once and broadcast; later attentions between the per-box image tokens and
      the few prompt tokens are factored through the prompt side (TwoWayTransformer.fast).
    - The upscaling runs channels-last, its transposed convolutions as matrix products and its
      LayerNorm2d as a plain layer norm over the last axis.
    Export checks compare the ONNX graph of this module against BoxDecoder.
    """

    def forward(self, image_embeddings, boxes):
        pe, md = self.prompt_encoder, self.mask_decoder
        sparse = pe.embed_boxes(boxes)
        n = sparse.shape[0]
        _, c, h, w = image_embeddings.shape
        src = image_embeddings + pe.no_mask_dense()  # (1, C, h, w): shared by all boxes
        hs, keys = md.transformer.fast(src, pe.dense_pe(), md.prompt_tokens(sparse), outputs=2)  # keys: (N, hw, C)
        up0, norm, _, up1, _ = md.output_upscaling
        x = upconv2x2_channels_last(keys.reshape(n, h, w, c), up0)
        x = F.gelu(F.layer_norm(x, (up0.out_channels,), norm.weight, norm.bias, norm.eps))
        x = F.gelu(upconv2x2_channels_last(x, up1))  # (N, 4h, 4w, C/8)
        hyper, iou = md.heads(hs)
        masks = (x.reshape(n, 16 * h * w, -1) @ hyper[:, :, None]).reshape(n, 1, 4 * h, 4 * w)
        return masks, iou


class PromptDecoder(nn.Module):
    """SAM's general prompt decoder on LiteMedSAM's weights (as segment-anything's SamOnnxModel):
    image embedding + per prompt any points (a box is two points labelled 2 and 3) and an optional
    previous low-res mask -> one low-res mask and its IoU per prompt. Used by self-prompting and
    one-shot part-aware prompting, where prompts are points, boxes and masks together."""

    def __init__(self, model: LiteMedSAM):
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        pe = self.prompt_encoder
        sparse = pe.embed_points(point_coords, point_labels)
        dense = pe.embed_masks(mask_input, has_mask_input)
        return self.mask_decoder(image_embeddings, pe.dense_pe(), sparse, dense)
