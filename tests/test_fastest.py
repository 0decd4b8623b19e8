"""The int8 encoder (export.quantize, pinned in the registry) and which encoder a machine runs
(litemedsam.models.fastest): float by default and under --exact, int8 only when opted in, timed per machine with
LITEMEDSAM_INT8=auto."""
import json

import numpy as np
import pytest

from litemedsam.models import fastest
from litemedsam.models.registry import get_model, model_files
from tests.test_router import chosen
from litemedsam.methods.router import Router


@pytest.fixture
def int8_ready(models_ready):
    spec = get_model("litemedsam-int8")
    model_files(spec, entries=spec.files)  # the pinned checksums (a ModelError fails the test)
    return spec


def plant(cache, **record):
    fastest._record_path().write_text(json.dumps({"litemedsam": record}))


def test_int8_twin_keeps_the_float_decoders(int8_ready):
    float_spec = get_model("litemedsam")
    assert int8_ready.encoder.file == "litemedsam_encoder.int8.onnx" and int8_ready.pinned
    assert (int8_ready.decoder, int8_ready.prompt_decoder) == (float_spec.decoder, float_spec.prompt_decoder)


def test_float_encoder_by_default_and_under_exact(int8_ready, cache, monkeypatch):
    monkeypatch.delenv("LITEMEDSAM_INT8", raising=False)
    router = Router.load()
    d = chosen(router.decide("2DBox_CT_x.npz"))
    assert d.model == "litemedsam" and "fails the accuracy gate" in d.encoder
    monkeypatch.setenv("LITEMEDSAM_INT8", "on")
    assert chosen(router.decide("2DBox_CT_x.npz")).model == "litemedsam-int8"
    exact = chosen(router.decide("2DBox_CT_x.npz", exact=True), exact=True)
    assert exact.model == "litemedsam" and exact.encoder == ""


@pytest.mark.parametrize("record, vnni, model, says", [
    (dict(float_s=0.60, int8_s=0.40, date="2026-11-30"), True, "litemedsam-int8", "1.50x faster"),
    (dict(float_s=0.50, int8_s=0.48, date="2026-11-30"), True, "litemedsam", "only 1.04x"),
    (dict(float_s="x", int8_s=0.4), True, "litemedsam", "damaged"),
    (dict(float_s=0.60, int8_s=0.40), False, "litemedsam", "no VNNI"),
])
def test_auto_follows_this_machines_record(int8_ready, cache, monkeypatch, record, vnni, model, says):
    monkeypatch.setenv("LITEMEDSAM_INT8", "auto")
    monkeypatch.setattr(fastest, "has_vnni", lambda: vnni)
    plant(cache, **record)
    choice = fastest.choose("litemedsam", measure=False)
    assert (choice.model, says in choice.reason) == (model, True), choice.reason


def test_auto_times_once_and_keeps_the_record(int8_ready, cache, monkeypatch):
    monkeypatch.setenv("LITEMEDSAM_INT8", "auto")
    monkeypatch.setattr(fastest, "has_vnni", lambda: True)
    assert "not timed" in fastest.choose("litemedsam", measure=False).reason
    first = fastest.choose("litemedsam")
    record = json.loads(fastest._record_path().read_text())["litemedsam"]
    assert record["float_s"] > 0 and record["int8_s"] > 0 and "timed" in first.reason
    timed = []
    monkeypatch.setattr(fastest, "time_encoders", lambda *a, **k: timed.append(1) or {})
    assert fastest.choose("litemedsam") == first and not timed  # read back, not timed again


def test_int8_encoder_is_close_to_float_on_a_real_case(int8_ready, dev_data):
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.models.segmenter import Segmenter

    case = load_case(dev_data / "imgs" / "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz")
    masks = []
    for name in ("litemedsam", "litemedsam-int8"):
        seg = Segmenter(name)
        emb = seg.encode(case.image)
        masks.append(seg.predict(emb, emb.frame.boxes_to_model(case.boxes)))
    a, b = masks
    assert 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()) > 0.98  # bench_int8 measured 0.999 on this case
