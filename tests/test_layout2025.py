"""The 2025 challenge layout: boxes as an object array of dicts, read by a loader that runs nothing from the
file; the given z_mid is where propagation starts; clicks (read the same way) in their order, with the previous
prediction they correct."""
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import DEV, shared
from litemedsam.io.formats.challenge import load_case
from litemedsam.core.errors import CaseError

EXTRA = DEV.parent / "extra"
BOX = {"z_min": 2, "z_max": 7, "z_mid": 3, "z_mid_x_min": 10, "z_mid_y_min": 12, "z_mid_x_max": 30,
       "z_mid_y_max": 40}


def write_case(path, boxes, imgs=None, **extra):
    imgs = np.zeros((10, 48, 48), np.uint8) if imgs is None else imgs
    np.savez(path, imgs=imgs, boxes=np.array(boxes, dtype=object), spacing=np.ones(3), **extra)
    return path


class RunsCommand:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


class Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def test_dict_boxes_become_boxes_and_start_slices(tmp_path):
    case = load_case(write_case(tmp_path / "CT_x.npz", [BOX, {**BOX, "z_mid": np.int64(9), "z_max": np.int64(8)}]))
    assert case.dim == "3D" and case.boxes.tolist() == [[10, 12, 2, 30, 40, 7], [10, 12, 2, 30, 40, 8]]
    assert case.starts == [3, 8] and any("z_mid 9 is outside" in w for w in case.warnings)


@pytest.mark.parametrize("payload, message", [
    (lambda t: [RunsCommand(t)], r"names (posix|os)\.system"),
    (lambda t: [Evaluates()], r"names builtins\.eval"),
    (lambda t: [{**BOX, "z_min": "2"}], r"'z_min' must name a finite number"),
    (lambda t: [{**BOX, "z_min": float("nan")}], r"'z_min' must name a finite number"),
    (lambda t: [[1, 2, 3, 4, 5, 6]], r"must be a 1-D array of dicts"),
    (lambda t: [[1, 2], {"z_min": 1}], r"item 0 must be a dict of numbers"),
    (lambda t: [{"z_min": 1}], r"lacks z_max"),
])
def test_hostile_or_malformed_records_are_refused_and_nothing_runs(tmp_path, payload, message):
    target = tmp_path / "PWNED"
    path = write_case(tmp_path / "CT_bad.npz", payload(target))
    with pytest.raises(CaseError, match=message):
        load_case(path)
    assert not target.exists()


def test_pickled_data_outside_boxes_is_still_never_loaded(tmp_path):
    path = tmp_path / "CT_x.npz"
    np.savez(path, imgs=np.array([RunsCommand(tmp_path / "PWNED")], dtype=object), boxes=np.array([BOX], dtype=object))
    with pytest.raises(CaseError, match="'imgs' holds Python objects"):
        load_case(path)
    assert not (tmp_path / "PWNED").exists()


def test_dict_boxes_with_a_2d_image_are_refused(tmp_path):
    with pytest.raises(CaseError, match=r"colour image, not a DxHxW volume"):
        load_case(write_case(tmp_path / "CT_x.npz", [BOX], imgs=np.zeros((48, 48, 3), np.uint8)))


def test_clicks_come_in_their_order_with_the_previous_prediction_and_the_spacing(tmp_path):
    clicks = [{"fg": [[1, 2, 3], [4, 5, 6]], "bg": [[7, 8, 9]]}, {"fg": [], "bg": []}]
    prev = np.zeros((10, 48, 48), np.uint8)
    prev[1, 2, 3] = 1
    case = load_case(write_case(tmp_path / "CT_x.npz", [BOX, BOX], clicks=np.array(clicks, dtype=object),
                                clicks_order=np.array([["fg", "bg", "fg"], []], dtype=object), prev_pred=prev))
    assert case.clicks == [[("fg", (1, 2, 3)), ("bg", (7, 8, 9)), ("fg", (4, 5, 6))], []]
    assert np.array_equal(case.prev, prev) and not case.notices
    from litemedsam.io import formats

    assert formats.spacing(case) == (1.0, 1.0, 1.0)
    # an order that does not count the clicks: foreground first
    case = load_case(write_case(tmp_path / "CT_y.npz", [BOX], clicks=np.array(clicks[:1], dtype=object),
                                clicks_order=np.array([["bg"]], dtype=object)))
    assert [k for k, _ in case.clicks[0]] == ["fg", "fg", "bg"] and case.prev is None
    # a box-free case of clicks (the 2025 layout has them) is a case; without boxes nor clicks it is not
    np.savez(tmp_path / "CT_z.npz", imgs=np.zeros((10, 48, 48), np.uint8), clicks=np.array(clicks[:1], dtype=object))
    assert len(load_case(tmp_path / "CT_z.npz").boxes) == 0
    np.savez(tmp_path / "CT_w.npz", imgs=np.zeros((10, 48, 48), np.uint8))
    with pytest.raises(CaseError, match="missing array"):
        load_case(tmp_path / "CT_w.npz")


