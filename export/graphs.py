"""The decoder graphs exported for a SAM-family model (anything with ``prompt_encoder`` and ``mask_decoder``):
the box decoder in its reference arrangement and in the faster one that is exported, and the general prompt
decoder (points, boxes as corners, mask input)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BoxDecoder(nn.Module):
    """Reference arrangement: image embedding + N boxes (256-pixel frame) -> N low-res logits and IoUs."""

    def __init__(self, model: nn.Module):
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

    def __init__(self, model: nn.Module):
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        pe = self.prompt_encoder
        sparse = pe.embed_points(point_coords, point_labels)
        dense = pe.embed_masks(mask_input, has_mask_input)
        return self.mask_decoder(image_embeddings, pe.dense_pe(), sparse, dense)
