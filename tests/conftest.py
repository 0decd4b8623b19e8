import os
from pathlib import Path

import pytest

from litemedsam.registry import MODELS, ModelError, dev_data_dir, verified_path

REPO = Path(__file__).resolve().parent.parent
DEV = dev_data_dir()


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """The real challenge-format dev cases (../shared/data/cvpr24-dev), or a skip saying so."""
    if not (DEV / "imgs").is_dir():
        pytest.skip(f"real dev cases not found at {DEV} (set LITEMEDSAM_DEV_DATA to their folder)")
    return DEV


@pytest.fixture(scope="session")
def models_ready():
    """The registered ONNX models; a skip when absent, a failure when LITEMEDSAM_REQUIRE_MODELS=1 (CI)."""
    spec = MODELS["litemedsam"]
    try:
        for entry in spec.files:
            verified_path(entry, spec.build)
    except ModelError as e:
        if os.environ.get("LITEMEDSAM_REQUIRE_MODELS") == "1":
            pytest.fail(str(e))
        pytest.skip(f"{e}")
    return spec


@pytest.fixture(scope="session")
def segmenter(models_ready):
    from litemedsam.segmenter import Segmenter

    return Segmenter(models_ready)
