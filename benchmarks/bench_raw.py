"""Users' own volumes as ``infer`` reads them: the raw files of ../shared/data/raw (CT NIfTI in HU, MR FLAIR NIfTI,
NRRD brain MR), each with boxes from its label file, and volumes made from them as users also have them: the CT
under a name that does not say CT, and the BraTS FLAIR z-scored inside the brain (0 outside, as many
pipelines store MR). DSC and NSD over the label values present in the label file, with the default router and
with ``--exact``, as infer's intensity rule, router and pipeline give them.

    python -m benchmarks.bench_raw [--raw DIR] [--match TEXT]

Only the public reading and prompting pieces are used, so the same script measures an older checkout too:
``cd OLD_CHECKOUT && python /path/to/benchmarks/bench_raw.py``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd()))  # the checkout this is run from (its litemedsam, its evaluation)

from evaluation.compute_metrics import case_metrics  # noqa: E402
from litemedsam.io import formats  # noqa: E402
from litemedsam.io.given_boxes import CaseInputs  # noqa: E402
from litemedsam.methods.prompting import BoxPrompting  # noqa: E402
from litemedsam.methods.router import Router  # noqa: E402
from litemedsam.models.segmenter import make_segmenter  # noqa: E402

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"


def zscored(flair: Path, target: Path) -> Path:
    """The FLAIR as (x - mean) / std inside the brain (its non-zero voxels), exactly 0 outside."""
    import nibabel as nib

    image = nib.load(str(flair))
    data = np.asanyarray(image.dataobj).astype(np.float32)
    brain = data != 0
    out = np.zeros_like(data)
    out[brain] = (data[brain] - data[brain].mean()) / data[brain].std()
    nib.save(nib.Nifti1Image(out, image.affine, image.header), str(target))
    return target


def cases(raw: Path, tmp: Path) -> list:
    """(what, image file, label file, --modality) of every volume measured."""
    renamed = tmp / "abdomen.nii.gz"
    renamed.symlink_to(raw / "example_ct_sm.nii.gz")
    return [
        ("CT NIfTI, --modality CT", raw / "example_ct_sm.nii.gz", raw / "example_seg.nii.gz", "CT"),
        ("CT NIfTI named abdomen.nii.gz, no --modality", renamed, raw / "example_seg.nii.gz", None),
        ("BraTS FLAIR NIfTI, --modality MR", raw / "BraTS2021_01646_flair.nii.gz",
         raw / "BraTS2021_01646_edema_label.nii.gz", "MR"),
        ("BraTS FLAIR z-scored, --modality MR", zscored(raw / "BraTS2021_01646_flair.nii.gz", tmp / "flair_z.nii.gz"),
         raw / "BraTS2021_01646_edema_label.nii.gz", "MR"),
        ("brain1 NRRD, --modality MR", raw / "brain1_image.nrrd", raw / "brain1_label.nrrd", "MR"),
    ]


def scores(gts: np.ndarray, segs: np.ndarray, spacing) -> tuple:
    """DSC and NSD over the label values present in ``gts`` (numbered 1..K for the official metrics)."""
    present = np.unique(gts[gts > 0])
    lut = np.zeros(int(max(gts.max(), segs.max())) + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    return case_metrics(lut[gts], lut[segs], spacing)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--match", default="")
    args = parser.parse_args(argv)
    router = Router.load()
    seg = make_segmenter("litemedsam")
    print("| volume | rule | default: DSC, NSD | --exact: DSC, NSD | warnings |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for what, image, labels, modality in cases(args.raw, Path(tmp)):
            if args.match not in what:
                continue
            case = formats.read(image, CaseInputs(labels=labels, modality=modality))
            gts = formats.module_for(labels).read_labels(labels)[0].astype(np.int64)
            spacing = voxel_spacing(labels)
            row = []
            for exact in (False, True):
                prompting = BoxPrompting(router, modality=modality, exact=exact)
                plan = prompting.choose(case)
                segs = prompting.segment(seg, case, plan)
                row.append(scores(gts, segs.astype(np.int64), spacing))
            notes = "; ".join(w for w in case.warnings if "Hounsfield" in w)
            print(f"| {what} | {plan.decision.rule} | {100 * row[0][0]:.2f}, {100 * row[0][1]:.2f} | "
                  f"{100 * row[1][0]:.2f}, {100 * row[1][1]:.2f} | {notes[:60]} |", flush=True)
    return 0


def voxel_spacing(path: Path) -> list:
    """mm per axis of the (D, H, W) array the readers give."""
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return [float(v) for v in nib.load(str(path)).header.get_zooms()[:3][::-1]]
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return [float(v) for v in reader.GetSpacing()[::-1]]


if __name__ == "__main__":
    raise SystemExit(main())
