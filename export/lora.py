"""LoRA adapters in SAMed's layout: merge them exactly into the base weights, and train them on the CPU.

    python -m export.lora merge --lora LORA.pth [--base lite_medsam.pth] [--family litemedsam|sam] --out MERGED.pth
    python -m export.lora train CASES... --gts GTS --out LORA.pth [--rank 4] [--steps 60] [--lr 2e-3]

SAMed's layout (hitachinsk/SAMed ``LoRA_Sam.save_lora_parameters``): one ``torch.save``d dict with,
for the i-th adapted attention block in model order, ``w_a_{2i:03d}`` (r, dim) and ``w_b_{2i:03d}``
(dim, r) for q and ``w_a_{2i+1:03d}`` / ``w_b_{2i+1:03d}`` for v, plus the full ``prompt_encoder.*``
and ``mask_decoder.*`` tensors. The adapted qkv computes ``qkv(x) + [B_q A_q x on the q rows,
B_v A_v x on the v rows]`` with no scaling, so merging adds ``B_q @ A_q`` to the q rows and
``B_v @ A_v`` to the v rows of ``qkv.weight``, exactly. q/v rows: SAM's ViT lays its qkv output out as
[q | k | v] (``image_encoder.blocks.i.attn.qkv``); LiteMedSAM's TinyViT lays it out per head as
[q_h | k_h | v_h] (``image_encoder.layers.{1,2,3}.blocks.j.attn.qkv``), and adapters trained here
target those real q and v rows. The merged dict is a plain checkpoint of the base model; for
LiteMedSAM, ``python -m export --model litemedsam-ft --checkpoint MERGED.pth`` exports it
into the router's fine-tuned slot (``litemedsam models finetune`` does all of it).

SAMed's variant with LoRA on the mask decoder too (``sam_lora_image_encoder_mask_decoder.py``) adds,
for each two-way transformer layer l in order, ``sa_a_{2l:03d}``/``sa_b_{2l:03d}`` (q) and
``sa_a_{2l+1:03d}``/``sa_b_{2l+1:03d}`` (v) of ``self_attn``, the same with ``cti_`` for
``cross_attn_token_to_image`` and ``cit_`` for ``cross_attn_image_to_token``, and ``fati_qa``,
``fati_qb``, ``fati_va``, ``fati_vb`` for ``final_attn_token_to_image``; each adapts a projection as
``proj(x) + B A x``, so ``B @ A`` is added to ``q_proj.weight`` / ``v_proj.weight``. That file holds the
mask decoder's tensors except the transformer's; a SAMed model for K classes has K + 1 mask tokens,
hypernetwork MLPs and IoU outputs, so the decoder's head (everything of ``mask_decoder.`` outside
``transformer.``) is taken whole from the LoRA file, replacing the base model's 4-token head.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TINYVIT_HEADS = {1: 4, 2: 5, 3: 10}  # heads per TinyViT stage of LiteMedSAM (stage 0 is convolutional)


def qkv_targets(state: dict, family: str) -> list:
    """(qkv weight key, q row indices, v row indices) of every attention block, in model order."""
    targets = []
    if family == "sam":
        keys = sorted((k for k in state if re.fullmatch(r"image_encoder\.blocks\.\d+\.attn\.qkv\.weight", k)),
                      key=lambda k: int(k.split(".")[2]))
        for key in keys:
            dim = state[key].shape[1]
            targets.append((key, np.arange(dim), np.arange(2 * dim, 3 * dim)))
    elif family == "litemedsam":
        pattern = re.compile(r"image_encoder\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.weight")
        keys = sorted((k for k in state if pattern.fullmatch(k)),
                      key=lambda k: tuple(int(g) for g in pattern.fullmatch(k).groups()))
        for key in keys:
            dim = state[key].shape[1]
            heads = TINYVIT_HEADS[int(pattern.fullmatch(key).group(1))]
            hd = dim // heads
            starts = np.arange(heads) * 3 * hd
            q_rows, v_rows = starts[:, None] + np.arange(hd), starts[:, None] + 2 * hd + np.arange(hd)
            targets.append((key, q_rows.ravel(), v_rows.ravel()))
    else:
        raise ValueError(f"unknown family {family!r} (sam or litemedsam)")
    return targets


DECODER_LORA = {"sa": "self_attn", "cti": "cross_attn_token_to_image", "cit": "cross_attn_image_to_token"}


def _add_product(merged: dict, key: str, a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    weight = merged[key]
    a, b = a.to(weight.dtype), b.to(weight.dtype)
    if a.shape[1] != weight.shape[1] or b.shape[0] != weight.shape[0] or a.shape[0] != b.shape[1]:
        raise ValueError(f"{names} {tuple(a.shape)} / {tuple(b.shape)} do not fit {key} {tuple(weight.shape)}")
    merged[key] = weight + b @ a


def merge_decoder(merged: dict, lora: dict) -> None:
    """Add SAMed's mask-decoder adapters (sa_/cti_/cit_/fati_ keys) to the two-way transformer, in place."""
    for prefix, attn in DECODER_LORA.items():
        count = len([k for k in lora if re.fullmatch(rf"{prefix}_a_\d{{3}}", k)])
        for j in range(count):
            layer, proj = divmod(j, 2)
            key = f"mask_decoder.transformer.layers.{layer}.{attn}.{'qv'[proj]}_proj.weight"
            if key not in merged:
                raise ValueError(f"{prefix}_a_{j:03d} adapts {key}, which the base model does not have")
            _add_product(merged, key, lora[f"{prefix}_a_{j:03d}"], lora[f"{prefix}_b_{j:03d}"], f"{prefix}_a/b_{j:03d}")
    for proj in "qv":
        if f"fati_{proj}a" in lora:
            key = f"mask_decoder.transformer.final_attn_token_to_image.{proj}_proj.weight"
            _add_product(merged, key, lora[f"fati_{proj}a"], lora[f"fati_{proj}b"], f"fati_{proj}a/b")


