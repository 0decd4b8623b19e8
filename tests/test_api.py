"""The Python API (litemedsam.api): the README's example runs, and it gives infer's masks."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import litemedsam
from litemedsam.core.errors import CaseError

from conftest import REPO, shared

CASE_2D = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"
CASE_3D = "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"


def test_readme_example_runs(models_ready, dev_data, capsys):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):text.index("## In the browser")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code.replace("../shared/data/cvpr24-dev", str(dev_data)), "README", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("(13, ") and "[0 1]" in out[0]
    assert out[1].startswith("(2, 529, 622)")


def test_segment_equals_infer(models_ready, dev_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in (CASE_2D, CASE_3D):
        (folder / name).symlink_to(dev_data / "imgs" / name)
    done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", folder, "-o", tmp_path / "out"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    for name, modality in ((CASE_2D, "Endoscopy"), (CASE_3D, "CT")):
        with np.load(dev_data / "imgs" / name) as case:
            labels = litemedsam.segment(case["imgs"], case["boxes"], modality=modality)
        expected = np.load(tmp_path / "out" / name)["segs"]
        assert labels.dtype == expected.dtype and np.array_equal(labels, expected), name
    record = {c["case"]: c for c in json.loads((tmp_path / "out" / "run.json").read_text())["cases"]}
    for name in (CASE_2D, CASE_3D):  # each object's confidence: the decoder's mean predicted IoU
        scores = record[name]["confidence"]
        assert set(scores) == {"1"} and 0.5 < scores["1"] <= 1.05, scores
    with np.load(dev_data / "imgs" / CASE_2D) as case:
        _, scores = litemedsam.segment(case["imgs"], case["boxes"], scores=True)
    assert scores == {1: record[CASE_2D]["confidence"]["1"]}


def test_predictor_gives_the_exact_masks_and_scores(models_ready, dev_data):
    with np.load(dev_data / "imgs" / CASE_2D) as case:
        image, boxes = case["imgs"], case["boxes"]
    predictor = litemedsam.Predictor()
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(boxes)
    exact = litemedsam.segment(image, boxes, exact=True)
    assert masks.shape == (len(boxes), *image.shape[:2]) and np.array_equal(masks[0], exact == 1)
    assert scores.shape == (len(boxes),) and 0.5 < scores[0] <= 1.05 and logits.shape == (len(boxes), 256, 256)


def test_predictor_takes_points_and_its_own_logits_back(models_ready, dev_data):
    """As segment-anything's SamPredictor: a box with a point off the object and the box's logits fed back gives
    a smaller mask than the box alone, a point on it a mask as large; bad points are refused with their shape."""
    with np.load(dev_data / "imgs" / CASE_2D) as case:
        image, boxes = case["imgs"], case["boxes"]
    predictor = litemedsam.Predictor()
    predictor.set_image(image)
    masks, _, logits = predictor.predict(boxes)
    ys, xs = np.nonzero(masks[0])
    inside = [[xs[len(xs) // 2], ys[len(ys) // 2]]]
    on, on_score, _ = predictor.predict(boxes, points=[inside], point_labels=[[1]], mask_input=logits)
    off, _, _ = predictor.predict(boxes, points=[inside], point_labels=[[0]], mask_input=logits)
    dice = 2 * (on[0] & masks[0]).sum() / (on[0].sum() + masks[0].sum())
    assert dice > 0.9 and on_score[0] > 0.5 and off[0].sum() < on[0].sum()
    for bad, message in ((dict(points=[[1, 2, 3]]), r"points must be a finite \(N, P, 2\)"),
                         (dict(points=[[-5, 2]]), "outside the 622 x 529 image"),
                         (dict(points=[[1, 2]], point_labels=[7]), "point_labels must be"),
                         (dict(mask_input=np.zeros((3, 3))), r"mask_input must be a finite \(N, 256, 256\)"),
                         (dict(boxes=boxes, points=[[[1, 1]], [[2, 2]]]), "the same number of objects"), ({}, "give")):
        with pytest.raises(CaseError, match=message):
            predictor.predict(**bad)


def test_segment_takes_a_nifti_image_or_a_path_and_gives_the_same_type_back(models_ready, dev_data, tmp_path):
    """TotalSegmentator's python_api as the model: a nibabel image in, one out with the input's affine; a path
    in, infer's output written in the input's format (the same voxels) and the labels returned."""
    import nibabel as nib

    path = shared("raw/example_ct_sm.nii.gz")
    box = [[20, 20, 10, 60, 60, 29]]
    image = nib.load(str(path))
    labels = litemedsam.segment(image, box, modality="CT")
    assert isinstance(labels, nib.Nifti1Image) and np.allclose(labels.affine, image.affine)
    assert labels.shape == image.shape and np.asarray(labels.dataobj).max() == 1
    array = litemedsam.segment(path, box, modality="CT", output=tmp_path / path.name)
    written = nib.load(str(tmp_path / path.name))
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(labels.dataobj))
    assert np.array_equal(array, np.asarray(labels.dataobj).transpose(2, 1, 0))
    with pytest.raises(CaseError, match=r"written as \.nii\.gz"):
        litemedsam.segment(path, box, output=tmp_path / "labels.png")
    with pytest.raises(CaseError, match="missing.nii.gz: cannot read it"):
        litemedsam.segment(tmp_path / "missing.nii.gz", box)


def test_hu_volume_is_windowed_as_ct_with_a_warning(models_ready):
    vol = np.full((3, 64, 64), -1000, np.int16)
    vol[:, 16:48, 16:48] = 40
    with pytest.warns(UserWarning, match="Hounsfield"):
        labels = litemedsam.segment(vol, [[16, 16, 0, 47, 47, 2]])
    assert labels.shape == vol.shape and labels[1, 32, 32] == 1


@pytest.mark.parametrize("call, message", [
    (lambda: litemedsam.segment(np.zeros((8, 8), np.uint8), np.zeros((1, 5))), r"\(N, 4\)"),
    (lambda: litemedsam.segment(np.zeros((8, 8), np.float32) * np.nan, [[0, 0, 4, 4]]), "NaN"),
    (lambda: litemedsam.Predictor().predict([[0, 0, 4, 4]]), "set_image first"),
])
def test_bad_input_raises_a_clear_error(models_ready, call, message):
    with pytest.raises(CaseError, match=message):
        call()


@pytest.mark.parametrize("kwargs, message", [
    (dict(threads=10 ** 12), r"threads= 1000000000000 is not a usable number of threads \(1-1024\)"),
    (dict(threads=2.5), r"threads= 2.5 is not a usable number of threads"),
    (dict(window=(40, 0)), r"window=\(40, 0\): LEVEL,WIDTH expected, width > 0"),
    (dict(window=(float("nan"), 400)), r"window=\(nan, 400\): LEVEL,WIDTH expected"),
    (dict(window="40"), r"LEVEL,WIDTH expected"),
    (dict(modality="../../etc/passwd"), r"modality= '../../etc/passwd' is not a modality of"),
    (dict(starts=[1, 2, 3]), r"starts: one start slice \(a number\) per box, 1 in all"),
    (dict(starts=[float("nan")]), r"starts: one start slice"),
])
def test_the_api_refuses_what_infer_refuses(models_ready, kwargs, message):
    """Issue 34, A24-A28: threads=10**12 gave onnxruntime's TypeError; starts=[1, 2, 3] for one box, window=(40, 0),
    window=(nan, 400) and modality='../../etc/passwd' were taken silently. They are refused as infer refuses them."""
    from litemedsam.core.errors import LitemedsamError

    with pytest.raises(LitemedsamError, match=message):
        litemedsam.segment(np.zeros((4, 32, 32), np.uint8), [[4, 4, 0, 20, 20, 3]], **kwargs)
    with pytest.raises(LitemedsamError, match=r"--window '40,0': LEVEL,WIDTH expected"):  # infer's own words
        from litemedsam.cli.options import case_inputs
        case_inputs((), None, None, "40,0", None)


def test_predictor_warns_of_boxes_as_segment_does_and_bounds_its_masks(models_ready, dev_data):
    """Issue 34, A34-A37: a box off the image or inverted gave a mask with score 0.3-0.5 and no warning; 20,000
    boxes ran until killed (their masks alone: 6.6 GB). Now such boxes are warned of as segment warns, and get an
    empty mask and score 0; masks past the per-case limit are refused at once."""
    with np.load(dev_data / "imgs" / CASE_2D) as case:
        image, boxes = case["imgs"], case["boxes"]
    predictor = litemedsam.Predictor()
    predictor.set_image(image)
    h, w = image.shape[:2]
    with pytest.warns(UserWarning) as caught:
        masks, scores, _ = predictor.predict([boxes[0], [w + 10, 5, w + 50, 40], [300, 300, 100, 100]])
    said = " ".join(str(c.message) for c in caught)
    assert "box 2" in said and "outside the image" in said and "box 3" in said and "min > max" in said
    assert masks[0].any() and not masks[1:].any() and scores[0] > 0.5 and (scores[1:] == 0).all()
    with pytest.raises(CaseError, match=r"20000 masks of 622 x 529 need .* more than the limit"):
        predictor.predict(np.tile(boxes[:1], (20000, 1)))
