"""Issue 45: a RECIST line -> the lesion in 3D. The task's .npz (``recist`` lines, no boxes) found by ``infer``
itself, lines beside a NIfTI (``--recist``) or on the command line (``--line``), ``segment(image, lines=...)``; bad
lines refused, naming the lesion, without costing the other cases (the line checks are fast: no model)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import litemedsam
from conftest import DEV, REPO, shared
from litemedsam.core.errors import CaseError
from litemedsam.io.lines import given_lines, lines_of

RECIST_DEV = DEV.parent / "recist-dev"
CASE = "CT_Lesion_000009_03_01_036-048.npz"


def volume_with_lines(*lines, shape=(6, 40, 40), dtype=np.uint8):
    recist = np.zeros(shape, dtype)
    for k, z, ys, xs in lines:
        recist[z, ys, xs] = k
    return recist


def test_lines_are_read_with_their_two_farthest_points():
    recist = volume_with_lines((1, 2, slice(10, 11), slice(5, 25)), (2, 4, [3, 4, 5, 6], [30, 31, 32, 33]))
    one, two = lines_of(recist, recist.shape, (5.0, 0.5, 0.5))
    assert (one.z, one.start, one.end) == (2, (10, 5), (10, 24)) and one.length_mm((5.0, 0.5, 0.5)) == 9.5
    assert two.z == 4 and {two.start, two.end} == {(3, 30), (6, 33)}


@pytest.mark.parametrize("recist, message", [
    (volume_with_lines((1, 2, 10, slice(5, 25)), (3, 3, 10, slice(5, 25))), "lesion 2 has no line"),
    (volume_with_lines((1, 2, 10, slice(5, 25)), (1, 3, 12, slice(5, 25))), "lesion 1's line is on 2 slices"),
    (volume_with_lines((1, 2, 10, 5)), "lesion 1's line is one pixel"),
    (volume_with_lines(shape=(6, 40, 40)), "holds no line"),
    (volume_with_lines((300, 2, 10, slice(5, 25)), dtype=np.int16), "lesion numbers are 1-255"),
    (volume_with_lines((-1, 2, 10, slice(5, 25)), dtype=np.int16), "lesion numbers are 1-255"),
    (np.zeros((5, 40, 40), np.uint8), "'recist' has shape (5, 40, 40), the image (6, 40, 40)"),
    (np.full((6, 40, 40), 0.5, np.float32), "lesion numbers (integers 0-255)"),
])
def test_bad_lines_are_refused_naming_the_lesion(recist, message):
    with pytest.raises(CaseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lines_of(recist, (6, 40, 40))


def test_lines_given_as_end_points_are_checked():
    assert given_lines([[5, 10, 25, 10, 2]], (6, 40, 40))[0].start == (10, 5)
    with pytest.raises(CaseError, match="line 1 .* is off the image"):
        given_lines([[5, 10, 45, 10, 2]], (6, 40, 40))
    with pytest.raises(CaseError, match="both ends at"):
        given_lines([[5, 10, 5, 10, 2]], (6, 40, 40))
    with pytest.raises(CaseError, match=r"\[\[x0, y0, x1, y1, z\], \.\.\.\]"):
        given_lines([[5, 10, 5]], (6, 40, 40))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=os.environ, timeout=600)


@pytest.fixture
def recist_dev(models_ready):
    return shared(f"recist-dev/imgs/{CASE}").parent.parent


def dsc(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_infer_finds_a_recist_case_by_itself_and_bad_ones_cost_no_other(recist_dev, tmp_path):
    """The task's predict.sh passes no flag: a case with 'recist' and no 'boxes' is a RECIST case; bad ones fail
    alone, each with its reason."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / CASE).symlink_to(recist_dev / "imgs" / CASE)
    data = dict(np.load(recist_dev / "imgs" / CASE))
    bad = {"two_slices.npz": {**data, "recist": np.maximum(data["recist"], np.roll(data["recist"], 1, axis=0))},
           "with_boxes.npz": {**data, "boxes": np.array([[1, 1, 0, 9, 9, 3]])},
           "other_shape.npz": {**data, "recist": data["recist"][:-1]}}
    for name, arrays in bad.items():
        np.savez(inp / name, **arrays)
    done = cli("infer", "-i", inp, "-o", tmp_path / "out")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "line is on 2 slices" in done.stderr and "both 'recist' lines and 'boxes'" in done.stderr
    assert "'recist' has shape" in done.stderr and "1 segmented, 3 failed" in done.stdout
    segs = np.load(tmp_path / "out" / CASE)["segs"]
    gts = np.load(recist_dev / "gts" / CASE)["gts"]
    assert segs.shape == gts.shape and dsc(segs == 1, gts == 1) > 0.85


