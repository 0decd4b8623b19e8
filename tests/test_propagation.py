"""The 3D propagation logic, driven by a transparent stand-in for the network: it segments the
bright pixels inside the prompt box. (The real graphs are exercised in test_infer_real.py.)"""
import numpy as np

from litemedsam.core import transforms as T
from litemedsam.core.frame import Frame
from litemedsam.methods.pipeline import segment_2d, segment_3d
from litemedsam.methods.propagation import Propagation
from litemedsam.models.segmenter import Embedding


class ThresholdSegmenter:
    """A box segmenter (the protocol of litemedsam.models.segmenter) in LiteMedSAM's 256 frame."""

    size = 256
    max_batch = 16
    encoder_file = None

    def __init__(self):
        self.encoded = []  # slice images passed to encode, by identity of content
        self.prompts = []  # (call number, boxes in the 256 frame)

    def frame(self, h, w):
        return Frame.longest_side(h, w, 256, 256, 64, truncate_boxes=True, reference_boxes_from_masks=True)

    def encode(self, image):
        self.encoded.append(image.copy())
        return Embedding(image, self.frame(*image.shape[:2]))

    def logit_maps(self, emb, boxes, prompt="box"):
        return (np.where(m, 1.0, -1.0).astype(np.float32) for m in self.predict(emb, boxes, prompt))

    def scored_logit_maps(self, emb, boxes, prompt="box"):
        return ((up, None) for up in self.logit_maps(emb, boxes, prompt))

    def slice_encoders(self):
        return []

    def warm_up(self):
        pass

    def predict(self, emb, boxes, prompt="box"):
        self.prompts.append(np.array(boxes))
        h, w = emb.original_hw
        ratio = max(h, w) / self.size
        out = np.zeros((len(boxes), h, w), bool)
        for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes) * ratio):
            x0, y0 = int(np.floor(x0)), int(np.floor(y0))
            x1, y1 = int(np.ceil(x1)), int(np.ceil(y1))
            out[i, y0:y1 + 1, x0:x1 + 1] = emb.features[y0:y1 + 1, x0:x1 + 1] > 100
        return out


def volume_with_cube(d=12, h=64, w=64, z=(2, 9), y=(20, 40), x=(10, 30)):
    vol = np.zeros((d, h, w), np.uint8)
    vol[z[0]:z[1] + 1, y[0]:y[1] + 1, x[0]:x[1] + 1] = 200
    for k in range(d):
        vol[k, 0, 0] = k  # make every slice distinct
    return vol


def test_slices_z_min_to_z_max_inclusive_each_encoded_once():
    vol = volume_with_cube()
    seg = ThresholdSegmenter()
    # two overlapping boxes, one propagating up where the other propagates down
    boxes = np.array([[10, 20, 2, 30, 40, 9], [10, 20, 5, 30, 40, 11]])
    out = segment_3d(seg, vol, boxes)
    encoded = [int(s[0, 0]) for s in seg.encoded]
    assert sorted(encoded) == list(range(2, 12))  # every slice of the union, once
    assert set(np.unique(out[2:5])) == {0, 1} and out[2:10, 30, 20].tolist() == [1, 1, 1, 2, 2, 2, 2, 2]
    assert not out[:2].any() and not out[10:].any()  # nothing bright there


def test_middle_slice_uses_given_box_then_previous_mask_box():
    vol = volume_with_cube(z=(0, 11), y=(20, 40), x=(10, 30))
    vol[7:, 20:41, 30:45] = 200  # the object grows outside the given box above slice 6
    seg = ThresholdSegmenter()
    out = segment_3d(seg, vol, np.array([[10, 20, 0, 30, 40, 11]]))
    z_mid = 5
    first = seg.prompts[0][0]
    assert first.tolist() == T.scale_boxes(np.array([[10, 20, 30, 40]]), 64, 64, 256)[0].tolist()
    # slice 6 is prompted with slice 5's mask box widened by 3 px in the 256 frame
    assert seg.prompts[1][0].tolist() == T.box_from_mask(out[z_mid] > 0, 1, 256).tolist()
    # propagation lets the mask follow the object beyond the given box (x1 = 30)
    assert out[11, 30, 33] == 1 and out[5, 30, 33] == 0


