"""Clicks correct a segmentation (litemedsam.methods.refine): a foreground click grows the object by the ball that
reaches it, a background click removes the ball that reaches its edge, both within the click's intensity; a click
the map already agrees with changes nothing, so applying every click again keeps every earlier fix; infer applies
a case's clicks to its previous prediction (the 2025 layout), and a case that starts from clicks is built by the
model from its first click."""

import numpy as np

from litemedsam.methods.refine import refine
from tests.test_infer_real import cli


def disk_image(shape=(1, 64, 64), centre=(32, 32), radius=12):
    yy, xx = np.ogrid[:shape[1], :shape[2]]
    inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2
    image = np.where(inside, 200, 40).astype(np.uint8)
    return np.broadcast_to(image, shape).copy(), np.broadcast_to(inside, shape).copy()


def test_a_foreground_click_grows_the_object_within_its_intensity():
    image, truth = disk_image()
    labels = truth.astype(np.uint8)
    labels[:, :, 32:] = 0  # the right half missed
    out = refine(labels.copy(), [[("fg", (0, 32, 40))]], image)
    assert out[0, 32, 40] == 1 and out.sum() > labels.sum() + 50
    assert not (out.astype(bool) & ~truth).any()  # the ball stops at the disk's edge (the intensity changes)


def test_a_background_click_shrinks_it_and_a_click_already_true_changes_nothing():
    image, truth = disk_image()
    labels = np.ones_like(truth, np.uint8)  # everything: over-segmented
    out = refine(labels.copy(), [[("bg", (0, 4, 4))]], image)
    assert out[0, 4, 4] == 0 and out[truth].all()  # the background went, the disk stayed
    assert np.array_equal(refine(out.copy(), [[("fg", (0, 32, 32))]], image), out)  # already the object there


def test_applying_every_click_again_keeps_earlier_fixes():
    image, truth = disk_image()
    labels = truth.astype(np.uint8)
    labels[:, :, 36:] = 0
    first = refine(labels.copy(), [[("fg", (0, 32, 40))]], image)
    both = [[("fg", (0, 32, 40)), ("bg", (0, 5, 60))]]
    again = refine(first.copy(), both, image)
    assert np.array_equal(again, refine(labels.copy(), both, image))  # from prev or from scratch: the same
    assert again[0, 32, 40] == 1


def test_a_click_follows_the_models_contour_along_the_error():
    """A foreground click in the middle of a band the object misses on every slice: with the model's logits
    (their contour 4 pixels outside the object) the edit takes the band on the slices beyond its ball, to the
    model's contour through the click and a margin, and no further; a background click likewise; where the
    model was sure (its logit far from 0 at the click), only the ball."""
    image, truth = disk_image((15, 64, 64), radius=14)
    labels, _ = disk_image((15, 64, 64), radius=8)
    labels = (labels == 200).astype(np.uint8)
    yy, xx = np.ogrid[:64, :64]
    distance = np.sqrt((yy - 32) ** 2 + (xx - 32) ** 2)
    logits = lambda level: (lambda z, label: (10 - distance + level).astype(np.float32))  # noqa: E731
    balls = refine(labels.copy(), [[("fg", (7, 32, 42))]], image)
    followed = refine(labels.copy(), [[("fg", (7, 32, 42))]], image, logits=logits(0))
    assert followed.sum() > balls.sum() and followed[1, 32, 42] and not balls[1, 32, 42]  # 6 slices away
    assert not followed[:5, distance > 11].any()  # the contour through the click (10) and the margin (1)
    assert np.array_equal(refine(labels.copy(), [[("fg", (7, 32, 42))]], image, logits=logits(-40)), balls)
    shrunk = refine(truth.astype(np.uint8), [[("bg", (7, 32, 44))]], image, logits=logits(2))  # contour at 12
    assert not shrunk[1, 32, 44] and shrunk[:5, distance <= 10].all()


def test_2d_maps_and_other_objects():
    image, truth = disk_image()
    labels = np.zeros((64, 64), np.uint8)
    labels[truth[0] & (np.arange(64)[None, :] < 32)] = 1
    labels[truth[0] & (np.arange(64)[None, :] >= 32)] = 2  # object 2 holds what should be object 1's
    out = refine(labels.copy(), [[("fg", (0, 32, 44))], []], np.dstack([image[0]] * 3))
    assert out[32, 44] == 1 and (out == 2).sum() < (labels == 2).sum()


def test_infer_applies_the_clicks_to_the_previous_prediction(dev_data, models_ready, tmp_path):
    """The organisers' step: the dev CT lesion in the 2025 layout with its previous output and a foreground click
    on the lesion where the output missed it: the new output equals the previous one away from the click and
    holds the click; a background click removes what it is on. A box-free case of one click builds the lesion."""
    from evaluation.interactive import boxes_2025, next_click, write_case

    name = "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"
    data, gts = np.load(dev_data / "imgs" / name), np.load(dev_data / "gts" / name)["gts"]
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    write_case(folder / name, data["imgs"], data["spacing"], boxes_2025(gts), None, None, None)
    assert cli("infer", "-i", folder, "-o", out).returncode == 0
    prev = np.load(out / name)["segs"]
    kind, at = next_click(prev, gts, 1)
    write_case(
        folder / name,
        data["imgs"],
        data["spacing"],
        boxes_2025(gts),
        [{"fg": [list(at)] if kind == "fg" else [], "bg": [list(at)] if kind == "bg" else []}],
        [[kind]],
        prev,
    )
    done = cli("infer", "-i", folder, "-o", out)
    assert done.returncode == 0, done.stderr
    after = np.load(out / name)["segs"]
    changed = np.argwhere(after != prev)
    assert len(changed) and (after[at] == 1) == (kind == "fg")
    assert np.abs(changed - np.array(at)).max(axis=0)[1:].max() < 80  # near the click only
    dice = lambda s: 2 * ((s == 1) & (gts == 1)).sum() / ((s == 1).sum() + (gts == 1).sum())  # noqa: E731
    assert dice(after) > dice(prev)
    # no boxes: one foreground click in the middle of the lesion builds it
    z = int(np.argmax((gts == 1).sum(axis=(1, 2))))
    ys, xs = np.nonzero(gts[z] == 1)
    write_case(
        folder / name,
        data["imgs"],
        data["spacing"],
        None,
        [{"fg": [[z, int(np.median(ys)), int(np.median(xs))]], "bg": []}],
        [["fg"]],
        np.zeros_like(gts),
    )
    done = cli("infer", "-i", folder, "-o", out)
    assert done.returncode == 0, done.stderr
    assert dice(np.load(out / name)["segs"]) > 0.6
