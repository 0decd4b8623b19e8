"""EfficientSAM: our torch implementation loads checkpoints in the upstream layout, exports to ONNX that
agrees with torch, and runs through the segmenter. No real weights exist here: randomly initialised
models saved in the upstream format stand in (small sizes for speed; the layout is the full one)."""
import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch is not installed (pip install -e '.[export]')")

SMALL = dict(img_size=256, depth=2, neck=64, dec_heads=4, dec_mlp=128, iou_hidden=64)

# (key, shape) of the upstream EfficientSAM-Ti checkpoint (yformer/EfficientSAM, build_efficient_sam
# with width 192, 3 heads), read off its module definitions
UPSTREAM_TI = {
    "image_encoder.pos_embed": (1, 197, 192),
    "image_encoder.patch_embed.proj.weight": (192, 3, 16, 16),
    "image_encoder.blocks.11.attn.qkv.weight": (576, 192),
    "image_encoder.blocks.11.mlp.fc2.weight": (192, 768),
    "image_encoder.neck.0.weight": (256, 192, 1, 1),
    "image_encoder.neck.3.bias": (256,),
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": (2, 128),
    "prompt_encoder.invalid_points.weight": (1, 256),
    "prompt_encoder.bbox_bottom_right_embeddings.weight": (1, 256),
    "mask_decoder.transformer.layers.1.mlp.layers.0.0.weight": (2048, 256),
    "mask_decoder.transformer.layers.1.mlp.fc.weight": (256, 2048),
    "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": (128, 256),
    "mask_decoder.transformer.final_attn_token_to_image.out_proj.weight": (256, 128),
    "mask_decoder.transformer.norm_final_attn.weight": (256,),
    "mask_decoder.mask_tokens.weight": (4, 256),
    "mask_decoder.final_output_upscaling_layers.0.0.weight": (256, 64, 2, 2),
    "mask_decoder.final_output_upscaling_layers.0.1.weight": (64,),
    "mask_decoder.final_output_upscaling_layers.1.0.weight": (64, 32, 2, 2),
    "mask_decoder.output_hypernetworks_mlps.3.layers.1.0.weight": (256, 256),
    "mask_decoder.output_hypernetworks_mlps.3.fc.weight": (32, 256),
    "mask_decoder.iou_prediction_head.layers.1.0.weight": (256, 256),
    "mask_decoder.iou_prediction_head.fc.weight": (4, 256),
}


