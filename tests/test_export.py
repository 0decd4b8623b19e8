"""Re-export LiteMedSAM from the real checkpoint: strict loading, parity with torch, registered checksums."""
import importlib.util

import pytest

from litemedsam.models.registry import CHECKPOINTS, MODELS, ModelError, verified_path


@pytest.fixture(scope="module")
def checkpoint():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (pip install -e '.[export]')")
    try:
        return verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch")
    except ModelError as e:
        pytest.skip(str(e))


def test_export_matches_torch_and_registry(checkpoint, tmp_path):
    from export import litemedsam as exporter

    report = exporter.export_model(MODELS["litemedsam"], checkpoint, tmp_path)
    for graph in report["graphs"]:
        for name, out in graph["outputs"].items():
            assert out["max_abs_error"] < 1e-3, (graph["graph"], name)
            if "mask_dice" in out:
                assert out["mask_dice"] >= 0.999
    assert report["chain"]["mask_dice"] >= 0.999
    spec = MODELS["litemedsam"]
    assert report["sha256"] == {e.file: e.sha256 for e in spec.files}


def test_prompt_decoder_with_box_corners_equals_box_decoder(models_ready):
    """The general decoder given a box as corner points 2/3 and no mask reproduces the box decoder."""
    import numpy as np

    from litemedsam.models.registry import model_paths
    from litemedsam.models.session import make_session

    enc, dec, gen = (make_session(p) for p in model_paths(models_ready, entries=models_ready.files))
    rng = np.random.default_rng(0)
    image = rng.random((1, 3, 256, 256), dtype=np.float32)
    (emb,) = enc.run(None, {"image": image})
    boxes = np.array([[30, 40, 150, 160], [5, 5, 60, 200]], dtype=np.float32)
    a, _ = dec.run(None, {"image_embeddings": emb, "boxes": boxes})
    b, _ = gen.run(
        None,
        {
            "image_embeddings": emb,
            "point_coords": boxes.reshape(2, 2, 2),
            "point_labels": np.array([[2, 3], [2, 3]], np.float32),
            "mask_input": np.zeros((2, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(2, np.float32),
        },
    )
    assert np.abs(a - b).max() < 1e-3


def test_factored_attention_is_the_same_function():
    """Attention.few_queries / few_keys (the fast decoder's arrangements) against forward(), with the
    image side shared by all prompts (batch 1) or per prompt, and non-zero biases."""
    torch = pytest.importorskip("torch")
    from export.two_way import Attention

    torch.manual_seed(0)
    attn = Attention(32, 4, 2).eval()
    for p in attn.parameters():
        p.data.normal_(0, 0.3)
    tokens, image, shared = torch.randn(3, 7, 32), torch.randn(3, 50, 32), torch.randn(1, 50, 32)
    with torch.no_grad():
        for img in (image, shared):
            ref = attn(tokens, img, img + 1)
            assert torch.allclose(attn.few_queries(tokens, img, img + 1), ref, atol=1e-5)
            ref = attn(img, tokens, tokens + 1)
            assert ref.shape == (3, 50, 32)
            assert torch.allclose(attn.few_keys(img, tokens, tokens + 1), ref, atol=1e-5)
        assert torch.allclose(attn.few_keys(shared, tokens, tokens + 1, shared_queries=True),
                              attn(shared, tokens, tokens + 1), atol=1e-5)
