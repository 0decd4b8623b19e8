"""SAMed (LoRA on encoder and decoder, K-class prompt-free semantic mode), ProMISe (APM + IPS, one graph)
and SAM ViT box prompting, on small randomly initialised models saved in the upstream layouts:
torch vs ONNX Runtime on the graphs, then the runtime on real dev images against torch."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

REPO = Path(__file__).resolve().parent.parent
SMALL_SAM = dict(img_size=256, width=64, depth=4, heads=4, window=7, global_blocks=(1, 3))
SMALL_PROMISE = dict(img_size=256, width=32, depth=12, heads=2, window=7, global_blocks=(2, 5, 8, 11))
CLASSES = 4
KVASIR = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"


def dev_image(dev_data, name=KVASIR):
    with np.load(dev_data / "imgs" / name) as npz:
        return npz["imgs"]


def check(report):
    """Every output within 1e-3 of torch, and the masks compared (at least one) with Dice >= 0.999."""
    dices = []
    for graph in report["graphs"] if "graphs" in report else [report]:
        for name, out in graph["outputs"].items():
            assert out["max_abs_error"] < 1e-3, (graph["graph"], name, out)
            dices += [out["mask_dice"]] if "mask_dice" in out else []
    assert dices and min(dices) >= 0.999, dices


def samed_lora(torch, base: dict, rank: int = 3) -> dict:
    """A SAMed checkpoint of sam_lora_image_encoder_mask_decoder.py's layout, random, K = CLASSES."""
    from export.sam_vit import SamModel

    g = torch.Generator().manual_seed(1)
    rnd = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    dim = base["image_encoder.blocks.0.attn.qkv.weight"].shape[1]
    lora = {}
    for j in range(2 * SMALL_SAM["depth"]):
        lora[f"w_a_{j:03d}"], lora[f"w_b_{j:03d}"] = rnd(rank, dim), rnd(dim, rank)
    for prefix, inner in (("sa", 256), ("cti", 128), ("cit", 128)):
        for j in range(4):  # two layers, q and v
            lora[f"{prefix}_a_{j:03d}"], lora[f"{prefix}_b_{j:03d}"] = rnd(rank, 256), rnd(inner, rank)
    for proj in "qv":
        lora[f"fati_{proj}a"], lora[f"fati_{proj}b"] = rnd(rank, 256), rnd(128, rank)
    head = SamModel(num_multimask=CLASSES, **SMALL_SAM).state_dict()
    for key, value in head.items():
        if key.startswith("prompt_encoder.") or (key.startswith("mask_decoder.") and ".transformer." not in key):
            lora[key] = value + rnd(*value.shape) if value.is_floating_point() else value
    return lora