def test_lines_beside_a_nifti_and_on_the_command_line_and_in_the_api(recist_dev, tmp_path):
    """--recist LINES.nii.gz beside a NIfTI volume, --line x0,y0,x1,y1,z and segment(image, lines=...) give the
    lesion the task's case gives."""
    import nibabel as nib

    data = np.load(recist_dev / "imgs" / CASE)
    spacing = data["spacing"]  # x, y, z as the challenge lists it
    affine = np.diag([*spacing, 1.0])
    # a NIfTI's voxel axes are x, y, z; the challenge's arrays z, y, x
    nib.save(nib.Nifti1Image(data["imgs"].transpose(2, 1, 0), affine), str(tmp_path / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(data["recist"].transpose(2, 1, 0), affine), str(tmp_path / "lines.nii.gz"))
    task = tmp_path / "task"
    assert cli("infer", "-i", recist_dev / "imgs" / CASE, "-o", task).returncode == 0
    expected = np.load(task / CASE)["segs"]
    done = cli("infer", "-i", tmp_path / "ct.nii.gz", "-o", tmp_path / "a", "--recist", tmp_path / "lines.nii.gz",
               "--modality", "CT", "--window", "127.5,255")
    assert done.returncode == 0, done.stderr
    got = np.asarray(nib.load(str(tmp_path / "a" / "ct.nii.gz")).dataobj).transpose(2, 1, 0)
    assert dsc(got == 1, expected == 1) > 0.98
    line = lines_of(data["recist"], data["imgs"].shape, tuple(spacing[::-1]))[0]
    text = f"{line.start[1]},{line.start[0]},{line.end[1]},{line.end[0]},{line.z}"
    done = cli("infer", "-i", tmp_path / "ct.nii.gz", "-o", tmp_path / "b", "--line", text, "--modality", "CT",
               "--window", "127.5,255", "--measurements")
    assert done.returncode == 0, done.stderr
    by_line = np.asarray(nib.load(str(tmp_path / "b" / "ct.nii.gz")).dataobj).transpose(2, 1, 0)
    assert np.array_equal(by_line, got)
    # the lesion's volume and its RECIST diameter beside it, near the line drawn (mm, from the NIfTI's spacing)
    row = next(csv.DictReader(open(tmp_path / "b" / "ct.nii.gz.measurements.csv")))
    mm = tuple(float(v) for v in spacing[::-1])
    assert row["label"] == "1" and float(row["ml"]) == pytest.approx(by_line.astype(bool).sum() * np.prod(mm) / 1000,
                                                                      rel=1e-3)
    assert abs(float(row["long_mm"]) - line.length_mm(mm)) < 0.25 * line.length_mm(mm)
    api = litemedsam.segment(data["imgs"], lines=[[line.start[1], line.start[0], line.end[1], line.end[0], line.z]],
                             modality="CT")
    assert dsc(api == 1, expected == 1) > 0.9
    with pytest.raises(CaseError, match="boxes or lines, not both"):
        litemedsam.segment(data["imgs"], boxes=[1, 1, 0, 5, 5, 2], lines=[[1, 1, 5, 5, 0]])


def test_the_apps_line_tool_makes_the_lesion(recist_dev, tmp_path):
    """The browser app's line tool (POST /line, a job the page follows): a line on the slice gives the lesion infer
    gives for the task's case; on a coronal cut, the square of the line is the box there; a 2D image refuses."""
    from starlette.testclient import TestClient

    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.web.app import Server, make_app
    from tests.test_serve import WRITE, finish, labels, open_case

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / CASE).symlink_to(recist_dev / "imgs" / CASE)
    server = Server(folder, tmp_path / "segs", BoxPrompting(Router.load(None)), Segmenters(), 256 << 20, 1 << 20)
    data = np.load(recist_dev / "imgs" / CASE)
    line = lines_of(data["recist"], data["imgs"].shape)[0]
    gts = np.load(recist_dev / "gts" / CASE)["gts"]
    with TestClient(make_app(server), base_url="http://127.0.0.1:8765",
                    headers={"X-Litemedsam-Token": server.token}) as client:
        doc = open_case(client, CASE)
        assert doc["spacing"] is not None  # the page measures the line in mm
        ends = [line.start[1], line.start[0], line.end[1], line.end[0]]
        r = client.post(f"/api/doc/{doc['id']}/line", json={"z": line.z, "line": ends}, headers=WRITE)
        assert r.status_code == 200 and r.json()["job"], r.text
        done = finish(client, doc)
        assert done["state"] == "done" and done["label"] == 1, done
        assert dsc(labels(client, doc) == 1, gts == 1) > 0.85
        zs, ys, xs = np.nonzero(gts == 1)
        y = int(np.median(ys))  # a coronal cut through the lesion: its rows are the slices
        cut = gts[:, y, :] == 1
        rows, cols = np.nonzero(cut)
        r = client.post(f"/api/doc/{doc['id']}/line", headers=WRITE, json={
            "z": y, "plane": "y", "line": [int(cols.min()), int(rows.mean()), int(cols.max()), int(rows.mean())]})
        assert r.status_code == 200, r.text
        done = finish(client, doc)
        assert done["label"] == 2 and (labels(client, doc) == 2).any(), done
        # a box drawn on a task case is that box's object, never the file's lines' (they were taken instead)
        z = min(zs)  # the lesion's first slice, away from the line's
        ys, xs = np.nonzero(gts[z] == 1)
        x0, y0, x1, y1 = int(xs.min()) - 4, int(ys.min()) - 4, int(xs.max()) + 4, int(ys.max()) + 4
        r = client.post(f"/api/doc/{doc['id']}/box", json={"box": [x0, y0, x1, y1], "z": int(z)}, headers=WRITE)
        assert r.status_code == 200, r.text
        r = r.json()
        got = labels(client, doc) == (finish(client, doc) if r.get("job") else r)["label"]
        inside = np.zeros_like(got)
        inside[z, y0:y1 + 1, x0:x1 + 1] = True
        assert got.any() and not (got & ~inside).any()
        bad = client.post(f"/api/doc/{doc['id']}/line", json={"z": line.z, "line": [1, 1, 1e6, 1]}, headers=WRITE)
        assert bad.status_code == 400 and "inside" in bad.json()["error"]
    server.close()


