"""SAM's mask decoder (segment-anything's key names): prompt tokens and image embedding through the two-way
transformer to masks and IoU predictions. Written for export only."""
from __future__ import annotations

import torch
from torch import nn

from export.layers import MLP, LayerNorm2d
from export.two_way import TwoWayTransformer


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
