"""Mask strategies (litemedsam.core.masks): each function on small known masks, the policy through the pipeline
with a transparent stand-in model, the router's keys, and --exact giving the reference's masks."""
import numpy as np
import pytest

from litemedsam.core.errors import RouterError
from litemedsam.core.masks import EXACT, MaskPolicy, clip_to_box, fill_holes, keep_component
from litemedsam.methods.pipeline import Canvas, Propagation, segment_2d
from litemedsam.methods.router import Router


def blobs():
    m = np.zeros((40, 40), bool)
    m[5:15, 5:15] = True  # 100 pixels, holds the centre of box (0, 0, 20, 20)
    m[25:38, 25:38] = True  # 169 pixels, the largest
    return m


def test_clip_drops_pixels_outside_the_box_and_margin():
    m = np.ones((20, 30), bool)
    out = clip_to_box(m, (5, 4, 10, 8), 2)
    ys, xs = np.nonzero(out)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (3, 12, 2, 10)
    assert not clip_to_box(m, (100, 100, 120, 120), 0).any()


def test_components_largest_and_centre():
    m = blobs()
    largest = keep_component(m, (0, 0, 20, 20), "largest")
    assert largest.sum() == 169 and largest[30, 30]
    centre = keep_component(m, (0, 0, 20, 20), "centre")
    assert centre.sum() == 100 and centre[10, 10]
    # no component under the centre: the largest
    assert keep_component(m, (16, 16, 24, 24), "centre").sum() == 169
    single = np.zeros((10, 10), bool)
    single[2:4, 2:4] = True
    assert keep_component(single, (0, 0, 9, 9), "centre") is single


def test_fill_holes_leaves_border_background():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5:8, 5:8] = False  # a hole
    m[0:5, 15] = True  # a wall with a notch open to the border: not a hole
    out = fill_holes(m)
    assert out[6, 6] and out[5:8, 5:8].all()
    assert out.sum() == m.sum() + 9


def test_policy_exact_is_a_no_op():
    m = blobs()
    assert EXACT.exact and EXACT.apply(m, (0, 0, 20, 20), 1.0) is m
    p = MaskPolicy(clip=0, component="largest", fill=True)
    assert not p.exact and p.apply(m, (0, 0, 20, 20), 1.0).sum() == 100  # clipped to the box first


def test_canvas_overlap_by_label_by_logit_and_by_size():
    a = np.zeros((4, 4), bool)
    a[:, :3] = True
    b = np.zeros((4, 4), bool)
    b[:, 1:] = True
    la, lb = np.full((4, 4), 5.0, np.float32), np.full((4, 4), 1.0, np.float32)
    by_label = Canvas((4, 4), 2)
    by_label.paint(None, b, 2)
    by_label.paint(None, a, 1)
    assert (by_label.labels[:, 1:] == 2).all()  # the higher label wins, whatever the order
    by_logit = Canvas((4, 4), 2, "logit")
    by_logit.paint(None, a, 1, la)
    by_logit.paint(None, b, 2, lb)
    by_logit.paint(None, np.ones((4, 4), bool), 3)  # no logits (interpolated): only where nothing is
    assert (by_logit.labels[:, :3] == 1).all() and (by_logit.labels[:, 3] == 2).all()
    inner = np.zeros((4, 4), bool)
    inner[1:3, 1:3] = True
    for order in ((1, 2), (2, 1)):  # a nested object keeps its place whatever the label order
        by_size = Canvas((4, 4), 2, "smaller")
        masks = {order[0]: np.ones((4, 4), bool), order[1]: inner}
        for label in (1, 2):
            by_size.paint(None, masks[label], label)
        assert (by_size.labels[inner] == order[1]).all() and (by_size.labels[~inner] == order[0]).all()
    tie = Canvas((4, 4), 2, "smaller")
    tie.paint(None, b, 2)
    tie.paint(None, a, 1)
    assert (tie.labels[:, 1:] == 2).all() and (tie.labels[:, 0] == 1).all()  # equal sizes: the higher label


def test_router_keys_checked_and_exact_turns_them_off():
    def router(**keys):
        return Router.from_dict({"version": 1, "modalities": {"CT": ["CT"]},
                                 "rules": [{"models": ["litemedsam"], **keys}]})

    d = router(clip=5, component="centre", fill=True, overlap="logit").decide("2DBox_CT_x.npz")
    assert d.propagation.policy == MaskPolicy(5, "centre", True, "logit") and "masks: clip 5" in d.describe()
    assert router(clip=5).decide("2DBox_CT_x.npz", exact=True).propagation.policy is EXACT
    assert router(smooth=3, middle=True).decide("3DBox_CT_x.npz").propagation.policy == MaskPolicy(
        smooth=3, middle=True
    )
    for bad in ({"clip": -1}, {"clip": True}, {"component": "biggest"}, {"fill": "yes"}, {"overlap": "max"},
                {"smooth": 1}, {"smooth": 2.5}, {"middle": "yes"}):
        with pytest.raises(RouterError):
            router(**bad)


