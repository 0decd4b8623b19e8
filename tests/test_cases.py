import numpy as np
import pytest

from litemedsam.io.cases import CaseError, label_dtype, modality

from litemedsam.io.formats.challenge import load_case, save_segmentation


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_valid_2d_and_3d(tmp_path):
    c = load_case(
        write(tmp_path / "2DBox_CT_x.npz", imgs=np.zeros((20, 30, 3), np.uint8), boxes=np.array([[1, 2, 10, 12]]))
    )
    assert c.dim == "2D" and c.boxes.tolist() == [[1, 2, 10, 12]] and not c.warnings
    c = load_case(write(tmp_path / "3DBox_MR_x.npz", imgs=np.zeros((4, 20, 30), np.uint8),
                        boxes=np.array([[1, 2, 0, 10, 12, 3]]), spacing=np.ones(3)))
    assert c.dim == "3D"


def test_modality_from_name():
    assert modality("2DBox_CT_MedScribble_x.npz") == "CT"
    assert modality("3DBox_MR_BraTS_1.npz") == "MR"
    assert modality("scan.npz") is None


@pytest.mark.parametrize("content,needle", [
    (b"this is not a zip", "not a valid .npz file \\(it is not a zip archive\\)"),
    (b"PK\x03\x04truncated", "not a valid .npz"),
    (b"", "not a valid .npz"),
])
def test_unreadable_files(tmp_path, content, needle):
    p = tmp_path / "2DBox_CT_bad.npz"
    p.write_bytes(content)
    with pytest.raises(CaseError, match=needle):
        load_case(p)


@pytest.mark.parametrize("arrays,needle", [
    (dict(imgs=np.zeros((5, 5, 3), np.uint8)), "missing array"),
    (dict(boxes=np.zeros((1, 4))), "missing array"),
    (dict(imgs=np.zeros((5, 5, 3), np.uint8), boxes=np.zeros((2, 5))), "4 \\(2D\\) or 6 \\(3D\\)"),
    (dict(imgs=np.zeros((5, 5, 3), np.uint8), boxes=np.zeros((1, 6))), "name says 2D"),
    (dict(imgs=np.zeros((5, 5, 3), np.uint8), boxes=np.array([[0, 0, np.nan, 3]])), "NaN"),
    (dict(imgs=np.zeros((5, 5, 3), np.uint8), boxes=np.array(["a", "b", "c", "d"])), "numeric"),
    (dict(imgs=np.zeros((5, 5, 7), np.uint8), boxes=np.zeros((1, 4))), "HxW or HxWx3"),
    (dict(imgs=np.full((5, 5, 3), 300.0), boxes=np.zeros((1, 4))), "0-255"),
    (dict(imgs=np.zeros((0, 5, 3), np.uint8), boxes=np.zeros((1, 4))), "empty"),
])
def test_malformed_cases_name_the_problem(tmp_path, arrays, needle):
    with pytest.raises(CaseError, match=needle):
        load_case(write(tmp_path / "2DBox_CT_bad.npz", **arrays))


def test_3d_needs_a_volume(tmp_path):
    with pytest.raises(CaseError, match="DxHxW"):
        load_case(write(tmp_path / "3DBox_CT_bad.npz", imgs=np.zeros((5, 5), np.uint8), boxes=np.zeros((1, 6))))


def test_npy_and_corrupt_deflate_data(tmp_path):
    p = tmp_path / "2DBox_CT_npy.npz"
    with open(p, "wb") as handle:
        np.save(handle, np.zeros((4, 4)))
    with pytest.raises(CaseError, match="single array"):
        load_case(p)
    good = tmp_path / "good.npz"
    np.savez_compressed(good, imgs=np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8),
                        boxes=np.zeros((1, 4)))
    data = bytearray(good.read_bytes())
    data[200:260] = bytes(60)  # damage the compressed stream, keep the zip directory intact
    bad = tmp_path / "2DBox_CT_deflate.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CaseError, match="not a readable"):
        load_case(bad)


def test_pickled_objects_are_refused(tmp_path):
    p = tmp_path / "2DBox_CT_pickle.npz"
    np.savez(p, imgs=np.array([object()], dtype=object), boxes=np.zeros((1, 4)))
    with pytest.raises(CaseError, match="Python objects"):
        load_case(p)


def test_boxes_are_clipped_or_skipped_with_warnings(tmp_path):
    c = load_case(write(tmp_path / "2DBox_CT_b.npz", imgs=np.zeros((20, 30), np.uint8),
                        boxes=np.array([[-5, 2, 40, 12], [50, 50, 60, 60], [10, 10, 5, 15], [1, 1, 2, 2]])))
    assert c.boxes[0].tolist() == [0, 2, 29, 12]
    assert c.skipped == [2, 3]
    assert len(c.warnings) == 3 and "clipped" in c.warnings[0] and "outside" in c.warnings[1]
    assert "min > max" in c.warnings[2]


def test_float_images_in_range_and_grey_2d_are_accepted(tmp_path):
    c = load_case(write(tmp_path / "2DBox_US_f.npz", imgs=np.full((8, 8), 12.4), boxes=np.array([1, 1, 5, 5])))
    assert c.image.dtype == np.uint8 and c.image.shape == (8, 8) and c.boxes.shape == (1, 4)


def test_no_boxes_is_valid(tmp_path):
    c = load_case(write(tmp_path / "2DBox_CT_none.npz", imgs=np.zeros((8, 8, 3), np.uint8), boxes=np.zeros((0, 4))))
    assert c.boxes.shape == (0, 4)


def test_label_dtype():
    assert label_dtype(255) == np.uint8 and label_dtype(256) == np.uint16


def test_atomic_save_leaves_no_temporary(tmp_path):
    target = tmp_path / "2DBox_CT_x.npz"
    save_segmentation(target, np.ones((3, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert np.load(target)["segs"].sum() == 9