def merge(base: dict, lora: dict, family: str, blocks: list | None = None) -> dict:
    """Base state dict + SAMed-layout LoRA -> merged state dict (prompt encoder and mask decoder head
    from the LoRA file when it holds them). ``blocks``: indices of the adapted blocks (default: all)."""
    targets = qkv_targets(base, family)
    pairs = len([k for k in lora if re.fullmatch(r"w_a_\d{3}", k)])
    blocks = list(range(len(targets))) if blocks is None else blocks
    if pairs != 2 * len(blocks):
        raise ValueError(f"the LoRA file has {pairs} A matrices; {len(blocks)} adapted blocks need {2 * len(blocks)} "
                         f"(q and v each); give the adapted block indices")
    merged = {k: v.clone() for k, v in base.items()}
    for i, block in enumerate(blocks):
        key, q_rows, v_rows = targets[block]
        weight = merged[key]
        for j, rows in ((2 * i, q_rows), (2 * i + 1, v_rows)):
            a, b = lora[f"w_a_{j:03d}"].to(weight.dtype), lora[f"w_b_{j:03d}"].to(weight.dtype)
            if a.shape[1] != weight.shape[1] or b.shape[0] != len(rows):
                raise ValueError(f"w_a_{j:03d} {tuple(a.shape)} / w_b_{j:03d} {tuple(b.shape)} do not fit {key} "
                                 f"{tuple(weight.shape)}")
            weight[torch.as_tensor(rows)] += b @ a
    merge_decoder(merged, lora)
    head = lambda k: k.startswith("mask_decoder.") and ".transformer." not in k  # noqa: E731
    if "mask_decoder.mask_tokens.weight" in lora:  # a whole decoder head (K + 1 tokens) replaces the base one
        for key in [k for k in merged if head(k)]:
            del merged[key]
    for key, value in lora.items():
        if key.startswith("prompt_encoder.") or head(key):
            if key not in merged and "mask_decoder.mask_tokens.weight" not in lora:
                raise ValueError(f"{key} of the LoRA file is not a key of the base model")
            merged[key] = value.clone()
    return merged


class LoRAQKV(nn.Module):
    """A qkv Linear with rank-r adapters on its q and v rows (SAMed's _LoRA_qkv, generalised to any row layout)."""

    def __init__(self, qkv: nn.Linear, q_rows, v_rows, rank: int):
        super().__init__()
        self.qkv = qkv
        dim = qkv.in_features
        self.register_buffer("q_rows", torch.as_tensor(q_rows), persistent=False)
        self.register_buffer("v_rows", torch.as_tensor(v_rows), persistent=False)
        self.a_q, self.b_q = nn.Linear(dim, rank, bias=False), nn.Linear(rank, len(q_rows), bias=False)
        self.a_v, self.b_v = nn.Linear(dim, rank, bias=False), nn.Linear(rank, len(v_rows), bias=False)
        for a, b in ((self.a_q, self.b_q), (self.a_v, self.b_v)):
            nn.init.kaiming_uniform_(a.weight, a=5 ** 0.5)
            nn.init.zeros_(b.weight)

    def forward(self, x):
        delta = torch.zeros(self.qkv.out_features, self.qkv.in_features, dtype=x.dtype)
        delta = delta.index_add(0, self.q_rows, self.b_q.weight @ self.a_q.weight)
        delta = delta.index_add(0, self.v_rows, self.b_v.weight @ self.a_v.weight)
        return F.linear(x, self.qkv.weight + delta, self.qkv.bias)