def test_2d_pipeline_applies_the_policy():
    from tests.test_propagation import ThresholdSegmenter

    img = np.zeros((40, 40), np.uint8)
    img[5:15, 5:15] = 200
    img[25:38, 25:38] = 200
    box = np.array([[0, 0, 39, 39]])
    assert (segment_2d(ThresholdSegmenter(), img, box) == 1).sum() == 269
    out = segment_2d(ThresholdSegmenter(), img, box, how=Propagation(policy=MaskPolicy(component="largest")))
    assert (out == 1).sum() == 169


def test_logit_overlap_on_real_graphs(segmenter, dev_data):
    """On a real 2D case with 15 overlapping organ boxes: overlap "logit" labels each pixel with the object whose
    logit there is highest among the objects whose mask covers it; elsewhere the map equals the exact one."""
    from litemedsam.io.formats.challenge import load_case

    case = load_case(dev_data / "imgs" / "2DBox_CT_SAMMed2D_s0114_111.npz")
    exact = segment_2d(segmenter, case.image, case.boxes)
    by_logit = segment_2d(segmenter, case.image, case.boxes, how=Propagation(policy=MaskPolicy(overlap="logit")))
    emb = segmenter.encode(case.image)
    logits = np.stack(list(segmenter.logit_maps(emb, emb.frame.boxes_to_model(case.boxes))))
    covered = logits > 0
    expected = np.where(covered.any(0), 1 + np.argmax(np.where(covered, logits, -np.inf), axis=0), 0)
    assert np.array_equal(by_logit, expected)
    single = covered.sum(0) <= 1
    assert np.array_equal(by_logit[single], exact[single]) and not np.array_equal(by_logit, exact)


def test_clip_on_real_graphs_keeps_labels_inside_their_boxes(segmenter, dev_data):
    from litemedsam.io.formats.challenge import load_case

    case = load_case(dev_data / "imgs" / "2DBox_Microscopy_stardist_img2d.npz")
    out = segment_2d(segmenter, case.image, case.boxes, how=Propagation(policy=MaskPolicy(clip=0)))
    for label, (x0, y0, x1, y1) in enumerate(case.boxes.astype(int), 1):
        ys, xs = np.nonzero(out == label)
        if ys.size:
            assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1


def test_recheck_flags_area_jumps_and_the_middle_slice():
    p = MaskPolicy(smooth=2)
    areas = {1: 100, 2: 110, 3: 400, 4: 120, 5: 0, 6: 130, 7: 125}
    assert [z for z, _, _ in p.recheck(areas, z_mid=4)] == [3, 5]  # 400 > 2 x 120; 0 < 120 / 2
    assert [(z, a, b) for z, a, b in MaskPolicy(smooth=2).recheck({1: 100, 2: 40, 3: 100}, 2)] == [(2, 1, 3)]
    assert [z for z, _, _ in MaskPolicy(middle=True).recheck(areas, z_mid=4)] == []  # a neighbour is empty
    assert [z for z, _, _ in MaskPolicy(middle=True).recheck(areas, z_mid=2)] == [2]


def test_recheck_reprompts_a_jumping_slice_with_its_neighbours_box():
    """A stand-in model that once leaks on slice 6: with smooth = 2 that slice is decoded again with the box of
    slices 5 and 7 and repainted without the leak; without it the leak stays."""
    from tests.test_propagation import ThresholdSegmenter, volume_with_cube
    from litemedsam.methods.pipeline import segment_3d

    class Leaky(ThresholdSegmenter):
        leaked = False

        def predict(self, emb, boxes, prompt="box"):
            out = super().predict(emb, boxes, prompt)
            if emb.features[0, 0] == 6 and not self.leaked:
                self.leaked = True
                out[0, 45:64, :] = True
            return out

    vol = volume_with_cube()
    box = np.array([[10, 20, 2, 30, 40, 9]])
    plain = segment_3d(Leaky(), vol, box)
    assert plain[6, 50, 5] == 1
    seg = Leaky()
    fixed = segment_3d(seg, vol, box, how=Propagation(policy=MaskPolicy(smooth=2)))
    assert fixed[6, 50, 5] == 0 and (fixed[6] == 1).sum() == (fixed[5] == 1).sum()
    assert [int(s[0, 0]) for s in seg.encoded].count(6) == 2