def test_state_dict_layout_is_upstreams():
    from export.efficient_sam import build

    state = build("ti").state_dict()
    for key, shape in UPSTREAM_TI.items():
        assert tuple(state[key].shape) == shape, key
    assert "pixel_mean" not in state  # upstream registers it as a non-persistent buffer
    # encoder: pos_embed, patch_embed (2), 12 blocks x 12, neck (6); prompt encoder: 5; decoder:
    # 2 transformer layers x 36 + final attention (8) and norm (2), 2 tokens, upscaling (6), 4 x 6 hypernetwork MLPs,
    # IoU head (6)
    assert len(state) == (1 + 2 + 12 * 12 + 6) + 5 + (2 * 36 + 10 + 2 + 6 + 4 * 6 + 6)
    assert build("s").state_dict()["image_encoder.blocks.0.attn.qkv.weight"].shape == (1152, 384)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A random small EfficientSAM saved as upstream does ({"model": state_dict}), then exported."""
    import torch

    from export.efficient_sam import build, export, load_model

    out = tmp_path_factory.mktemp("efficientsam")
    torch.manual_seed(3)
    torch.save({"model": build("ti", **SMALL).state_dict()}, out / "efficient_sam_vitt_small.pt")
    model = load_model(out / "efficient_sam_vitt_small.pt", "ti", **SMALL)
    report = export(model, out / "enc.onnx", out / "dec.onnx")
    return out, model, report


def test_torch_onnx_parity(small_model):
    _, _, report = small_model
    enc, dec = report["graphs"]
    assert enc["outputs"]["image_embeddings"]["max_abs_error"] < 1e-3
    assert dec["outputs"]["low_res_logits"]["max_abs_error"] < 1e-3
    assert dec["outputs"]["low_res_logits"]["mask_dice"] >= 0.999
    assert report["chain"]["mask_dice"] >= 0.999


def test_strict_loading_rejects_other_layouts(small_model, tmp_path):
    import torch

    from export.efficient_sam import build, load_model

    state = build("ti", **SMALL).state_dict()
    state["mask_decoder.output_upscaling.0.weight"] = state.pop("mask_decoder.final_output_upscaling_layers.0.0.weight")
    torch.save({"model": state}, tmp_path / "renamed.pt")
    with pytest.raises(RuntimeError, match="final_output_upscaling_layers"):
        load_model(tmp_path / "renamed.pt", "ti", **SMALL)


def small_spec(out, name="efficientsam-small"):
    from dataclasses import replace

    from litemedsam.models.registry import MODELS, ModelFile, write_manifest

    spec = replace(MODELS["efficientsam-ti"], name=name, image_size=SMALL["img_size"],
                   encoder=ModelFile("enc.onnx"), decoder=ModelFile("dec.onnx"))
    write_manifest(spec, out)
    return spec


def test_segmenter_matches_torch_on_a_real_image(small_model, dev_data):
    """EfficientSamSegmenter (host-side prompt scaling, padding to 6 points, best-of-three in the
    graph) against the torch modules fed as upstream's predict_masks would be."""
    import torch

    from export.efficient_sam import DecoderGraph, EncoderGraph
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods.pipeline import segment_2d
    from litemedsam.methods.propagation import Propagation
    from litemedsam.models.segmenter import EfficientSamSegmenter

    out, model, _ = small_model
    seg = EfficientSamSegmenter(small_spec(out), model_dir=out)
    case = load_case(dev_data / "imgs" / "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz")
    h, w = case.image.shape[:2]
    for prompt in ("box", "box+center"):
        emb = seg.encode(case.image)
        boxes = emb.frame.boxes_to_model(case.boxes)
        logits = seg.logits(emb, boxes, prompt)
        with torch.no_grad():
            image = torch.from_numpy(case.image.transpose(2, 0, 1)[None].astype(np.float32) / 255)
            feeds = seg.decoder_feeds(emb, boxes, prompt)
            points, labels = feeds["points"], feeds["point_labels"]
            assert labels[0, :3].tolist() == ([2, 3, -1] if prompt == "box" else [1, 2, 3])
            ref, _ = DecoderGraph(model)(EncoderGraph(model)(image), torch.from_numpy(points), torch.from_numpy(labels))
        assert np.abs(ref.numpy()[:, 0] - logits).max() < 1e-3
        labels_map = segment_2d(seg, case.image, case.boxes, how=Propagation(prompt=prompt))
        assert labels_map.shape == (h, w)
    # box scaling is the upstream one: x * 1024 / W, y * 1024 / H (here 256 for the small model)
    assert np.allclose(seg.frame(h, w).boxes_to_model([[0, 0, w, h]]), [[0, 0, 256, 256]])


def test_quantized_agrees_and_is_recorded(small_model, tmp_path, monkeypatch):
    """The quantization recipe on an EfficientSAM graph: it runs, and the int8 graph tracks the float one."""
    import onnxruntime  # noqa: F401

    from export.quantize import quantize_file
    from litemedsam.models.segmenter import EfficientSamSegmenter

    out, _, _ = small_model
    quantize_file(out / "enc.onnx", tmp_path / "enc.onnx")
    quantize_file(out / "dec.onnx", tmp_path / "dec.onnx")
    assert (tmp_path / "enc.onnx").stat().st_size < (out / "enc.onnx").stat().st_size
    ref = EfficientSamSegmenter(small_spec(out), model_dir=out)
    q = EfficientSamSegmenter(small_spec(tmp_path), model_dir=tmp_path)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
    boxes = np.array([[20, 30, 150, 160], [100, 20, 230, 190]])
    a = ref.logits(ref.encode(image), ref.frame(200, 240).boxes_to_model(boxes))
    b = q.logits(q.encode(image), q.frame(200, 240).boxes_to_model(boxes))
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.9, corr


def test_cli_export_needs_checkpoint():
    from click.testing import CliRunner

    from litemedsam.cli import main

    result = CliRunner().invoke(main, ["models", "export", "--model", "efficientsam-ti"])
    assert result.exit_code != 0 and "--checkpoint is required" in result.output
