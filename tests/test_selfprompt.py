"""Self-prompting heads: the classifier fit, its ONNX graph, and fit-head / infer --prompt self on real cases."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from litemedsam.methods.selfprompt import fit_logistic, self_prompts

REPO = Path(__file__).resolve().parent.parent


def test_logistic_fit_separates_and_matches_its_onnx_graph(tmp_path):
    pytest.importorskip("onnx")
    from litemedsam.methods.selfprompt import save_head
    from litemedsam.models.session import make_session

    rng = np.random.default_rng(0)
    direction = rng.normal(size=16)
    x = rng.normal(size=(4000, 16))
    y = (x @ direction + 0.3 > 0).astype(float)
    w, b = fit_logistic(x, y)
    assert (((x @ w + b) > 0) == (y > 0)).mean() > 0.97
    save_head(tmp_path / "h.onnx", w, b, {"model": "litemedsam", "k": 1})
    session = make_session(tmp_path / "h.onnx")
    emb = rng.normal(size=(1, 16, 5, 7)).astype(np.float32)
    (prob,) = session.run(None, {"image_embeddings": emb})
    expected = 1 / (1 + np.exp(-(np.einsum("c,chw->hw", w, emb[0]) + b)))
    assert np.abs(prob[0, 0] - expected).max() < 1e-4
    assert session.get_modelmeta().custom_metadata_map["model"] == "litemedsam"


def test_prompts_from_a_coarse_mask():
    mask = np.zeros((60, 80), np.uint8)
    mask[10:50, 20:70] = 1
    point, box = self_prompts(mask)
    assert 20 <= point[0] < 70 and 10 <= point[1] < 50
    assert box[0] <= 20 and box[1] <= 10 and box[2] >= 69 and box[3] >= 49  # erode 3x, dilate 5x: grows
    assert self_prompts(np.zeros((5, 5), np.uint8)) is None


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True, cwd=REPO, env=os.environ
    )


def test_fit_head_and_infer_without_boxes(models_ready, dev_data, tmp_path):
    pytest.importorskip("onnx")
    kvasir = sorted((dev_data / "imgs").glob("2DBox_Endoscopy_Kvasir_*.npz"))
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    for p in kvasir[:3]:
        (train / p.name).symlink_to(p)
    (test / kvasir[-1].name).symlink_to(kvasir[-1])
    volume = dev_data / "imgs" / "3DBox_MR_pyradiomics_breast1.npz"
    (test / volume.name).symlink_to(volume)
    done = cli("fit-head", train, "--gts", dev_data / "gts", "-o", tmp_path / "polyp.onnx")
    assert done.returncode == 0, done.stderr
    assert "fitted on 3 case(s)" in done.stdout
    done = cli("infer", "-i", test, "-o", tmp_path / "out", "--prompt", "self", "--head", tmp_path / "polyp.onnx")
    assert done.returncode == 1  # the 3D case fails alone
    assert f"ERROR {volume.name}: self-prompting" in done.stderr and "Traceback" not in done.stderr
    with np.load(tmp_path / "out" / kvasir[-1].name) as out, np.load(dev_data / "gts" / kvasir[-1].name) as gt:
        segs, gts = out["segs"], gt["gts"] > 0
    assert set(np.unique(segs)) <= {0, 1} and segs.any()
    assert 2 * ((segs > 0) & gts).sum() / ((segs > 0).sum() + gts.sum()) > 0.3
    done = cli("infer", "-i", test, "-o", tmp_path / "out2", "--prompt", "self")
    assert done.returncode == 2 and "--head" in done.stderr
