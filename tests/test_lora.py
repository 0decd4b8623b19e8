"""LoRA in SAMed's layout: merging is exact (the adapted model equals the merged one), layouts are checked."""
import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")


def test_merge_equals_adapted_model():
    import torch

    from export.lora import add_lora, lora_state, merge
    from export.litemedsam import LiteMedSAM

    torch.manual_seed(0)
    model = LiteMedSAM().eval()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    wrappers = add_lora(model, rank=3)
    assert len(wrappers) == 10  # 2 + 6 + 2 TinyViT attention blocks
    for w in wrappers:  # as if trained: non-zero B
        for p in (w.b_q.weight, w.b_v.weight):
            torch.nn.init.normal_(p, std=0.05)
    saved = lora_state(model, wrappers)
    assert sorted(k for k in saved if k.startswith("w_a_"))[-1] == "w_a_019"
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        adapted = model.image_encoder(image)
        plain = LiteMedSAM().eval()
        plain.load_state_dict(merge(base, saved, "litemedsam"), strict=True)
        merged = plain.image_encoder(image)
        plain.load_state_dict(base)
        original = plain.image_encoder(image)
    assert (adapted - merged).abs().max() < 1e-4
    assert (adapted - original).abs().max() > 1e-2  # the adapters did change something


def test_sam_layout_rows_and_bad_files():
    import torch

    from export.lora import merge

    dim, r = 8, 2
    base = {f"image_encoder.blocks.{i}.attn.qkv.weight": torch.zeros(3 * dim, dim) for i in range(2)}
    lora = {}
    for j in range(4):
        lora[f"w_a_{j:03d}"] = torch.ones(r, dim)
        lora[f"w_b_{j:03d}"] = torch.full((dim, r), float(j + 1))
    merged = merge(base, lora, "sam")
    w0 = merged["image_encoder.blocks.0.attn.qkv.weight"]
    assert (w0[:dim] == 2).all() and (w0[dim:2 * dim] == 0).all() and (w0[2 * dim:] == 4).all()  # q, k untouched, v
    assert (merged["image_encoder.blocks.1.attn.qkv.weight"][2 * dim:] == 8).all()
    with pytest.raises(ValueError, match="adapted blocks"):
        merge(base, {k: v for k, v in lora.items() if k not in ("w_a_003", "w_b_003")}, "sam")


def test_train_two_steps_then_merge_loads_strictly(dev_data, tmp_path):
    """The CPU fine-tuning command end to end on one real case (two steps: it runs, it saves SAMed's layout)."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from export.litemedsam import LiteMedSAM
    from litemedsam.models.registry import CHECKPOINTS, ModelError, verified_path

    try:
        verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch")
    except ModelError as e:
        pytest.skip(str(e))
    repo = Path(__file__).resolve().parent.parent
    case = dev_data / "imgs" / "2DBox_Microscopy_MedScribble-WBC_004_axis0_midslice.npz"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "export.lora", *map(str, a)], cwd=repo, capture_output=True,
                              text=True)
    done = run("train", case, "--gts", dev_data / "gts", "--out", tmp_path / "lora.pth", "--steps", "2")
    assert done.returncode == 0, done.stderr
    lora = torch.load(tmp_path / "lora.pth", weights_only=True)
    assert len([k for k in lora if k.startswith("w_a_")]) == 20 and "mask_decoder.iou_token.weight" in lora
    done = run("merge", "--lora", tmp_path / "lora.pth", "--out", tmp_path / "merged.pth")
    assert done.returncode == 0, done.stderr
    LiteMedSAM().load_state_dict(torch.load(tmp_path / "merged.pth", weights_only=True), strict=True)
