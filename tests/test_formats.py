"""Users' own files: NIfTI volumes and 2D images in, label maps out in the input's format and geometry; boxes
from the command line, a table or a label image; intensities as the challenge data were made."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from litemedsam.io import formats
from litemedsam.core.errors import CaseError, UsageError
from litemedsam.io.given_boxes import CaseInputs, boxes_of_labels, read_boxes_table

from conftest import DEV, shared

RAW = DEV.parent / "raw"


def need(path: Path) -> Path:
    return shared(str(path.relative_to(DEV.parent)))


def small_nifti(path: Path, data: np.ndarray, affine=None):
    import nibabel as nib

    affine = np.diag([0.8, 0.9, 2.5, 1.0]) if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, str(path))
    return path


def test_every_format_keeps_the_reader_writer_contract():
    """litemedsam.io.formats' contract: an image format reads an image with its geometry and a label file, and
    writes labels in a geometry; the challenge's .npz reads a whole case instead of an image."""
    import importlib
    import inspect

    from litemedsam.io.formats.registry import CASE_FILES

    for fmt in formats.FORMATS:
        module = importlib.import_module(f"litemedsam.io.formats.{fmt}")
        assert list(inspect.signature(module.write).parameters) == ["segs", "geometry", "target"], fmt
        assert list(inspect.signature(module.read_labels).parameters) == ["path"], fmt
        if fmt in CASE_FILES:
            assert callable(module.read_case) and callable(module.label_shape) and not hasattr(module, "read_image")
        else:
            assert module.DIM in ("2D", "3D") and list(inspect.signature(module.read_image).parameters) == ["path"]
    assert set(formats.MODULES.values()) | {"dicom"} == set(formats.FORMATS)


def test_a_geometry_says_where_its_axes_run_and_refuses_spacings_that_are_none():
    from litemedsam.io.geometry import Geometry

    nifti = Geometry.of((0.8, 0.9, 2.5), np.diag([0.8, 0.9, 2.5, 1.0]))  # RAS: i to the right, j front, k up
    assert nifti.spacing == (2.5, 0.9, 0.8) and nifti.axes == ("S", "A", "R")
    itk = Geometry.of_itk((1, 2, 3), (0.5, 0.5, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))  # LPS: x to the left, y back
    assert itk.axes == ("S", "P", "L") and itk.spacing == (3.0, 0.5, 0.5)
    assert np.allclose(itk.affine[:3, 3], (-1, -2, 3))  # RAS
    for bad in [(1, 1), (1, 1, 0), (1, np.inf, 1), (1, 1, 1e7), ("a", 1, 1), None]:
        assert Geometry.of(bad).spacing is None and Geometry.of(bad).axes is None
    assert nifti.placed_like(Geometry.of((0.8, 0.9, 2.5), np.diag([0.8, 0.9, 2.5, 1.0]) + 1e-5))
    assert not nifti.placed_like(itk) and nifti.placed_like(Geometry())


def test_suffixes_and_output_names():
    assert formats.suffix("a.NII.GZ") == ".nii.gz" and formats.suffix("b.nii") == ".nii"
    assert formats.suffix(".npz") is None and formats.suffix("notes.txt") is None
    assert formats.output_name("x.jpg") == "x.png" and formats.output_name("v.nii.gz") == "v.nii.gz"


def test_real_ct_nifti_reads_as_the_dev_case_was_made():
    """TotalSegmentator's CT in HU, windowed 40/400, slices along the third voxel axis: exactly the dev case's
    image, and the tight boxes of its label file are the dev case's boxes."""
    ct, seg = need(RAW / "example_ct_sm.nii.gz"), need(RAW / "example_seg.nii.gz")
    dev = np.load(need(DEV / "imgs" / "3DBox_CT_TotalSegmentator_example_ct_sm_PSEUDOGT.npz"))
    case = formats.read(ct, CaseInputs(modality="CT", labels=seg))
    assert case.dim == "3D" and np.array_equal(case.image, dev["imgs"])
    present = [k for k in range(1, len(case.boxes) + 1) if k not in case.skipped]
    assert np.array_equal(case.boxes[np.array(present) - 1], dev["boxes"])
    assert any("do not occur in the label image" in w for w in case.warnings)