def add_lora(model, rank: int) -> list:
    """Wrap every TinyViT attention qkv of a LiteMedSAM module; returns the wrappers in model order."""
    targets = qkv_targets(model.state_dict(), "litemedsam")
    wrappers = []
    for key, q_rows, v_rows in targets:
        attn = model.get_submodule(key.rsplit(".", 2)[0])
        attn.qkv = LoRAQKV(attn.qkv, q_rows, v_rows, rank)
        wrappers.append(attn.qkv)
    return wrappers


def lora_state(model, wrappers) -> dict:
    """SAMed's layout: w_a/w_b pairs (q, v per block) + the prompt encoder and mask decoder tensors."""
    out = {}
    for i, w in enumerate(wrappers):
        out[f"w_a_{2 * i:03d}"], out[f"w_b_{2 * i:03d}"] = w.a_q.weight.detach().clone(), w.b_q.weight.detach().clone()
        out[f"w_a_{2 * i + 1:03d}"] = w.a_v.weight.detach().clone()
        out[f"w_b_{2 * i + 1:03d}"] = w.b_v.weight.detach().clone()
    for key, value in model.state_dict().items():
        if key.startswith(("prompt_encoder.", "mask_decoder.")):
            out[key] = value.detach().clone()
    return out


def training_examples(cases: list, gts_dir: Path | None):
    """(image (1, 3, 256, 256), boxes (N, 4) in the 256 frame, masks (N, 256, 256)) per labelled image (a
    volume's: some of its slices, export.fit.labelled_images)."""
    from export.fit import labelled_images
    from litemedsam.core import transforms

    examples = []
    for _, image, _, _, _, boxes, masks, _ in labelled_images(cases, gts_dir):
        keep = masks.reshape(len(masks), -1).sum(1) > 0
        examples.append((torch.from_numpy(transforms.preprocess(image, 256)), torch.from_numpy(boxes[keep]),
                         torch.from_numpy(masks[keep])))
    return examples


def train(model, examples, rank: int = 4, steps: int = 60, lr: float = 2e-3, max_boxes: int = 16, seed: int = 0,
          log=print) -> list:
    """Fit LoRA adapters (only them) with Dice + BCE on the low-res masks; returns the wrappers."""
    from export.fit import some_objects, step
    from export.graphs import BoxDecoder

    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    wrappers = add_lora(model, rank)
    params = [p for w in wrappers for p in (w.a_q.weight, w.b_q.weight, w.a_v.weight, w.b_v.weight)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    decoder = BoxDecoder(model)
    rng = np.random.default_rng(seed)
    model.train()
    for n in range(steps):
        image, boxes, masks = examples[n % len(examples)]
        boxes, masks = some_objects(boxes, masks, max_boxes, rng)
        logits, _ = decoder(model.image_encoder(image), boxes)
        loss = step(optimizer, logits[:, 0], masks)
        if n % 10 == 0 or n == steps - 1:
            log(f"step {n + 1}/{steps}: loss {loss:.4f}")
    model.eval()
    return wrappers


def main(argv=None) -> int:
    from litemedsam.models.registry import CHECKPOINTS, verified_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge a SAMed-layout LoRA file into its base checkpoint")
    m.add_argument("--lora", type=Path, required=True)
    m.add_argument("--base", type=Path, default=None, help="default: the verified lite_medsam.pth")
    m.add_argument("--family", choices=["litemedsam", "sam"], default="litemedsam")
    m.add_argument("--blocks", default=None, help="adapted block indices, e.g. 0,1,2 (default: all)")
    m.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("train", help="train LoRA adapters on LiteMedSAM from challenge cases")
    t.add_argument("cases", nargs="+", type=Path)
    t.add_argument("--gts", type=Path, default=None)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--rank", type=int, default=4)
    t.add_argument("--steps", type=int, default=60)
    t.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)

    from export.checkpoints import read_state as read

    if args.command == "merge":
        base = read(args.base or verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch"))
        blocks = [int(b) for b in args.blocks.split(",")] if args.blocks else None
        try:
            merged = merge(base, read(args.lora), args.family, blocks)
        except (ValueError, KeyError) as e:
            print(f"ERROR {args.lora}: {e}", file=sys.stderr)
            return 1
        torch.save(merged, args.out)
        print(f"{args.out}: {args.lora} merged into {args.family} weights")
        return 0

    from export.litemedsam import load_model

    files = []
    for path in args.cases:
        files += sorted(path.glob("*.npz")) if path.is_dir() else [path]
    examples = training_examples(files, args.gts)
    if not examples:
        print("ERROR: no 2D cases with ground truth to train on", file=sys.stderr)
        return 1
    model = load_model(verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch"))
    start = time.perf_counter()
    wrappers = train(model, examples, args.rank, args.steps, args.lr)
    torch.save(lora_state(model, wrappers), args.out)
    print(json.dumps({"lora": str(args.out), "cases": [f.name for f in files], "rank": args.rank, "steps": args.steps,
                      "seconds": round(time.perf_counter() - start, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
