"""litemedsam fit (issue 49): the decoder fine-tuned on a user's labelled 2D cases, judged on held-out cases by the
shipping rule, kept (exported into the fine-tuned slot, with its held-out numbers) only when the rule says so."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, shared

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
FUNDUS = ["2DBox_Fundus_MedScribble-STARE_im0044_axis0_midslice.npz",
          "2DBox_Fundus_MedScribble-STARE_im0239_axis0_midslice.npz"]


def layout(dev_data, names, folder, labelled=True):
    for sub in ("imgs", "gts"):
        (folder / sub).mkdir(parents=True)
    for name in names:
        (folder / "imgs" / name).symlink_to(dev_data / "imgs" / name)
        if labelled:
            (folder / "gts" / name).symlink_to(dev_data / "gts" / name)
    return folder


def own_work_dir(models_ready, folder):
    """A work folder with the real LiteMedSAM files (links) and nothing fitted: the fitted slot is written there."""
    from litemedsam.models.registry import work_dir

    folder.mkdir()
    for name in ("lite_medsam.pth", *(e.file for e in models_ready.files)):
        (folder / name).symlink_to(work_dir() / name)
    return folder


def fit(*args, work):
    return subprocess.run([sys.executable, "-m", "litemedsam", "fit", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "LITEMEDSAM_WORK_DIR": str(work)}, timeout=1800)


def test_a_fit_is_judged_on_held_out_cases_and_kept_only_by_the_rule(dev_data, models_ready, tmp_path):
    work = own_work_dir(models_ready, tmp_path / "work")
    cases = layout(dev_data, FUNDUS, tmp_path / "cases")
    done = fit("-i", cases, "--epochs", 3, work=work)  # too short to learn: judged, not kept, nothing written
    assert done.returncode == 0, done.stderr
    assert "held out (2 cases): DSC" in done.stdout and "Traceback" not in done.stderr
    assert "\nnot kept: the held-out cases do not pass" in done.stdout and not list(work.glob("litemedsam_ft*"))
    done = fit("-i", cases, "--epochs", 60, "--modality", "fundus", work=work)  # held out: DSC 21.9 -> 43.9, NSD
    assert done.returncode == 0 and "\nkept: litemedsam-ft now holds" in done.stdout, done.stdout + done.stderr
    assert "(Fundus cases go to it by default;" in done.stdout  # 59.8 -> 74.1 (measured)
    manifest = json.loads((work / "litemedsam-ft.manifest.json").read_text())  # with what it was fitted on
    assert len(list(work.glob("litemedsam_ft_*.onnx"))) == 3 and sorted(manifest["fit"]["cases"]) == FUNDUS
    assert manifest["fit"]["kept"] and manifest["fit"]["mean"]["dsc"] > manifest["fit"]["mean"]["base_dsc"] + 0.5
    listed = subprocess.run([sys.executable, "-m", "litemedsam", "models", "list"], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "LITEMEDSAM_WORK_DIR": str(work)}).stdout
    mean = manifest["fit"]["mean"]  # models list says what it was fitted on and how it did held out
    assert (f"fitted by litemedsam fit on 2 case(s) ({', '.join(manifest['fit']['cases'])}); held out DSC "
            f"{mean['base_dsc']:.2f} -> {mean['dsc']:.2f}") in listed and "; Fundus cases go to it by default" in listed
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", dev_data / "imgs" / FUNDUS[0], "-o",
                          out, "--model", "litemedsam-ft"], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "LITEMEDSAM_WORK_DIR": str(work)})
    assert run.returncode == 0 and np.load(out / FUNDUS[0])["segs"].any(), run.stderr
    routed = tmp_path / "routed"  # no --model: the shipped router sends a Fundus case to the fitted model
    run = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", dev_data / "imgs" / FUNDUS[1], "-o",
                          routed], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "LITEMEDSAM_WORK_DIR": str(work)})
    record = json.loads((routed / "run.json").read_text())["cases"][0]
    assert run.returncode == 0 and record["model"] == "litemedsam-ft", run.stderr


def test_what_a_fit_cannot_judge_is_said(dev_data, models_ready, tmp_path):
    work = own_work_dir(models_ready, tmp_path / "work")
    done = fit("-i", layout(dev_data, FUNDUS, tmp_path / "unlabelled", labelled=False), work=work)
    assert done.returncode == 1 and "no ground truth in gts/ for 2DBox_Fundus" in done.stderr, done.stderr
    done = fit("-i", layout(dev_data, FUNDUS, tmp_path / "named"), "--modality", "Retina", work=work)
    assert done.returncode == 2 and "--modality" in done.stderr and "Retina" in done.stderr, done.stderr
    done = fit("-i", layout(dev_data, FUNDUS[:1], tmp_path / "one"), work=work)
    assert done.returncode != 0 and "needs at least 2" in done.stderr and "Traceback" not in done.stderr
    assert not list(work.glob("litemedsam_ft_*"))


def as_images(dev_data, names, folder):
    """The cases as a user has them: PNG images, and PNG label images of the same names in labels/."""
    import cv2

    (folder / "labels").mkdir(parents=True)
    for name in names:
        png = name.replace(".npz", ".png")
        cv2.imwrite(str(folder / png), cv2.cvtColor(np.load(dev_data / "imgs" / name)["imgs"], cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "labels" / png), np.load(dev_data / "gts" / name)["gts"].astype(np.uint8))
    return folder


def test_images_with_label_images_beside_them_are_cases_as_the_challenge_layout(dev_data, models_ready, tmp_path):
    """fit -i IMAGES --labels LABELS (as infer's --boxes-from-labels): each PNG and its label PNG give the example
    its .npz case and ground truth give (the same image and masks; boxes: each label's tight box)."""
    from export.fit import labelled_images

    folder = as_images(dev_data, FUNDUS, tmp_path / "pngs")
    npz = list(labelled_images([dev_data / "imgs" / n for n in FUNDUS]))
    png = list(labelled_images(sorted(folder.glob("*.png")), labels_dir=folder / "labels"))
    assert len(png) == len(npz) == 2
    for (_, a, gts_a, labels_a, _, _, masks_a, _), (_, b, gts_b, labels_b, _, boxes_b, masks_b, _) in zip(npz, png):
        assert np.array_equal(a, b) and np.array_equal(gts_a, gts_b) and labels_a == labels_b
        assert np.array_equal(masks_a, masks_b) and len(boxes_b) == len(labels_b)
    work = own_work_dir(models_ready, tmp_path / "work")
    done = fit("-i", folder, "--labels", folder / "labels", "--epochs", 3, work=work)
    assert done.returncode == 0 and "held out (2 cases): DSC" in done.stdout, done.stdout + done.stderr
    (folder / "labels" / FUNDUS[1].replace(".npz", ".png")).unlink()
    done = fit("-i", folder, "--labels", folder / "labels", work=work)
    assert done.returncode == 1 and f"no label image in {folder / 'labels'} for 2DBox_Fundus" in done.stderr
    assert "Traceback" not in done.stderr and not list(work.glob("litemedsam_ft_*"))


def test_a_volume_gives_some_of_its_labelled_slices_held_out_together(dev_data, models_ready, tmp_path):
    """A labelled volume (a CT NIfTI and its label NIfTI, or a 3D challenge case) gives at most SLICES_PER_VOLUME
    of its axial slices with objects, spread over them, each prompted by the boxes of the objects on it; a fit
    holds a volume's slices out together and scores the volume by them."""
    from export.fit import SLICES_PER_VOLUME, labelled_images

    raw = shared("raw")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "example_ct_sm.nii.gz").symlink_to(raw / "example_seg.nii.gz")
    found = list(labelled_images([raw / "example_ct_sm.nii.gz"], labels_dir=tmp_path / "labels"))
    assert len(found) == SLICES_PER_VOLUME and {f[7] for f in found} == {"example_ct_sm.nii.gz"}
    for name, image, gts, labels, frame, boxes, masks, _ in found:
        assert image.ndim == 2 and image.dtype == np.uint8 and gts.shape == image.shape
        assert labels == [int(v) for v in np.unique(gts) if v] and len(boxes) == len(masks) == len(labels)
        assert name.startswith("example_ct_sm.nii.gz z")
    lesions = sorted(p.name for p in (dev_data / "imgs").glob("3DBox_CT_CT_Lesion_*.npz"))[:2]
    work = own_work_dir(models_ready, tmp_path / "work")
    done = fit("-i", layout(dev_data, lesions, tmp_path / "cases"), "--epochs", 2, work=work)
    assert done.returncode == 0 and "held out (2 cases): DSC" in done.stdout, done.stdout + done.stderr
    assert f"holding out {lesions[0]}\n" in done.stdout


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stopped_fit_says_so_and_keeps_nothing(dev_data, models_ready, tmp_path, stop):
    """Ctrl-C (the terminal's whole group) or SIGTERM (this process alone: the fit's child is stopped too) while
    the held-out folds run: one line saying nothing was kept, no traceback, exit 130 / 143, no temporary folder
    and no fitted file left."""
    import signal

    work = own_work_dir(models_ready, tmp_path / "work")
    cases = layout(dev_data, FUNDUS, tmp_path / "cases")
    temp = tmp_path / "temp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "fit", "-i", str(cases), "--epochs", "60"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "LITEMEDSAM_WORK_DIR": str(work), "TMPDIR": str(temp)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().startswith("fold 1: fitting on 1 case(s)")  # the folds run
    if stop == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    said = "interrupted" if stop == "ctrl-c" else "terminated (SIGTERM)"
    assert proc.returncode == (130 if stop == "ctrl-c" else 143), err
    assert err.strip() == f"{said}: nothing was kept (the fine-tuned slot is as it was)", err
    assert not list(temp.iterdir()) and not list(work.glob("litemedsam_ft_*"))


def test_the_fit_is_deterministic_and_leaves_the_encoder_as_it_was(dev_data, models_ready):
    import torch

    from export.fit import examples, fit_decoder
    from export.litemedsam import load_model
    from litemedsam.models.registry import CHECKPOINTS, verified_path

    model = load_model(verified_path(CHECKPOINTS["lite_medsam.pth"], "litemedsam models fetch"))
    data = examples(model, [dev_data / "imgs" / FUNDUS[0]])
    other = examples(model, [dev_data / "imgs" / FUNDUS[1]])
    lines: list = []  # each epoch's line with the held-out DSC then; scoring it changes nothing of the training
    a, _ = fit_decoder(model, data, epochs=2, log=lines.append, held=other)
    b, _ = fit_decoder(model, data, epochs=2, log=lambda line: None)
    assert len(lines) == 2 and all(line.startswith(f"epoch {k}/2: loss ") and ", held-out DSC " in line
                                   for k, line in zip((1, 2), lines))
    from evaluation.compute_metrics import case_metrics
    from export.fit import labels_of

    dsc = 100 * case_metrics(other[0].gts, labels_of(a, other[0]), None)[0]
    assert lines[-1].endswith(f", held-out DSC {dsc:.2f}"), (lines, dsc)
    sa, sb, base = a.state_dict(), b.state_dict(), model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(sa[k], base[k]) for k in sa if k.startswith("image_encoder."))
    assert any(not torch.equal(sa[k], base[k]) for k in sa if k.startswith("mask_decoder."))