def test_empty_previous_mask_falls_back_to_given_box():
    vol = np.zeros((5, 32, 32), np.uint8)
    vol[2, 10:20, 10:20] = 200  # only the middle slice has the object
    seg = ThresholdSegmenter()
    segment_3d(seg, vol, np.array([[10, 10, 0, 19, 19, 4]]))
    given = T.scale_boxes(np.array([[10, 10, 19, 19]]), 32, 32, 256)[0].tolist()
    # slice 3 follows slice 2's mask; slice 4 follows an empty mask -> the given box
    assert seg.prompts[2][0].tolist() == given


def test_single_slice_box_is_segmented():
    vol = volume_with_cube(z=(4, 4))
    seg = ThresholdSegmenter()
    out = segment_3d(seg, vol, np.array([[10, 20, 4, 30, 40, 4]]))
    assert out[4].sum() == 21 * 21 and out.sum() == 21 * 21


def test_highest_label_wins_where_boxes_overlap_and_skipped_boxes_stay_empty():
    img = np.zeros((40, 40), np.uint8)
    img[5:30, 5:30] = 200
    seg = ThresholdSegmenter()
    out = segment_2d(seg, img, np.array([[5, 5, 29, 29], [10, 10, 20, 20], [0, 0, 39, 39]]), skipped=[3])
    assert len(seg.encoded) == 1 and len(seg.prompts) == 1  # one encode, one decoder call
    assert out[15, 15] == 2 and out[6, 6] == 1 and out.max() == 2
    vol = volume_with_cube()
    out3 = segment_3d(ThresholdSegmenter(), vol, np.array([[10, 20, 2, 30, 40, 9], [10, 20, 2, 20, 30, 9]]))
    assert out3[5, 25, 15] == 2 and out3[5, 35, 25] == 1


def test_more_than_255_boxes_gives_uint16():
    img = np.full((20, 20), 200, np.uint8)
    boxes = np.array([[i % 20, 0, i % 20, 0] for i in range(300)])
    out = segment_2d(ThresholdSegmenter(), img, boxes)
    assert out.dtype == np.uint16 and out.max() > 255


def test_cache_cap_only_costs_time(monkeypatch):
    vol = volume_with_cube()
    boxes = np.array([[10, 20, 2, 30, 40, 9], [10, 20, 5, 30, 40, 11]])
    full = segment_3d(ThresholdSegmenter(), vol, boxes)
    import litemedsam.methods.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_CACHED_SLICES", 0)
    seg = ThresholdSegmenter()
    assert np.array_equal(segment_3d(seg, vol, boxes), full)
    assert len(seg.encoded) > 10  # slices shared by both passes were encoded twice


def test_stride_encodes_every_kth_slice_and_interpolates_between():
    vol = volume_with_cube(d=16, z=(1, 14))
    exact = segment_3d(ThresholdSegmenter(), vol, np.array([[10, 20, 1, 30, 40, 14]]))
    seg = ThresholdSegmenter()
    fast = segment_3d(seg, vol, np.array([[10, 20, 1, 30, 40, 14]]), how=Propagation(stride=3))
    encoded = sorted(int(s[0, 0]) for s in seg.encoded)
    assert encoded == [1, 4, 7, 10, 13, 14]  # z_mid 7, up 7 10 13 14, down 4 1
    assert np.array_equal(fast, exact)  # a constant cross-section interpolates to itself


def test_interpolation_moves_a_shape_between_two_masks():
    from litemedsam.methods.pipeline import interpolate_masks

    a = np.zeros((40, 40), bool)
    a[5:25, 5:25] = True
    b = np.zeros((40, 40), bool)
    b[15:35, 15:35] = True
    (mid,) = interpolate_masks(a, b, 1)
    ys, xs = np.nonzero(mid)
    assert abs(ys.mean() - 19.5) < 1 and abs(xs.mean() - 19.5) < 1 and 100 < mid.sum() <= 400  # (corners rounded)
    assert interpolate_masks(a, np.zeros_like(a), 3)[-1].sum() < a.sum()  # shrinking towards an empty mask


def test_stop_ends_a_pass_after_empty_slices():
    vol = volume_with_cube(d=20, z=(8, 11))
    seg = ThresholdSegmenter()
    out = segment_3d(seg, vol, np.array([[10, 20, 0, 30, 40, 19]]), how=Propagation(stop=2))
    encoded = sorted(int(s[0, 0]) for s in seg.encoded)
    assert encoded == [6, 7, 8, 9, 10, 11, 12, 13]  # up from 9: 12, 13 empty -> stop; down: 7, 6 empty -> stop
    assert np.array_equal(out, segment_3d(ThresholdSegmenter(), vol, np.array([[10, 20, 0, 30, 40, 19]])))