def test_real_mr_flair_is_clipped_at_percentiles():
    flair = need(RAW / "BraTS2021_01646_flair.nii.gz")
    dev = np.load(need(DEV / "imgs" / "3DBox_MR_BraTS2021_01646.npz"))
    case = formats.read(flair, CaseInputs(labels=need(RAW / "BraTS2021_01646_edema_label.nii.gz")))
    assert case.image.shape == dev["imgs"].shape and np.abs(case.image.astype(int) - dev["imgs"]).max() <= 1
    assert np.array_equal(case.boxes, dev["boxes"])


def test_real_ct_nifti_is_found_in_hounsfield_units_whatever_its_name(tmp_path):
    """TotalSegmentator's CT (its name says 'example', not CT): air and soft tissue in HU make it CT, windowed as the
    dev case was made, with one warning saying so; --modality decides when given."""
    ct = need(RAW / "example_ct_sm.nii.gz")
    dev = np.load(need(DEV / "imgs" / "3DBox_CT_TotalSegmentator_example_ct_sm_PSEUDOGT.npz"))
    renamed = tmp_path / "abdomen_scan.nii.gz"
    renamed.symlink_to(ct)
    for path in (ct, renamed):
        case = formats.read(path, CaseInputs(boxes=[[10, 10, 5, 60, 60, 20]]))
        assert case.modality == "CT" and np.array_equal(case.image, dev["imgs"])
        assert [w for w in case.warnings if "Hounsfield" in w] == [case.warnings[0]] and "--modality" in case.warnings[
            0
        ]
    told = formats.read(ct, CaseInputs(boxes=[[10, 10, 5, 60, 60, 20]], modality="MR"))
    assert told.modality is None and not told.warnings and not np.array_equal(told.image, dev["imgs"])


def test_zero_voxels_stay_zero_and_only_hu_data_count_as_ct():
    """A z-scored MR (brain around 0, negative values, background exactly 0): the background stays 0 and the
    percentiles are those of the brain; magnitude MR, PET and z-scored MR are never taken for HU."""
    from litemedsam.io.intensity import looks_like_hu, prepare, to_uint8

    rng = np.random.default_rng(0)
    z = np.zeros((4, 32, 32), np.float32)
    z[:, 8:24, 8:24] = rng.normal(0, 1, (4, 16, 16))
    out = to_uint8(z, "MR")
    assert (out[z == 0] == 0).all() and out[:, 8:24, 8:24].mean() > 100
    assert not looks_like_hu(z) and not looks_like_hu(np.abs(z) * 1000) and not looks_like_hu(z.astype(np.uint8))
    hu = np.full((4, 32, 32), -1000, np.int16)
    hu[:, 8:24, 8:24] = 40
    assert looks_like_hu(hu)
    image, found, warnings = prepare(hu, "scan.nii.gz")
    assert found == "CT" and len(warnings) == 1 and image[0, 16, 16] == 128 and image[0, 0, 0] == 0
    assert prepare(hu, "scan.nii.gz", given="MR")[1:] == (None, [])
    assert prepare(hu, "CT_scan.nii.gz")[1:] == (None, [])  # the name says CT already: nothing to say


def test_nifti_labels_are_written_in_the_input_geometry(tmp_path):
    import nibabel as nib

    data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    src = small_nifti(tmp_path / "MR_x.nii.gz", data)
    case = formats.read(src, CaseInputs(boxes=[[1, 1, 0, 4, 5, 3]]))
    assert case.image.shape == (5, 7, 6)  # (k, j, i)
    segs = np.zeros(case.image.shape, np.uint8)
    segs[2, 3, 4] = 1  # k=2, j=3, i=4
    out = tmp_path / "out.nii.gz"
    formats.write(case, segs, out)
    written, original = nib.load(str(out)), nib.load(str(src))
    assert written.shape == original.shape and written.get_data_dtype() == np.uint8
    assert np.allclose(written.affine, original.affine) and written.header.get_zooms() == original.header.get_zooms()
    assert [int(written.header[k]) for k in ("qform_code", "sform_code")] == [1, 2]
    assert written.header.get_xyzt_units() == ("mm", "sec")
    labels = np.asanyarray(written.dataobj)
    assert labels[4, 3, 2] == 1 and labels.sum() == 1


