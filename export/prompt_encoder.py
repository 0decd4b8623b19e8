"""SAM's prompt encoder (segment-anything's key names): points, boxes and masks to sparse and dense
prompt embeddings. Written for export only."""
from __future__ import annotations

import math

import torch
from torch import nn

from export.layers import LayerNorm2d


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
