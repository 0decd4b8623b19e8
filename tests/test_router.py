"""Router decisions: modality spellings, rules, fallback chains, overrides and bad router files."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from litemedsam.cli import main
from litemedsam.methods.pipeline import majority_vote, segment_3d, segment_multiview
from litemedsam.models.registry import MODELS
from litemedsam.methods.prompting import choose_model
from litemedsam.methods.router import Router, RouterError

# <Mod> spellings: those of the dev set and of the challenge's file names
SPELLINGS = {
    "CT": "CT", "MR": "MR", "MRI": "MR", "PET": "PET", "US": "US", "Endoscopy": "Endoscopy", "Fundus": "Fundus",
    "OCT": "OCT", "Dermoscopy": "Dermoscopy", "Mammography": "Mammography", "Mammo": "Mammography",
    "XRay": "XRay", "X-Ray": "XRay", "Xray": "XRay", "CXR": "XRay", "xray": "XRay",
    "Microscope": "Microscopy", "Microscopy": "Microscopy", "microscope": "Microscopy",
}


def chosen(decision, directory=None, exact: bool = False) -> SimpleNamespace:
    """What a case runs with: the router's decision, its propagation and the model chosen from its chain (in
    ``directory``), read as one."""
    c = choose_model(decision.models, directory, exact)
    fields = {k: getattr(decision, k) for k in ("case", "dim", "tag", "modality", "rule", "models")}
    return SimpleNamespace(**vars(decision.propagation), **fields, model=c.model, skipped=c.skipped,
                           encoder=c.encoder, describe=lambda: decision.describe(c.model, c.skipped))


@pytest.fixture
def router():
    return Router.load()


# A router of chains, strategies and prompts (the mechanisms), apart from the shipped router's evidence-based rules
CHAINS = """version = 1
[modalities]
CT = ["CT"]
PET = ["PET", "PT"]
XRay = ["XRay", "X-Ray", "CXR"]
Microscopy = ["Microscopy", "Microscope"]
[[rules]]
name = "PET volumes"
dim = "3D"
modality = ["PET"]
models = ["litemedsam-ft", "litemedsam"]
strategy = "multiview"
[[rules]]
name = "microscopy"
modality = ["Microscopy"]
models = ["litemedsam-ft", "efficientsam-ti-int8", "litemedsam"]
prompt = "box+center"
[[rules]]
name = "X-ray"
modality = ["XRay"]
models = ["efficientsam-ti-int8", "litemedsam"]
[[rules]]
name = "everything else"
models = ["litemedsam"]
"""


@pytest.fixture
def chains(tmp_path):
    (tmp_path / "chains.toml").write_text(CHAINS)
    return Router.load(tmp_path / "chains.toml")


def built(directory, name):
    """Pretend model ``name`` is built in ``directory`` (routing checks presence, not content)."""
    spec = MODELS[name]
    for entry in spec.graphs:
        (directory / entry.file).write_bytes(b"x")
    if not spec.pinned:
        (directory / f"{name}.manifest.json").write_text(json.dumps({"files": {}}))


@pytest.mark.parametrize("spelling,canonical", sorted(SPELLINGS.items()))
def test_every_spelling_is_understood(router, spelling, canonical):
    assert router.modality(spelling) == canonical
    assert router.decide(f"2DBox_{spelling}_demo_0001.npz").modality == canonical


def test_dev_set_names(router, dev_data):
    expected = {"CT", "MR", "Endoscopy", "Fundus", "Microscopy", "OCT", "US", "XRay"}
    seen = {router.decide(p.name).modality for p in (dev_data / "imgs").glob("*.npz")}
    assert seen == expected


def test_oct_is_not_ct(router):
    assert router.decide("2DBox_OCT_MedScribble-OCTA500_10023.npz").modality == "OCT"
    assert router.modality("OCTA") is None  # whole-word match only
    assert router.decide("3DBox_CT_OCTOPUS_1.npz").modality == "CT"


def test_rules_with_everything_built(chains, tmp_path):
    router = chains
    for name in ("litemedsam", "litemedsam-ft", "efficientsam-ti-int8"):
        built(tmp_path, name)
    d = chosen(router.decide("3DBox_PET_autoPET_0001.npz"), tmp_path)
    assert (d.model, d.strategy, d.dim) == ("litemedsam-ft", "multiview", "3D")
    assert chosen(router.decide("2DBox_Microscope_cells_1.npz"), tmp_path).model == "litemedsam-ft"
    d = chosen(router.decide("2DBox_X-Ray_chest_1.npz"), tmp_path)
    assert (d.model, d.prompt) == ("efficientsam-ti-int8", "box")
    d = chosen(router.decide("3DBox_CT_abdomen_1.npz"), tmp_path)
    assert (d.model, d.strategy, d.margin) == ("litemedsam", "propagate", 3)
    assert chosen(router.decide("2DBox_PET_slice_1.npz"), tmp_path).model == "litemedsam"  # 2D PET: default rule


def test_fallback_chain_names_what_is_missing(chains, tmp_path):
    router = chains
    built(tmp_path, "litemedsam")
    d = chosen(router.decide("2DBox_Microscopy_cells_1.npz"), tmp_path)
    assert d.model == "litemedsam"
    assert [m for m, _ in d.skipped] == ["litemedsam-ft", "efficientsam-ti-int8"]
    assert d.skipped[0][1].endswith("litemedsam_ft_encoder.onnx")
    built(tmp_path, "efficientsam-ti-int8")
    d = chosen(router.decide("2DBox_Microscopy_cells_1.npz"), tmp_path)
    assert (d.model, d.prompt) == ("efficientsam-ti-int8", "box+center")
    assert "prompt box+center" in d.describe()


def test_nothing_built(router, tmp_path):
    d = chosen(router.decide("2DBox_CT_x_1.npz"), tmp_path)
    assert d.model is None and d.skipped[0][0] == "litemedsam"


def test_overrides(chains, tmp_path):
    router = chains
    for name in ("litemedsam", "litemedsam-ft"):
        built(tmp_path, name)
    assert chosen(router.decide("2DBox_CT_x_1.npz", modality="Microscope"), tmp_path).model == "litemedsam-ft"
    assert chosen(router.decide("case.npz", dim="3D", modality="PET"), tmp_path).strategy == "multiview"
    assert chosen(router.decide("2DBox_Microscopy_x.npz", model="litemedsam"), tmp_path).model == "litemedsam"
    d = chosen(router.decide("mystery.npz", dim="2D"), tmp_path)
    assert (d.modality, d.rule, d.model) == (None, "everything else", "litemedsam")


BAD = {
    "not toml": ("version = = 1", "not valid TOML"),
    "no version": ("[[rules]]\nmodels = ['litemedsam']", "version = 1"),
    "unknown model": ("version = 1\n[[rules]]\nmodels = ['sam-xxl']", "unknown model 'sam-xxl'"),
    "prompt-free model": ("version = 1\n[[rules]]\nmodels = ['samed', 'litemedsam']", "samed takes no boxes"),
    "unknown key": ("version = 1\n[[rules]]\nmodels = ['litemedsam']\nmodel = 'x'", "unknown key(s) model"),
    "strategy": ("version = 1\n[[rules]]\nmodels = ['litemedsam']\nstrategy = 'sideways'", "strategy must be"),
    "modality": ("version = 1\n[[rules]]\nmodality = ['CT']\nmodels = ['litemedsam']", "'CT' is not in [modalities]"),
    "no rules": ("version = 1\n[modalities]\nCT = ['CT']", "at least one [[rules]]"),
    "twice": (
        "version = 1\n[modalities]\nCT = ['CT']\nOCT = ['ct']\n[[rules]]\nmodels = ['litemedsam']",
        "both CT and OCT",
    ),
    "margin": ("version = 1\n[[rules]]\nmodels = ['litemedsam']\nmargin = -2", "margin must be"),
    "stride": ("version = 1\n[[rules]]\nmodels = ['litemedsam']\nstride = 0", "stride must be an integer 1-16"),
    "stop": ("version = 1\n[[rules]]\nmodels = ['litemedsam']\nstop = true", "stop must be an integer 0-64"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_router_files_are_named(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / "my-router.toml"
    path.write_text(text)
    with pytest.raises(RouterError) as err:
        Router.load(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_faster_3d_options_and_exact(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(
        "version = 1\n[modalities]\nCT = ['CT']\n[[rules]]\nmodels = ['litemedsam']\nstride = 2\nstop = 3\n"
    )
    router = Router.load(path)
    d = router.decide("3DBox_CT_x.npz")
    how = d.propagation
    assert (how.stride, how.stop) == (2, 3) and "every 2 slices, stop after 3 empty" in d.describe()
    how = router.decide("3DBox_CT_x.npz", exact=True).propagation
    assert (how.stride, how.stop) == (1, 0)


def test_shipped_router_ships_only_what_passed_the_rule(router):
    """benchmarks/shipping.py's rule on the dev cases (README, Routing): no faster 3D option anywhere (stride 2
    lost 6 DSC points on a dev MR volume), no strategy for a modality with fewer than 4 dev cases (PET: none,
    so no multi-view), no model without evidence (EfficientSAM has no weights here); mask strategies only for
    2D microscopy (clip 0) and 3D CT and MR (the smaller object wins where objects overlap)."""
    from litemedsam.core.masks import EXACT, MaskPolicy

    for name in ("3DBox_MR_x.npz", "3DBox_CT_x.npz", "3DBox_PET_x.npz", "3DBox_US_x.npz", "2DBox_MR_x.npz"):
        d = chosen(router.decide(name))
        assert (d.stride, d.stop, d.strategy, d.models) == (1, 0, "propagate", ("litemedsam",)), name
    policy = {name: router.decide(name).propagation.policy
              for name in ("3DBox_MR_x.npz", "3DBox_CT_x.npz", "3DBox_PET_x.npz", "2DBox_Microscopy_x.npz")}
    assert policy["3DBox_MR_x.npz"] == policy["3DBox_CT_x.npz"] == MaskPolicy(overlap="smaller")
    assert policy["3DBox_PET_x.npz"] == EXACT
    assert policy["2DBox_Microscopy_x.npz"] == MaskPolicy(clip=0)
    assert router.decide("2DBox_CT_x.npz").propagation.policy == EXACT
    assert router.decide("2DBox_XRay_x.npz").propagation.policy == EXACT
    assert all(rule.models == ("litemedsam",) for rule in router.rules)  # no warning about models never built


def test_no_catch_all_rule(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("version = 1\n[modalities]\nCT = ['CT']\n[[rules]]\nmodality = ['CT']\nmodels = ['litemedsam']\n")
    with pytest.raises(RouterError, match="no rule matches 2D MR"):
        Router.load(path).decide("2DBox_MR_x.npz")


def test_cli_route_and_bad_router(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["route", "3DBox_PET_a_1.npz", "2DBox_CXR_b_2.npz", "2DBox_OCT_c.npz"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("    ")]
    assert "3D PET" in lines[0] and "propagate" in lines[0]
    assert "2D XRay" in lines[1] and "2D OCT" in lines[2]
    (tmp_path / "chains.toml").write_text(CHAINS)
    result = runner.invoke(main, ["route", "--router", str(tmp_path / "chains.toml"), "3DBox_PET_a_1.npz"])
    assert result.exit_code == 0 and "multiview" in result.output, result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[[rules]]\nmodels = ['nope']\n")
    (tmp_path / "in").mkdir()
    result = runner.invoke(
        main, ["infer", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--router", str(bad)]
    )
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        main, ["infer", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--modality", "Xylophone"]
    )
    assert result.exit_code == 2 and "--modality 'Xylophone'" in result.output
    result = runner.invoke(main, ["route", "--show"])
    assert "version = 1" in result.output


def test_route_reads_a_case_as_infer_does(tmp_path):
    """A NIfTI volume is 3D and one in Hounsfield units is CT, whatever its name: route says what infer does."""
    nib = pytest.importorskip("nibabel")
    volume = np.full((24, 24, 4), -1000, np.int16)
    volume[6:18, 6:18] = 40
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "patient_7.nii.gz"))
    result = CliRunner().invoke(main, ["route", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "patient_7.nii.gz: 3D CT" in result.output and "CT and MR volumes" in result.output


# ---------------------------------------------------------------- multi-view fusion


def test_majority_vote():
    a = np.array([0, 1, 1, 2, 1, 3], np.uint8)
    b = np.array([0, 1, 0, 2, 2, 1], np.uint8)
    c = np.array([1, 0, 1, 1, 0, 2], np.uint8)
    assert majority_vote(a, b, c).tolist() == [0, 1, 1, 2, 0, 0]


def test_multiview_on_a_box_shaped_object():
    from test_propagation import ThresholdSegmenter, volume_with_cube

    vol = volume_with_cube(d=16, h=40, w=48, z=(3, 12), y=(10, 30), x=(8, 36))
    boxes = np.array([[8, 10, 3, 36, 30, 12]])
    seg = ThresholdSegmenter()
    axial = segment_3d(seg, vol, boxes)
    fused = segment_multiview(ThresholdSegmenter(), vol, boxes)
    truth = (vol == 200).astype(np.uint8)
    assert (axial == truth).all()
    assert (fused == truth).all()


def test_a_fitted_modality_goes_to_the_fitted_model_in_the_shipped_router_only(tmp_path, monkeypatch):
    """litemedsam fit --modality M: the shipped router sends M's cases (2D and 3D, each with its rule's propagation)
    to the fine-tuned slot first, its own chain after it; other modalities and a router of your own are as they
    were; without a built slot (or a fit without a modality) nothing changes."""
    monkeypatch.setenv("LITEMEDSAM_WORK_DIR", str(tmp_path))
    shipped = Router.load()
    built(tmp_path, "litemedsam")
    built(tmp_path, "litemedsam-ft")
    assert [r.name for r in Router.load().rules] == [r.name for r in shipped.rules]  # a fit without a modality
    manifest = tmp_path / "litemedsam-ft.manifest.json"
    manifest.write_text(json.dumps({"files": {}, "fit": {"modality": "Fundus"}}))
    fitted = Router.load()
    for name in ("2DBox_Fundus_x_1.npz", "3DBox_Fundus_x_1.npz"):
        before, after = shipped.decide(name), fitted.decide(name)
        assert after.models[0] == "litemedsam-ft" and after.models[1:] == before.models
        assert after.propagation == before.propagation and "fitted for Fundus" in after.rule
        assert chosen(after, tmp_path).model == "litemedsam-ft"
    for name in ("2DBox_OCT_x_1.npz", "3DBox_CT_x_1.npz", "2DBox_Dermoscopy_x_1.npz"):
        assert fitted.decide(name) == shipped.decide(name)
    (tmp_path / "own.toml").write_text(CHAINS)
    assert not any("fitted" in r.name for r in Router.load(tmp_path / "own.toml").rules)
    (tmp_path / MODELS["litemedsam-ft"].graphs[0].file).unlink()  # the slot not built: as shipped
    assert Router.load().decide("2DBox_Fundus_x_1.npz") == shipped.decide("2DBox_Fundus_x_1.npz")