def test_a_nifti_with_a_header_extension_nibabel_cannot_parse_is_read(tmp_path):
    """Issue 34, N18: a valid NIfTI with an unused DICOM extension was refused as "UnicodeDecodeError" (nibabel,
    with pydicom installed, decodes its bytes 4-5 as text). The voxels are read without the extensions."""
    import gzip
    import struct

    import nibabel as nib

    pytest.importorskip("pydicom")  # without it nibabel does not parse DICOM extensions at all
    data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    image = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension(0, b"\0\0\0\0\xff\xfe\0\0" * 4))
    path = tmp_path / "MR_ext.nii.gz"
    nib.save(image, str(path))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<i", raw, 356, 2)  # the extension's code: DICOM
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(UnicodeDecodeError):
        nib.load(str(path))
    case = formats.read(path, CaseInputs(boxes=[[1, 1, 0, 4, 5, 3]]))
    assert case.image.shape == (5, 7, 6) and np.allclose(formats.spacing(case), (2.5, 0.8, 0.8))
    segs = np.zeros(case.image.shape, np.uint8)
    segs[2, 3, 4] = 1
    formats.write(case, segs, tmp_path / "out.nii.gz")
    written = nib.load(str(tmp_path / "out.nii.gz"))
    assert np.allclose(written.affine, image.affine) and np.asanyarray(written.dataobj)[4, 3, 2] == 1


def test_boxes_from_a_table_and_from_labels(tmp_path):
    table = tmp_path / "boxes.json"
    table.write_text(json.dumps([{"file": "a.png", "box": [1, 2, 3, 4]}, [0, 0, 9, 9]]))
    assert read_boxes_table(table) == {"a.png": [[1, 2, 3, 4]], "*": [[0, 0, 9, 9]]}
    csv_table = tmp_path / "boxes.csv"
    csv_table.write_text("file,x0,y0,z0,x1,y1,z1\nv.nii.gz,1,2,3,4,5,6\n")
    assert read_boxes_table(csv_table) == {"v.nii.gz": [[1, 2, 3, 4, 5, 6]]}
    csv_table.write_text("x0,y0\n1,2\n")
    with pytest.raises(UsageError, match="missing x1,y1"):
        read_boxes_table(csv_table)
    labels = np.zeros((4, 10, 12), np.uint8)
    labels[1:3, 2:5, 6:9] = 3
    boxes, absent = boxes_of_labels(labels)
    assert absent == [1, 2] and boxes[2].tolist() == [6, 2, 1, 8, 4, 2]
    many = np.random.default_rng(0).integers(0, 300, (6, 40, 50)).astype(np.uint16)  # one pass for all values
    boxes, absent = boxes_of_labels(many)
    for value in range(1, 300):
        z, y, x = np.nonzero(many == value)
        assert boxes[value - 1].tolist() == [x.min(), y.min(), z.min(), x.max(), y.max(), z.max()]
    top = np.zeros((4, 64, 64), np.uint16)
    top[2, 3, 4] = 65535  # the largest value a label map may hold, alone
    boxes, absent = boxes_of_labels(top)
    assert len(boxes) == 65535 and len(absent) == 65534 and boxes[-1].tolist() == [4, 3, 2, 4, 3, 2]