def test_an_off_axis_box_decodes_only_once_its_view_is_encoded_ahead(recist_dev, models_ready):
    """An off-axis box encoded every cut it reached, every time (a coronal box took 230-344 s on a volume whose
    slices were all encoded, where an axial box decodes only). A view a box was drawn in has its cuts encoded
    ahead (BackgroundEncoding with that plane, as the protocol server starts it): the next box there encodes
    nothing, and its object is the one the cuts encoded on the way give."""
    import dataclasses

    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.background import BackgroundEncoding
    from litemedsam.serve.encoding import EmbeddingCache
    from litemedsam.serve.scene import Scene

    near = (slice(None), slice(167, 243), slice(199, 257))  # the lesion (rows 175-235, columns 207-249) and 8 more
    case = load_case(recist_dev / "imgs" / CASE)  # around it: 76 coronal cuts, not 512
    case = dataclasses.replace(case, image=np.ascontiguousarray(case.image[near]))
    gts = np.load(recist_dev / "gts" / CASE)["gts"][near] == 1
    y = int(np.argmax(gts.sum(axis=(0, 2))))  # the lesion's largest coronal cut: its rows are the slices
    rows, cols = np.nonzero(gts[:, y, :])
    box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
    prompting, segmenters = BoxPrompting(Router.load()), Segmenters()
    cold, _ = Scene(case, prompting, segmenters, EmbeddingCache(1 << 30)).propagate(box, y, "y")
    scene = Scene(case, prompting, segmenters, EmbeddingCache(1 << 30))
    ahead = BackgroundEncoding(scene, y, plane="y")
    ahead.start()
    ahead.join()
    assert ahead.ready == set(range(gts.shape[1])) and not ahead.problem
    encoded = scene.cache.misses
    mask, _ = scene.propagate(box, y, "y")
    assert scene.cache.misses == encoded and np.array_equal(mask, cold) and mask.any()
