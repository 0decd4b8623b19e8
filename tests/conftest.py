import os
import time
from pathlib import Path

import pytest

from litemedsam.models.registry import MODELS, ModelError, dev_data_dir, verified_path

REPO = Path(__file__).resolve().parent.parent
DEV = dev_data_dir()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder of this test's (timing records, graph cache), not the real one."""
    from litemedsam.core import settings

    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("LITEMEDSAM_CACHE_DIR", str(folder))
    settings.cache_dir.cache_clear()  # a cached answer would point at the real cache
    yield folder
    settings.cache_dir.cache_clear()


def absent(message: str):
    """A test's data is not here: a failure where it must be (CI sets LITEMEDSAM_REQUIRE_DATA=1), else a skip."""
    if os.environ.get("LITEMEDSAM_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


def shared(relative: str) -> Path:
    """A file or folder of the real data beside the dev cases (``raw/...``, ``extra/...``, ``recist-dev/...``:
    ../shared/data, or the parent of $LITEMEDSAM_DEV_DATA), or ``absent``."""
    path = DEV.parent / relative
    if not path.exists():
        absent(f"{path} is absent (the real data: ../shared/data, or beside $LITEMEDSAM_DEV_DATA)")
    return path


@pytest.fixture(scope="session")
def dev_data() -> Path:
    """The real challenge-format dev cases (../shared/data/cvpr24-dev), or a skip saying so."""
    if not (DEV / "imgs").is_dir():
        absent(f"real dev cases not found at {DEV} (set LITEMEDSAM_DEV_DATA to their folder)")
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
    from litemedsam.models.segmenter import Segmenter

    return Segmenter(models_ready)


TIERS = {"test_docker.py": "docker", "test_install.py": "install", "test_browser.py": "browser",
         "test_browser_app.py": "browser", "test_cluster.py": "cluster",
         **dict.fromkeys(["test_export.py", "test_lora.py", "test_families.py", "test_promptless.py", "test_sam_vit.py",
                          "test_efficient_sam.py", "test_frame.py", "test_fit.py"], "export")}
NEEDS_MODELS_OR_DATA = {"models_ready", "dev_data"}  # a test using either is not fast: a fresh clone has neither


def pytest_collection_modifyitems(items):
    """Each test's tier (pytest.ini's markers): docker, install, browser and cluster by file; models when it uses the
    real models or the dev cases (the models_ready or dev_data fixture, directly or through another); export for
    the torch export files; fast otherwise: what passes on a fresh clone with no model and no data. `bash test.sh` runs
    all tiers; `bash test.sh -m fast` only the tests that need neither models nor a system service."""
    for item in items:
        tier = TIERS.get(item.path.name) or ("models" if NEEDS_MODELS_OR_DATA & set(item.fixturenames) else "fast")
        item.add_marker(getattr(pytest.mark, tier))


def wait_for_pause(flag, proc, seconds: float = 120) -> int:
    """The pid of the process paused mid-case (litemedsam.run.pause), once it has written the flag."""
    deadline = time.monotonic() + seconds
    while not (flag.is_file() and flag.read_text()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # polling for the event itself, not a guess at when it happens
    assert flag.is_file(), proc.communicate()[1] if proc.poll() is not None else "no case paused"
    return int(flag.read_text())