def test_png_in_png_out_and_colliding_names_fail_alone(tmp_path):
    import cv2

    inp = tmp_path / "in"
    inp.mkdir()
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:30, 20:40] = (255, 120, 30)
    # the file holds RGB (255, 120, 30)
    cv2.imwrite(str(inp / "Endoscopy_a.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    case = formats.read(inp / "Endoscopy_a.png", CaseInputs(boxes=[[18, 8, 42, 32]]))
    assert case.dim == "2D" and case.image[20, 30].tolist() == [255, 120, 30]  # RGB, not OpenCV's BGR
    with pytest.raises(CaseError, match="--box"):
        formats.read(inp / "Endoscopy_a.png", CaseInputs())


def test_infer_on_png_and_nifti_end_to_end(models_ready, tmp_path):
    import cv2
    import nibabel as nib
    from tests.test_infer_real import cli

    inp = tmp_path / "in"
    inp.mkdir()
    image = np.full((64, 80), 20, np.uint8)
    image[20:44, 30:60] = 220
    cv2.imwrite(str(inp / "XRay_a.png"), image)
    cv2.imwrite(str(inp / "XRay_a.jpg"), image)
    volume = np.zeros((48, 40, 6), np.float32)
    volume[10:30, 12:28, 1:5] = 900.0
    small_nifti(inp / "MR_v.nii.gz", volume + np.random.default_rng(0).random(volume.shape).astype(np.float32))
    out = tmp_path / "out"
    done = cli("infer", "-i", inp, "-o", out, "--box", "28,18,61,45", "--overlay", tmp_path / "overlays")
    assert done.returncode == 1 and "XRay_a.png is also the output of XRay_a.jpg" in done.stderr, done.stderr
    assert "MR_v.nii.gz: a 3D image takes boxes of 6 numbers" in done.stderr and "Traceback" not in done.stderr
    mask = cv2.imread(str(out / "XRay_a.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (64, 80) and mask[30, 45] == 1 and mask[5, 5] == 0
    record = json.loads((out / "run.json").read_text())  # the run record: options, models, every case
    cases = {c["case"]: c for c in record["cases"]}
    assert record["options"]["boxes"] == ["28,18,61,45"] and record["threads"] >= 1
    from litemedsam.models.registry import get_model

    assert record["models"]["litemedsam"] == {e.file: e.sha256 for e in get_model("litemedsam").graphs}
    assert cases["XRay_a.jpg"]["status"] == "ok" and cases["XRay_a.jpg"]["decision"]["rule"] == "everything else"
    assert cases["XRay_a.png"]["status"] == "failed" and "also the output of" in cases["XRay_a.png"]["message"]
    assert cases["MR_v.nii.gz"]["status"] == "failed"
    drawn = cv2.imread(str(tmp_path / "overlays" / "XRay_a.jpg.png"))  # the image with the label's contour and box
    assert drawn.shape == (64, 80, 3) and (drawn[:, :, 0] != drawn[:, :, 1]).any()
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["XRay_a.jpg.png"]
    refused = cli("infer", "-i", inp, "-o", out, "--box", "28,18,61,45", "--overlay", inp)
    assert refused.returncode == 2 and "is the input folder" in refused.stderr
    (inp / "XRay_a.png").unlink()
    (inp / "XRay_a.jpg").unlink()
    done = cli("infer", "-i", inp, "-o", out, "--box", "8,10,1,31,29,4", "--overlay", tmp_path / "overlays")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "overlays" / "MR_v.nii.gz.png").is_file()
    labels = np.asanyarray(nib.load(str(out / "MR_v.nii.gz")).dataobj)
    assert labels.shape == volume.shape and labels[20, 20, 2] == 1 and labels[40, 35, 2] == 0
    first = json.loads((out / "run.json").read_text())["cases"][0]
    cv2.imwrite(str(inp / "XRay_b.png"), image)
    done = cli("infer", "-i", inp, "-o", out, "--box", "8,10,1,31,29,4", "--continue-prediction")
    record = json.loads((out / "run.json").read_text())  # a resumed run keeps what the first one recorded
    kept = {c["case"]: c for c in record["cases"]}["MR_v.nii.gz"]
    assert kept == {**first, "status": "existing"} and kept["decision"]["rule"] == "CT and MR volumes"
    assert "litemedsam" in record["models"]


@pytest.mark.parametrize("name, data, message", [
    ("v.nii.gz", b"\x1f\x8b" + bytes(50), "not a readable NIfTI file"),
    ("v.nii", bytes(400), "not a readable NIfTI file"),
    ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(30), "not a readable PNG image"),
    ("a.tif", b"II*\x00" + bytes(10), "not a readable TIF image"),
])
def test_bad_files_of_the_new_formats_are_case_errors(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CaseError, match=message):
        formats.read(path, CaseInputs(boxes=[[0, 0, 1, 1]]))


def test_window_and_box_options_are_checked(tmp_path):
    from tests.test_infer_real import cli

    (tmp_path / "in").mkdir()
    for args, message in ((["--window", "40"], "--window '40'"), (["--box", "1,2,3"], "4 numbers"),
                          (["--box", "1,2,3,4", "--boxes", "x.json"], "give prompts one way"),
                          (["--box", "1,2,3,4", "--box", "1,2,3,4,5,6"], "are 2D (4 numbers) or all 3D")):
        done = cli("infer", "-i", tmp_path / "in", "-o", tmp_path / "out", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


def test_real_nrrd_reads_as_the_dev_case_and_writes_back(tmp_path):
    """pyradiomics' brain MR (NRRD, int16): the dev case's image and box; labels written as NRRD with the
    input's origin, spacing and direction."""
    sitk = pytest.importorskip("SimpleITK")
    image, labels = need(RAW / "brain1_image.nrrd"), need(RAW / "brain1_label.nrrd")
    dev = np.load(need(DEV / "imgs" / "3DBox_MR_pyradiomics_brain1.npz"))
    case = formats.read(image, CaseInputs(labels=labels))
    assert np.array_equal(case.image, dev["imgs"]) and np.array_equal(case.boxes, dev["boxes"])
    segs = np.zeros(case.image.shape, np.uint8)
    segs[12, 100, 180] = 1
    out = tmp_path / "brain1_image.nrrd"
    formats.write(case, segs, out)
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(image))
    assert written.GetSize() == source.GetSize() and np.allclose(written.GetSpacing(), source.GetSpacing())
    assert np.allclose(written.GetOrigin(), source.GetOrigin()) and np.allclose(
        written.GetDirection(), source.GetDirection()
    )
    assert sitk.GetArrayFromImage(written)[12, 100, 180] == 1 and not [
        p for p in tmp_path.iterdir() if p.name.startswith(".")
    ]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # as other outputs, not a temporary file's 0600


def test_a_2d_image_too_large_for_the_memory_is_refused(monkeypatch, tmp_path):
    """Segmenting brings each object's logits to the full image size: an image that would not fit in the memory
    available is a failed case with a message, not a process killed by the kernel (and a lost batch)."""
    import litemedsam.core.limits
    from litemedsam.io.cases import make_case

    monkeypatch.setattr(litemedsam.core.limits, "available_memory", lambda: 600 << 20)
    with pytest.raises(
        CaseError, match=r"segmenting a 6000x5000 image needs about 769\.5 MiB .* 600\.0 MiB is available"
    ):
        make_case(tmp_path / "2DBox_XRay_x.npz", np.zeros((5000, 6000), np.uint8), [[0, 0, 9, 9]])
    assert make_case(tmp_path / "2DBox_XRay_x.npz", np.zeros((500, 600), np.uint8), [[0, 0, 9, 9]]).dim == "2D"


def dicom_series(name: str) -> Path:
    pydicom = pytest.importorskip("pydicom")
    pytest.importorskip("SimpleITK")
    return Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests" / name


def test_dicom_series_folder_is_a_case(models_ready, tmp_path):
    """pydicom's test CT series (5 slices of 16x16, in HU after rescale): a folder among the inputs is a case; its
    Modality routes it; the labels come back as <folder>.nrrd with the series' geometry."""
    import shutil

    import SimpleITK as sitk
    from tests.test_infer_real import cli

    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copytree(dicom_series("98892001/CT5N"), inp / "CT5N")
    (inp / "notes").mkdir()  # a folder without DICOM files is no case
    case = formats.read(inp / "CT5N", CaseInputs(boxes=[[2, 2, 1, 13, 13, 3]]))
    assert case.dim == "3D" and case.image.shape == (5, 16, 16) and case.modality == "CT"
    out = tmp_path / "out"
    done = cli("infer", "-i", inp, "-o", out, "--box", "2,2,1,13,13,3")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["CT5N.nrrd", "efficiency.csv", "run.json"]
    written = sitk.ReadImage(str(out / "CT5N.nrrd"))
    source = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(inp / "CT5N")))
    assert written.GetSize() == source.GetSize() and np.allclose(written.GetOrigin(), source.GetOrigin())
    assert json.loads((out / "run.json").read_text())["cases"][0]["decision"]["rule"] == "CT and MR volumes"


