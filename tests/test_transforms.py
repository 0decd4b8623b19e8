import numpy as np
import pytest

from litemedsam.core import transforms as T


@pytest.mark.parametrize("hw,expected", [((512, 512), (256, 256)), ((181, 258), (180, 256)),
                                         ((2604, 1726), (256, 170)), ((100, 50), (256, 128)), ((3, 1000), (1, 256))])
def test_resized_shape_rounds_half_up(hw, expected):
    assert T.resized_shape(*hw, 256) == expected


def test_preprocess_minmax_and_zero_padding():
    img = np.zeros((100, 50, 3), np.uint8)
    img[:, :, 0] = 10
    img[50:, :, 1] = 210
    x = T.preprocess(img, 256)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.all(x[0, :, :, 128:] == 0)  # width 50 -> 128, the rest is padding
    assert x[0, 0, 0, 0] == pytest.approx(10 / 210)
    assert x[0, 1, 255, 0] == pytest.approx(1.0)


def test_preprocess_of_constant_image_is_zero_and_grey_is_repeated():
    x = T.preprocess(np.full((64, 64), 77, np.uint8), 256)
    assert np.all(x == 0)
    g = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 256
    x = T.preprocess(g.astype(np.uint8), 256)
    assert np.array_equal(x[0, 0], x[0, 2])


def test_scale_boxes_truncates_like_the_reference():
    boxes = np.array([[11, 21, 101, 201]])
    assert T.scale_boxes(boxes, 512, 512, 256).tolist() == [[5, 10, 50, 100]]
    # 258 is the longest side: ratio 256/258
    assert T.scale_boxes(np.array([[257, 0, 257, 180]]), 181, 258, 256).tolist() == [[255, 0, 255, 178]]


def test_box_from_mask_widens_by_margin_and_clamps():
    mask = np.zeros((256, 256), bool)
    mask[50:61, 40:71] = True
    assert T.box_from_mask(mask, 1, 256).tolist() == [37, 47, 73, 63]
    mask[:] = False
    mask[250:, :2] = True
    assert T.box_from_mask(mask, 1, 256).tolist() == [0, 247, 4, 256]
    assert T.box_from_mask(np.zeros((256, 256), bool), 1, 256) is None


def test_box_from_mask_depends_on_label_value_as_the_reference():
    # one pixel of a 2x2 block: area interpolation gives label/4, which rounds to 0 for label 1
    mask = np.zeros((512, 512), bool)
    mask[100, 100] = True
    assert T.box_from_mask(mask, 1, 256) is None
    assert T.box_from_mask(mask, 255, 256).tolist() == [47, 47, 53, 53]


def test_postprocess_crops_padding_and_upsamples():
    logits = np.full((2, 256, 256), -5.0, np.float32)
    logits[0, :64, :64] = 5.0  # top-left quarter of the valid 128x256 area
    logits[1, 128:, :] = 5.0  # only padding is positive
    masks = T.postprocess_masks(logits, (128, 256), (64, 128))
    assert masks.shape == (2, 64, 128) and masks.dtype == bool
    assert masks[0, :32, :32].all() and masks[0].sum() == 32 * 32
    assert not masks[1].any()