def test_real_2025_cases_segment_from_their_z_mid(models_ready, tmp_path):
    """The dev CT lesion in the 2025 layout: same label map quality as its 2024 form (DSC > 0.9)."""
    name = "CT_Lesion_000001_02_01_008-023_2025format.npz"
    shared(f"extra/{name}")
    from evaluation.compute_metrics import case_metrics
    from tests.test_infer_real import cli

    inp = tmp_path / "in"
    inp.mkdir()
    (inp / name).symlink_to(EXTRA / name)
    done = cli("infer", "-i", inp, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    segs = np.load(tmp_path / "out" / name)["segs"]
    with np.load(EXTRA / name.replace(".npz", "_gts.npz")) as gt:
        dsc, nsd = case_metrics(gt["gts"], segs, gt["spacing"])
    assert dsc > 0.9 and nsd > 0.9
    assert load_case(EXTRA / name).starts == [8]


def test_2025_names_give_their_modality_and_2024_contradictions_are_errors(tmp_path):
    from litemedsam.methods.router import Router

    router = Router.load()
    assert router.decide("CT_Lesion_000001.npz", dim="3D").modality == "CT"
    assert router.decide("Lesion_000001.npz", dim="3D").modality is None  # not a modality: the default rule
    path = tmp_path / "3DBox_CT_rgb.npz"
    np.savez(path, imgs=np.zeros((64, 64, 3), np.uint8), boxes=np.array([[1, 1, 0, 9, 9, 2]]))
    with pytest.raises(CaseError, match="colour image, not a DxHxW volume"):
        load_case(path)


def test_2025_file_gives_the_masks_of_the_same_boxes_in_the_2024_layout(models_ready, tmp_path):
    """Where z_mid is the middle of z_min..z_max, the 2025 file and a 2024 file with the same boxes give
    identical label maps (the dev CT lesion: z 5..11, z_mid 8)."""
    name = "CT_Lesion_000001_02_01_008-023_2025format.npz"
    shared(f"extra/{name}")
    from tests.test_infer_real import cli

    case = load_case(EXTRA / name)
    assert case.starts == [int(b[2] + (b[5] - b[2]) // 2) for b in case.boxes]
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / name).symlink_to(EXTRA / name)
    np.savez(inp / "3DBox_CT_Lesion_2024layout.npz", imgs=case.image, boxes=case.boxes, spacing=np.ones(3))
    done = cli("infer", "-i", inp, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    a = np.load(tmp_path / "out" / name)["segs"]
    b = np.load(tmp_path / "out" / "3DBox_CT_Lesion_2024layout.npz")["segs"]
    assert a.any() and np.array_equal(a, b)


def with_pickle(path, pickled: bytes):
    """A 2025-layout case whose ``boxes`` member is the given pickle behind NumPy's object-array header."""
    import zipfile

    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    write_case(path, [BOX])
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "boxes.npy"}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("boxes.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + pickled)
    return path


RECONSTRUCT = b"\x80\x03cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"


@pytest.mark.parametrize("pickled, message", [
    # _reconstruct(ndarray, (100000000,), b'b'): NumPy would allocate the array before any check
    (RECONSTRUCT + b"J\x00\xe1\xf5\x05\x85C\x01b\x87R.", r"builds an array in a way NumPy never writes"),
    # a proper empty array whose state asks for 10^8 items of a sub-array dtype
    (RECONSTRUCT + b"K\x00\x85C\x01b\x87R(K\x01J\x00\xe1\xf5\x05\x85cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R"
                   b"(K\x03X\x01\x00\x00\x00|(cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87RJ\x00\xe1\xf5\x05\x85"
                   b"\x86NNJ\x00\x08\x00\x00K\x01K\x00tb\x89]tb.", r"asks for dtype 'V8'"),
    # one memoised dict referenced 10^6 times: a million boxes from 2 MB
    (__import__("pickle").dumps([BOX] * 1000000, protocol=3), r"holds 1000000 records; a case holds at most 65535"),
])
def test_small_pickles_never_allocate_much(tmp_path, pickled, message):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CaseError, match=message):
        load_case(with_pickle(tmp_path / "CT_bomb.npz", pickled))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 << 10  # KiB: under 200 MB more


def test_more_boxes_than_labels_can_hold_are_refused_up_front(tmp_path):
    path = tmp_path / "2DBox_CT_many.npz"
    np.savez(path, imgs=np.zeros((8, 8, 3), np.uint8), boxes=np.tile([[0, 0, 4, 4]], (65536, 1)))
    with pytest.raises(CaseError, match=r"65536 boxes; a case holds at most 65535 objects"):
        load_case(path)


class Shell:
    """A pickled object whose unpickling would run a shell command: never run, refused."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/litemedsam-pwned",))


def test_clicks_are_read_as_the_organisers_write_them(tmp_path):
    """Issue 27, item 1: clicks per class ({'fg': [[z, y, x], ...], 'bg': [...]}, numpy integers as the evaluation
    script's np.argwhere gives them), their order, and the previous prediction are read and checked."""
    clicks = np.array([{"fg": [[np.int64(3), np.int64(20), np.int64(15)]], "bg": [[4, 1, 1]]}], dtype=object)
    order = np.array([["fg", "bg", None]], dtype=object)
    case = load_case(write_case(tmp_path / "CT_x.npz", [BOX], clicks=clicks, clicks_order=order,
                                prev_pred=np.zeros((10, 48, 48), np.uint8)))
    assert (
        case.clicks == [[("fg", (3, 20, 15)), ("bg", (4, 1, 1))]]
        and len(case.boxes) == 1
        and case.prev.shape == (10, 48, 48)
    )


@pytest.mark.parametrize("extra, message", [
    (dict(clicks=np.array([{"fg": [[3, 20, 99]], "bg": []}], dtype=object)), r"outside the image \(10 x 48 x 48"),
    (dict(clicks=np.array([{"fg": [[3.5, 20, 9]], "bg": []}], dtype=object)), "3 non-negative integers"),
    (dict(clicks=np.array([{"fg": [[3, -1, 9]], "bg": []}], dtype=object)), "3 non-negative integers"),
    (dict(clicks=np.array([{"fg": [[3, 2]], "bg": []}], dtype=object)), "3 non-negative integers"),
    (dict(clicks=np.array([{"left": [[3, 2, 1]]}], dtype=object)), "'fg' and 'bg'"),
    (dict(clicks=np.array([{"fg": [[Shell(), 1, 1]]}], dtype=object)), "names posix.system|names os.system"),
    (dict(clicks_order=np.array([["fg", "rm -rf"]], dtype=object)), "'fg', 'bg' or None"),
    (dict(prev_pred=np.zeros((10, 48, 47), np.uint8)), r"prev_pred' must be an integer label map"),
    (dict(prev_pred=np.zeros((10, 48, 48), np.float32)), r"prev_pred' must be an integer label map"),
])
def test_hostile_or_broken_clicks_are_refused(tmp_path, extra, message):
    with pytest.raises(CaseError, match=message):
        load_case(write_case(tmp_path / "CT_x.npz", [BOX], **extra))
    assert not Path("/tmp/litemedsam-pwned").exists()


def test_clicks_that_repeat_one_list_through_the_pickle_memo_are_counted_whole(tmp_path):
    """Issue 34, C14/T36: a 151 KB file whose `clicks` reference one dict of 10,000 clicks 65,535 times passed every
    per-item check and took 3 GiB. Clicks are counted over all classes before any is copied."""
    import resource

    one = {"fg": [[1, 2, 3]] * 10000, "bg": []}
    clicks = np.empty(65535, dtype=object)
    clicks[:] = [one] * 65535  # one dict, memoised by the pickle
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = write_case(tmp_path / "CT_bomb.npz", [BOX], clicks=clicks)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CaseError, match=r"'clicks' holds 655350000 clicks in all; a case takes at most 1000"):
        load_case(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 << 10  # KiB: under 200 MB more
    order = np.empty(2, dtype=object)
    order[:] = [["fg"] * 1500] * 2
    with pytest.raises(CaseError, match=r"'clicks_order' holds 3000 clicks in all"):
        load_case(write_case(tmp_path / "CT_orders.npz", [BOX], clicks_order=order))


@pytest.mark.parametrize("extra, message", [
    (dict(clicks=np.array([[3, 20, 9]])), r"'clicks' must be an object array of one dict per class .* int64 array"),
    (dict(clicks=np.array([{"fg": [[3, 20, 9]], "bg": []}], dtype=object), clicks_order=np.array([["up"]])),
     r"'clicks_order' must list 'fg', 'bg' or None per class"),
])
def test_clicks_of_the_wrong_kind_are_refused_with_a_message(tmp_path, extra, message):
    """Issue 34, C03/T37: `clicks` as an integer array gave an internal AttributeError (and a 500 on upload)."""
    with pytest.raises(CaseError, match=message):
        load_case(write_case(tmp_path / "CT_x.npz", [BOX], **extra))


def test_the_organisers_orders_of_equal_length_are_read():
    """Their clicks_order: lists that NumPy turns into a 2-D str array when every class has as many clicks."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        clicks = np.array([{"fg": [[3, 20, 9]], "bg": [[4, 1, 1]]}], dtype=object)
        case = load_case(
            write_case(Path(tmp) / "CT_x.npz", [BOX], clicks=clicks, clicks_order=np.array([["bg", "fg"]]))
        )
    assert case.clicks == [[("bg", (4, 1, 1)), ("fg", (3, 20, 9))]]


@pytest.mark.parametrize("dtype, stray", [(np.uint16, 300), (np.int8, -1), (np.int32, 70000), (np.uint8, 9),
                                          (np.uint64, 2 ** 64 - 1)])
def test_prev_pred_labels_that_are_no_object_of_the_case_become_background(tmp_path, dtype, stray):
    """Issue 34, C42 and C22-C24/C38: a one-box case whose prev_pred held label 300 wrote label 300 to the output.
    Labels that are none of the case's objects (negative, past them) are taken as background, and said."""
    prev = np.zeros((10, 48, 48), dtype)
    prev[2:4, 10:20, 10:20] = 1
    prev[8, 40:45, 40:45] = stray
    clicks = np.array([{"fg": [[3, 20, 15]], "bg": []}], dtype=object)
    case = load_case(write_case(tmp_path / "CT_x.npz", [BOX], clicks=clicks, prev_pred=prev))
    assert case.prev.max() == 1 and case.prev[8].max() == 0 and (case.prev == 1).sum() == 200
    assert any(f"labels that are none of its 1 objects ({stray})" in w for w in case.warnings), case.warnings


@pytest.mark.parametrize("mm", [[1e-300, 1.0, 1.0], [5e-324, 5e-324, 5e-324], [1.0, 1.0, 1e9]])
def test_a_spacing_that_is_no_spacing_is_ignored_and_said(tmp_path, mm):
    """Issue 34, C31/C32: clicks with spacing 1e-300 or 5e-324 gave an internal IndexError."""
    from litemedsam.io import formats

    path = write_case(tmp_path / "CT_x.npz", [BOX], clicks=np.array([{"fg": [[3, 20, 15]], "bg": []}], dtype=object))
    with np.load(path, allow_pickle=True) as data:
        arrays = dict(data)
    arrays["spacing"] = np.array(mm)
    np.savez(path, **arrays)
    case = load_case(path)
    assert formats.spacing(case) is None and any("'spacing' is not 3 numbers of mm" in w for w in case.warnings)