def test_a_folder_of_two_series_is_refused(tmp_path):
    import shutil

    both = tmp_path / "both"
    shutil.copytree(dicom_series("98892001/CT5N"), both)
    for f in dicom_series("98892001/CT2N").iterdir():
        shutil.copy(f, both / f"b{f.name}")
    with pytest.raises(CaseError, match="holds 2 DICOM series"):
        formats.read(both, CaseInputs(boxes=[[0, 0, 0, 1, 1, 1]]))


def test_dicom_series_that_would_be_misplaced_are_refused_and_links_are_read(tmp_path):
    """A series with a missing slice (uneven spacing) is refused: its labels would be written in the wrong place;
    a link to a series folder is a case; a folder that is not a series is named in a notice (never silently
    skipped)."""
    import shutil

    from litemedsam.run.folders import list_cases

    src = dicom_series("98892001/CT5N")
    shutil.copytree(src, tmp_path / "gap")
    (tmp_path / "gap" / "2693").unlink()
    with pytest.raises(CaseError, match=r"not evenly spaced: 5\.00 mm between slices 1 and 2 where the others are "
                                        r"2\.50 mm apart \(a missing slice\?\)"):
        formats.read(tmp_path / "gap", CaseInputs(boxes=[[1, 1, 0, 5, 5, 1]]))
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "linked").symlink_to(src, target_is_directory=True)
    (inp / "notes").mkdir()
    (inp / "notes" / "a.txt").write_text("not DICOM")
    cases, notices = list_cases(inp)
    assert cases == [inp / "linked"] and formats.read(cases[0], CaseInputs(boxes=[[1, 1, 0, 5, 5, 1]])).dim == "3D"
    assert notices == ["skipped 1 folder that is not a DICOM series (no file with the DICM marker among its first "
                       "files): notes"]


