"""SAM's two-way transformer (segment-anything's key names), with attention that can be factored through the
few prompt tokens (``Attention.few_queries`` / ``few_keys``, used by the fast box decoders). Export only."""
from __future__ import annotations

from functools import partial

from torch import nn

from export.layers import MLPBlock


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
