"""A model family is one place: its registry record names the runtime class and the exporter, and says whether
it takes boxes; `litemedsam models export` builds any registered model through it."""
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from litemedsam.models.registry import FAMILIES, MODELS, load_object

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_names_its_runtime_and_exporter(name):
    from litemedsam.models.segmenter import runtime_class

    spec = MODELS[name]
    cls = runtime_class(spec)
    takes_boxes = all(hasattr(cls, m) for m in ("frame", "encode", "predict"))  # segmenter.BoxSegmenter
    assert takes_boxes == spec.takes_boxes and hasattr(cls, "segment") != spec.takes_boxes  # or ImageSegmenter
    assert spec.build.startswith("litemedsam models ")
    if importlib.util.find_spec("torch") is not None:
        params = list(inspect.signature(load_object(spec.exporter)).parameters)
        assert params[:3] == ["spec", "checkpoint", "out_dir"]


def test_families_are_declared_once():
    assert {spec.family for spec in MODELS.values()} == set(FAMILIES)


def test_models_export_builds_a_user_supplied_model_end_to_end(tmp_path):
    """A (small, random) SAM ViT checkpoint -> `litemedsam models export --model sam-vit-b` -> infer with it."""
    torch = pytest.importorskip("torch")
    from export.sam_vit import SamModel

    torch.manual_seed(0)
    checkpoint = tmp_path / "sam_small.pth"
    torch.save(
        SamModel(img_size=256, width=64, depth=4, heads=4, window=7, global_blocks=(1, 3)).state_dict(), checkpoint
    )
    env = {**os.environ, "LITEMEDSAM_WORK_DIR": str(tmp_path / "models")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True,  # noqa: E731
                                       text=True, cwd=REPO, env=env)
    done = run("models", "export", "--model", "sam-vit-b", "--checkpoint", checkpoint, "--img-size", 256)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "models" / "sam-vit-b.manifest.json").is_file()
    done = run("models", "export", "--model", "sam-vit-b", "--checkpoint", checkpoint, "--point-value", "1-0")
    assert done.returncode != 0 and "sam-vit-b takes no --point-value" in done.stderr
    (tmp_path / "in").mkdir()
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)
    np.savez(tmp_path / "in" / "2DBox_CT_a.npz", imgs=image, boxes=np.array([[10, 10, 50, 40]]))
    done = run("infer", "-i", tmp_path / "in", "-o", tmp_path / "out", "--model", "sam-vit-b")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "out" / "2DBox_CT_a.npz")["segs"].shape == (60, 80)