def test_label_maps_that_give_no_boxes_or_sit_elsewhere_are_said(tmp_path):
    volume = np.random.default_rng(0).integers(0, 900, (12, 10, 4)).astype(np.int16)
    image = small_nifti(tmp_path / "MR_v.nii.gz", volume)
    empty = small_nifti(tmp_path / "empty.nii.gz", np.zeros((12, 10, 4), np.uint8))
    with pytest.raises(CaseError, match=r"its label image empty\.nii\.gz holds no label \(every voxel is 0\)"):
        formats.read(image, CaseInputs(labels=empty))
    labels = np.zeros((12, 10, 4), np.uint8)
    labels[2:6, 3:7, 1:3] = 1
    same = small_nifti(tmp_path / "same.nii.gz", labels)
    moved = small_nifti(tmp_path / "moved.nii.gz", labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert not [w for w in formats.read(image, CaseInputs(labels=same)).warnings if "placed otherwise" in w]
    case = formats.read(image, CaseInputs(labels=moved))
    assert case.boxes.tolist() == [[2, 3, 1, 5, 6, 2]] and any(
        "moved.nii.gz is placed otherwise" in w for w in case.warnings
    )


def test_a_nifti_with_a_nan_qform_is_written_back_as_it_came(tmp_path):
    """The header is copied, not recomputed: a qform nibabel cannot decompose (NaN) no longer fails the case after
    it was segmented."""
    import struct

    import nibabel as nib

    path = small_nifti(tmp_path / "MR_q.nii", np.zeros((8, 8, 4), np.int16))
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, 256, float("nan"))  # quatern_b
    path.write_bytes(bytes(data))
    case = formats.read(path, CaseInputs(boxes=[[1, 1, 0, 4, 4, 2]]))
    formats.write(case, np.ones(case.image.shape, np.uint8), tmp_path / "out.nii")
    written = nib.load(str(tmp_path / "out.nii"))
    assert np.isnan(written.header["quatern_b"]) and int(written.header["qform_code"]) == 1
    assert np.asanyarray(written.dataobj).shape == (8, 8, 4)
