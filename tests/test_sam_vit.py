"""SAM's ViT encoder in segment-anything's checkpoint layout, and its export (small random configuration)."""
import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

SMALL = dict(img_size=256, width=64, depth=4, heads=4, window=7, global_blocks=(1, 3))


def test_vit_b_layout():
    from export.sam_vit import SamModel

    state = SamModel().state_dict()
    assert tuple(state["image_encoder.pos_embed"].shape) == (1, 64, 64, 768)
    assert tuple(state["image_encoder.blocks.0.attn.rel_pos_h"].shape) == (27, 64)  # windowed: 2*14-1
    assert tuple(state["image_encoder.blocks.2.attn.rel_pos_w"].shape) == (127, 64)  # global: 2*64-1
    assert tuple(state["image_encoder.blocks.11.mlp.lin2.weight"].shape) == (768, 3072)
    assert tuple(state["prompt_encoder.mask_downscaling.0.weight"].shape) == (4, 1, 2, 2)
    # pos_embed, patch_embed (2), 12 blocks x 14 (norms, qkv, proj, rel_pos_h/w, mlp), neck (6)
    assert sum(k.startswith("image_encoder.") for k in state) == 1 + 2 + 12 * 14 + 6


def test_samed_lora_merge_then_export(tmp_path):
    """A SAMed-style LoRA file on a (small, random) SAM: merge, load strictly, export, ONNX == torch."""
    import torch

    from export.lora import merge
    from export.sam_vit import SamModel, export, load_model

    torch.manual_seed(0)
    base = SamModel(**SMALL).state_dict()
    lora = {}
    for i in range(SMALL["depth"]):
        for j in (2 * i, 2 * i + 1):
            lora[f"w_a_{j:03d}"] = torch.randn(4, 64) * 0.1
            lora[f"w_b_{j:03d}"] = torch.randn(64, 4) * 0.1
    lora["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    torch.save(merge(base, lora, "sam"), tmp_path / "merged.pth")
    model = load_model(tmp_path / "merged.pth", **SMALL)
    assert torch.equal(model.state_dict()["mask_decoder.iou_token.weight"], lora["mask_decoder.iou_token.weight"])
    report = export(model, tmp_path, prefix="samed_small")
    dices = []
    for graph in report["graphs"]:
        for name, out in graph["outputs"].items():
            assert out["max_abs_error"] < 1e-3, (graph["graph"], name)
            dices += [out["mask_dice"]] if "mask_dice" in out else []
    assert dices and min(dices) >= 0.999, dices  # the masks were compared
