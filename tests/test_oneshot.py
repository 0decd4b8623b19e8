"""One-shot part-aware prompting: its pieces, and infer --reference on real cases."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from litemedsam.methods.oneshot import kmeans, wasserstein

REPO = Path(__file__).resolve().parent.parent


def test_kmeans_finds_separated_groups():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (50, 4)), rng.normal(5, 0.1, (30, 4)), rng.normal(-5, 0.1, (20, 4))])
    labels = kmeans(x, 3)
    assert sorted(np.bincount(labels).tolist()) == [20, 30, 50]
    assert (kmeans(x, 3) == labels).all()  # deterministic


def test_wasserstein_orders_distributions():
    rng = np.random.default_rng(2)
    a = rng.normal(0, 1, (200, 8))
    near, far = rng.normal(0.1, 1, (150, 8)), rng.normal(2.0, 1, (150, 8))
    assert wasserstein(a, near) < wasserstein(a, far)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=os.environ)


def test_infer_with_a_reference(models_ready, dev_data, tmp_path):
    kvasir = sorted((dev_data / "imgs").glob("2DBox_Endoscopy_Kvasir_*.npz"))
    reference, target = kvasir[0], kvasir[-1]
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / target.name).symlink_to(target)
    done = cli("infer", "-i", inp, "-o", tmp_path / "out", "--reference", reference,
               "--reference-mask", dev_data / "gts" / reference.name)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out" / target.name) as out, np.load(dev_data / "gts" / target.name) as gt:
        segs, gts = out["segs"], gt["gts"] > 0
    assert set(np.unique(segs)) <= {0, 1}
    assert 2 * ((segs > 0) & gts).sum() / ((segs > 0).sum() + gts.sum()) > 0.5
    # a reference without a mask is named, nothing runs
    lone = tmp_path / "lone" / reference.name
    lone.parent.mkdir()
    lone.write_bytes(reference.read_bytes())
    done = cli("infer", "-i", inp, "-o", tmp_path / "out2", "--reference", lone)
    assert done.returncode == 2 and "no usable mask" in done.stderr and "Traceback" not in done.stderr
    # a mask too small to cover one embedding cell: said once, before any case, as a usage error (exit 2)
    tiny = tmp_path / "tiny.npz"
    with np.load(reference) as data:
        mask = np.zeros(data["imgs"].shape[:2], np.uint8)
    mask[0, 0] = 1
    np.savez(tiny, gts=mask)
    done = cli("infer", "-i", inp, "-o", tmp_path / "out3", "--reference", reference, "--reference-mask", tiny)
    assert done.returncode == 2 and "covers no embedding cell" in done.stderr, done.stderr
    assert done.stderr.count("ERROR") == 1 and "internal error" not in done.stderr


def test_reference_of_any_format(dev_data, tmp_path):
    """--reference reads a 2D case of any format infer reads, its mask a label image of any format."""
    import cv2

    from litemedsam.methods.oneshot import load_reference

    name = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"
    image, mask = load_reference(dev_data / "imgs" / name)
    cv2.imwrite(str(tmp_path / "polyp.png"), image[:, :, ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "polyp_mask.png"), mask.astype(np.uint8))
    image2, mask2 = load_reference(tmp_path / "polyp.png", tmp_path / "polyp_mask.png")
    assert np.array_equal(image2, image) and np.array_equal(mask2, mask)