def test_samed_merge_is_exact_and_semantic_decoder_exports(tmp_path):
    """Merged weights == SAMed's adapted modules (encoder qkv and decoder projections), at another input
    size (pos_embed and relative positions resized as SAMed loads SAM), and the K + 1 output graph
    agrees with torch."""
    import torch

    from export.lora import LoRAQKV, merge, qkv_targets
    from export.sam_vit import SamModel, SemanticDecoder, export, fit_to_size, load_model

    torch.manual_seed(0)
    base = SamModel(**SMALL_SAM).state_dict()
    lora = samed_lora(torch, base)
    merged = load_model(merge(base, lora, "sam"), img_size=128)
    assert merged.mask_decoder.mask_tokens.weight.shape[0] == CLASSES + 1
    assert tuple(merged.image_encoder.pos_embed.shape) == (1, 8, 8, 64)

    # the adapted model, as SAMed runs it: base weights + the file's head, adapters applied on the fly
    adapted = SamModel(num_multimask=CLASSES, **{**SMALL_SAM, "img_size": 128}).eval()
    state = {k: v for k, v in base.items() if not (k.startswith("mask_decoder.") and ".transformer." not in k)}
    state.update({k: v for k, v in lora.items() if "." in k})
    adapted.load_state_dict(fit_to_size(state, adapted), strict=True)
    for i, (key, q_rows, v_rows) in enumerate(qkv_targets(base, "sam")):
        attn = adapted.get_submodule(key.rsplit(".", 2)[0])
        attn.qkv = LoRAQKV(attn.qkv, q_rows, v_rows, 3)
        for layer, name in ((attn.qkv.a_q, f"w_a_{2 * i:03d}"), (attn.qkv.b_q, f"w_b_{2 * i:03d}"),
                            (attn.qkv.a_v, f"w_a_{2 * i + 1:03d}"), (attn.qkv.b_v, f"w_b_{2 * i + 1:03d}")):
            layer.weight.data = lora[name]

    class Adapted(torch.nn.Module):  # SAMed's _LoRA_qkv_proj
        def __init__(self, proj, a, b):
            super().__init__()
            self.proj, self.a, self.b = proj, a, b

        def forward(self, x):
            return self.proj(x) + x @ self.a.T @ self.b.T

    transformer = adapted.mask_decoder.transformer
    for prefix, attn_name in (
        ("sa", "self_attn"),
        ("cti", "cross_attn_token_to_image"),
        ("cit", "cross_attn_image_to_token"),
    ):
        for j in range(4):
            attn = getattr(transformer.layers[j // 2], attn_name)
            proj = f"{'qv'[j % 2]}_proj"
            setattr(attn, proj, Adapted(getattr(attn, proj), lora[f"{prefix}_a_{j:03d}"], lora[f"{prefix}_b_{j:03d}"]))
    final = transformer.final_attn_token_to_image
    final.q_proj = Adapted(final.q_proj, lora["fati_qa"], lora["fati_qb"])
    final.v_proj = Adapted(final.v_proj, lora["fati_va"], lora["fati_vb"])

    image = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        emb_a, emb_m = adapted.image_encoder(image), merged.image_encoder(image)
        assert (emb_a - emb_m).abs().max() < 1e-4
        logits_a, logits_m = SemanticDecoder(adapted)(emb_a), SemanticDecoder(merged)(emb_a)
    assert logits_m.shape == (1, CLASSES + 1, 32, 32)
    assert (logits_a - logits_m).abs().max() < 1e-4

    report = export(merged, tmp_path, prefix="samed", semantic=True)
    assert [g["graph"] for g in report["graphs"]] == ["encoder", "semantic_decoder"]
    check(report)


@pytest.fixture(scope="module")
def samed_dir(tmp_path_factory):
    """A small random SAMed built the way `python -m export --model samed` builds it."""
    import torch

    from export.sam_vit import SamModel

    out = tmp_path_factory.mktemp("samed")
    torch.manual_seed(0)
    torch.save(SamModel(**SMALL_SAM).state_dict(), out / "sam_small.pth")
    torch.save(samed_lora(torch, torch.load(out / "sam_small.pth")), out / "samed_lora.pth")
    done = subprocess.run([sys.executable, "-m", "export", "--model", "samed", "--checkpoint", out / "sam_small.pth",
                           "--lora", out / "samed_lora.pth", "--img-size", "128", "--out-dir", out],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def test_samed_runtime_matches_torch(dev_data, samed_dir):
    """SemanticSegmenter (ONNX Runtime + host pre/post-processing) == the same steps in torch."""
    import cv2
    import torch
    import torch.nn.functional as F

    from export.lora import merge
    from export.sam_vit import SemanticDecoder, load_model
    from litemedsam.models.image_segmenters import SemanticSegmenter
    from litemedsam.models.registry import MODELS

    seg = SemanticSegmenter(MODELS["samed"], model_dir=samed_dir)
    image = dev_image(dev_data)
    labels = seg.segment(image)
    assert labels.shape == image.shape[:2] and labels.dtype == np.uint8

    model = load_model(merge(torch.load(samed_dir / "sam_small.pth"), torch.load(samed_dir / "samed_lora.pth"), "sam"),
                       img_size=128)
    x = cv2.resize(cv2.resize(image.astype(np.float32) / 255, (224, 224), interpolation=cv2.INTER_CUBIC), (128, 128),
                   interpolation=cv2.INTER_CUBIC)
    with torch.no_grad():
        logits = SemanticDecoder(model)(model.image_encoder(torch.from_numpy(x.transpose(2, 0, 1)[None].copy())))
    ref = F.interpolate(logits, (128, 128), mode="bilinear", align_corners=False).argmax(1)[0].numpy().astype(np.uint8)
    ref = cv2.resize(ref, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    assert (labels == ref).mean() > 0.999
    assert len(np.unique(labels)) > 1  # random weights still give several classes


def test_infer_prompt_none_2d_and_3d(dev_data, samed_dir, tmp_path):
    """`infer --prompt none --model samed`: label maps for 2D images and 3D volumes (slice by slice),
    with or without boxes in the file; a box model asked for --prompt none is refused."""
    import os

    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / KVASIR).write_bytes((dev_data / "imgs" / KVASIR).read_bytes())
    volume = np.random.default_rng(0).integers(0, 256, (3, 40, 50), dtype=np.uint8)
    np.savez_compressed(cases / "3DBox_CT_noboxes.npz", imgs=volume, spacing=np.ones(3))
    env = {**os.environ, "LITEMEDSAM_WORK_DIR": str(samed_dir)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "litemedsam", "infer", *map(str, a)],  # noqa: E731
                                    cwd=REPO, capture_output=True, text=True, env=env)
    done = run("-i", cases, "-o", tmp_path / "out", "--prompt", "none", "--model", "samed")
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out" / "3DBox_CT_noboxes.npz") as npz:
        assert npz["segs"].shape == volume.shape and npz["segs"].max() <= CLASSES
    with np.load(tmp_path / "out" / KVASIR) as npz:
        assert npz["segs"].shape == dev_image(dev_data).shape[:2]
    done = run("-i", cases, "-o", tmp_path / "out2", "--prompt", "none", "--model", "litemedsam")
    assert done.returncode == 2 and "prompt-free model" in done.stderr and "Traceback" not in done.stderr
    done = run("-i", cases, "-o", tmp_path / "out3", "--model", "samed")
    assert done.returncode == 2 and "--prompt none" in done.stderr


def promise_checkpoint(torch, path, points=4):
    """A random ProMISe checkpoint as its training saves it (DataParallel prefix, IPS as ffn.lin*)."""
    from export.promise import ProMISe

    torch.manual_seed(0)
    model = ProMISe(points, **SMALL_PROMISE)
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("ips_ffn.lin", "ffn.lin")
        state[f"module.{key}"] = value
    torch.save(state, path)
    return model.eval()


def test_promise_layout_and_export(tmp_path):
    import torch

    from export.promise import ProMISe, export, load_model

    full = ProMISe().state_dict()  # ViT-B, 16 points: the upstream layout
    assert tuple(full["apm_feature_map.fusion_conv1.weight"].shape) == (256, 2304, 3, 3)
    assert tuple(full["apm_resnet.conv1.weight"].shape) == (64, 256, 3, 3)
    assert tuple(full["apm_resnet.layer4.2.shortcut.0.weight"].shape) == (512, 512, 1, 1)
    assert "apm_resnet.layer4.1.shortcut.0.weight" not in full
    assert tuple(full["apm_resnet.fc.weight"].shape) == (32, 512)
    assert tuple(full["apm_resnet.fc2.weight"].shape) == (1024, 512)
    assert tuple(full["ips_ffn.lin2.weight"].shape) == (1024, 1024)
    assert sum(k.startswith("apm_resnet.layer") and k.endswith("conv1.weight") for k in full) == 3 + 4 + 6 + 3

    original = promise_checkpoint(torch, tmp_path / "promise.pt")
    model = load_model(tmp_path / "promise.pt", img_size=256)
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        a, b = original(image), model(image)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert b[0].shape == (1, 1, 64, 64) and b[1].shape == (1, 4, 2)
    assert ((b[1] >= 0) & (b[1] <= 256)).all()
    check(export(model, tmp_path / "promise.onnx"))


def test_promise_runtime_matches_torch(dev_data, tmp_path):
    import cv2
    import torch

    from litemedsam.models.image_segmenters import AutoPromptSegmenter
    from litemedsam.models.registry import MODELS

    model = promise_checkpoint(torch, tmp_path / "promise.pt")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "export",
            "--model",
            "promise",
            "--checkpoint",
            tmp_path / "promise.pt",
            "--img-size",
            "256",
            "--out-dir",
            tmp_path,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "promise.manifest.json").read_text())["files"]
    seg = AutoPromptSegmenter(MODELS["promise"], model_dir=tmp_path)
    image = dev_image(dev_data)
    mask, points = seg.predict(image)
    h, w = image.shape[:2]
    x = cv2.resize(image, (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    with torch.no_grad():
        logits, ref_points = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    low = cv2.morphologyEx((logits[0, 0].numpy() >= 0).astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    ref = cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    assert mask.shape == (h, w) and (mask == ref).mean() > 0.999
    assert np.abs(points - ref_points[0].numpy() * [w / 256, h / 256]).max() < 0.05


def test_sam_vit_box_runtime_matches_torch(dev_data, tmp_path):
    """SamSegmenter (family sam) on a small random SAM: SAM's preprocessing, boxes, masks == torch."""
    import cv2
    import torch
    import torch.nn.functional as F

    from export.graphs import BoxDecoder
    from export.sam_vit import SamModel, export
    from litemedsam.models.registry import MODELS, write_manifest
    from litemedsam.models.segmenter import SamSegmenter, make_segmenter
    from litemedsam.core.transforms import SAM_PIXEL_MEAN, SAM_PIXEL_STD

    torch.manual_seed(0)
    model = SamModel(**SMALL_SAM).eval()
    export(model, tmp_path, prefix="sam_vit_b")
    write_manifest(MODELS["sam-vit-b"], tmp_path)
    seg = make_segmenter("sam-vit-b", model_dir=tmp_path)
    assert isinstance(seg, SamSegmenter) and seg.size == 256
    image = dev_image(dev_data)
    h, w = image.shape[:2]
    boxes = np.array([[100, 80, 400, 300], [20, 30, 200, 420]], np.float64)
    emb = seg.encode(image)
    masks = seg.predict(emb, emb.frame.boxes_to_model(boxes))

    nh, nw = int(h * 256 / max(h, w) + 0.5), int(w * 256 / max(h, w) + 0.5)
    small = (
        cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA).astype(np.float32) - SAM_PIXEL_MEAN
    ) / SAM_PIXEL_STD
    x = np.zeros((1, 3, 256, 256), np.float32)
    x[0, :, :nh, :nw] = small.transpose(2, 0, 1)
    with torch.no_grad():
        logits, _ = BoxDecoder(model)(model.image_encoder(torch.from_numpy(x)),
                                      torch.from_numpy((boxes * 256 / max(h, w)).astype(np.float32)))
        up = F.interpolate(logits[:, :, :round(nh / 4), :round(nw / 4)], (h, w), mode="bilinear", align_corners=False)
    ref = (up[:, 0] > 0).numpy()
    for m, r in zip(masks, ref):
        assert 2 * (m & r).sum() / max(1, m.sum() + r.sum()) > 0.99
