"""Re-export LiteMedSAM from the real checkpoint: strict loading, parity with torch, registered checksums."""
import importlib.util

import pytest

from litemedsam.registry import CHECKPOINTS, MODELS, ModelError, verified_path


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

    report = exporter.main(["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path)])
    for graph in report["graphs"]:
        for name, out in graph["outputs"].items():
            assert out["max_abs_error"] < 1e-3, (graph["graph"], name)
            if "mask_dice" in out:
                assert out["mask_dice"] >= 0.999
    assert report["chain"]["mask_dice"] >= 0.999
    spec = MODELS["litemedsam"]
    assert report["sha256"] == {spec.encoder.file: spec.encoder.sha256, spec.decoder.file: spec.decoder.sha256}
