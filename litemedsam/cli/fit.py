import json
import tempfile
from pathlib import Path

import click

from litemedsam.core.errors import CaseError, ModelError, shown


@click.command("fit")
@click.option("-i", "--input", "cases", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled cases in the challenge layout (CASES/imgs/*.npz and CASES/gts/*.npz), or a folder of "
                   "images or volumes (PNG, JPEG, TIFF, NIfTI, NRRD, DICOM, ...) with --labels.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A folder of label images named as the images of CASES (as infer's --boxes-from-labels): each "
                   "label value is an object.")
@click.option("--modality", default=None, help="The modality the cases are (a name the router knows, e.g. Fundus): "
              "kept, the fitted model then segments that modality's cases by default (infer, serve, the API), "
              "unless --model or a router of your own says otherwise.")
@click.option("--epochs", type=click.IntRange(min=1, max=10000), default=60, show_default=True)
@click.option("--lr", type=click.FloatRange(min=1e-7, max=1.0), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--minutes", type=click.FloatRange(min=0.1), default=None,
              help="Stop each fit after this long (default: the epochs).")
def fit(cases, labels, modality, epochs, lr, seed, minutes):
    """Fine-tune LiteMedSAM's decoder on your labelled cases (CPU, minutes), judged on cases held out.

    The image encoder stays as it is (each image is encoded once; a volume gives up to 8 of its slices with
    objects); the prompt encoder and mask decoder train on the objects' boxes, jittered. Each case is held out
    in turn (5 folds past 10 cases) and scored with the base and the fitted decoder; the model is kept only when
    the held-out cases say so (the shipping rule: the mean DSC rises by 0.5 point and NSD does not fall, two
    thirds improve or tie, none loses over 2 points, and the gain survives leaving any one out). Kept, it is
    fitted on every case and exported into the fine-tuned slot (`infer --model litemedsam-ft`). Needs a source
    checkout with the export extra (torch).
    """
    from litemedsam.cli.models import _need_export_tools, _run_export, in_child, stopped_says
    from litemedsam.models.registry import FITTED, MODELS, read_manifest, write_manifest

    _need_export_tools()
    check_labelled(cases, labels)
    if modality is not None:
        from litemedsam.methods.router import Router

        router = Router.load()
        router.check_modality(modality)
        modality = router.modality(modality)
    with tempfile.TemporaryDirectory(prefix="litemedsam-fit-") as tmp:
        merged, report_file = Path(tmp) / "merged.pth", Path(tmp) / "report.json"
        args = [str(cases.resolve()), "--out", str(merged), "--report", str(report_file), "--epochs", str(epochs),
                "--lr", str(lr), "--seed", str(seed)] + (["--minutes", str(minutes)] if minutes else []) + (
                    ["--labels", str(labels.resolve())] if labels else [])
        with stopped_says("nothing was kept (the fine-tuned slot is as it was)"):
            code = in_child(["export.fit", *args])
        if code != 0 or not report_file.is_file():
            raise CaseError("fitting failed (see above)")
        report = json.loads(report_file.read_text())
        mean = report["mean"]
        click.echo(f"held out ({len(report['held_out'])} cases): DSC {mean['base_dsc']:.2f} -> {mean['dsc']:.2f}, "
                   f"NSD {mean['base_nsd']:.2f} -> {mean['nsd']:.2f}")
        if not report["kept"]:
            failed = ", ".join(k for k, ok in report["rule"].items() if not ok)
            click.echo(f"not kept: the held-out cases do not pass the shipping rule (criteria {failed}); nothing was "
                       f"written")
            return
        try:
            _run_export(FITTED, quiet=True, checkpoint=merged)
        except ModelError as e:
            raise ModelError(f"the fitted decoder could not be exported: {e}") from None
        spec = MODELS[FITTED]
        report["modality"] = modality
        write_manifest(spec, **{**read_manifest(spec), "checkpoint": "litemedsam fit", "fit": report})
    click.echo(f"kept: {FITTED} now holds LiteMedSAM with the decoder fitted on {len(report['cases'])} case(s) of "
               f"{shown(cases)} (" + (f"{modality} cases go to it by default; " if modality else "")
               + f"`litemedsam infer --model {FITTED}`)")


def check_labelled(cases: Path, labels: Path | None) -> None:
    """CaseError unless every case of ``cases`` has its labels: the challenge layout's gts/ (without ``labels``),
    else a label image of its name in ``labels``."""
    if labels is None:
        imgs, gts = cases / "imgs", cases / "gts"
        if not imgs.is_dir() or not gts.is_dir():
            raise CaseError(f"{shown(cases)}: expected imgs/ and gts/ folders of .npz cases (the challenge layout), "
                            f"or images with --labels LABELS")
        found, where, missing = sorted(imgs.glob("*.npz")), gts, "no ground truth in gts/"
    else:
        from litemedsam.run.folders import list_cases

        found, where, missing = list_cases(cases)[0], labels, f"no label image in {shown(labels)}"
        if not found:
            raise CaseError(f"{shown(cases)}: no images (PNG, JPEG, TIFF, NIfTI, ...) in it")
    unlabelled = [p.name for p in found if not (where / p.name).is_file()]
    if unlabelled:
        raise CaseError(f"{shown(cases)}: {missing} for {shown(unlabelled[0])}"
                        + (f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""))
