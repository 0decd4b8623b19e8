"""The frame of an embedding: image <-> model input <-> low-res logits <-> embedding cells, for a model whose
input size differs from its logit size (SAM: input S, logits S/4, cells S/16). A small random SAM, real graphs."""
import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

SMALL_SAM = dict(img_size=256, width=64, depth=4, heads=4, window=7, global_blocks=(1, 3))


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    import torch

    from export.sam_vit import SamModel, export
    from litemedsam.models.registry import MODELS, write_manifest
    from litemedsam.models.segmenter import make_segmenter

    out = tmp_path_factory.mktemp("sam")
    torch.manual_seed(0)
    export(SamModel(**SMALL_SAM).eval(), out, prefix="sam_vit_b")
    write_manifest(MODELS["sam-vit-b"], out)
    return make_segmenter("sam-vit-b", model_dir=out)


def test_a_full_mask_covers_every_cell_over_the_image(sam):
    """600 x 800 image -> resized 192 x 256 in the 256 input -> 12 x 16 of the 16 x 16 embedding cells."""
    from litemedsam.methods.selfprompt import training_pixels

    image = np.random.default_rng(0).integers(0, 255, (600, 800, 3), np.uint8)
    x, y = training_pixels(sam, image, np.ones((600, 800), bool))
    assert x.shape == (12 * 16, 256) and y.shape == (12 * 16,) and y.all()


def test_cells_map_back_to_their_part_of_the_image(sam):
    from litemedsam.methods.oneshot import build_reference

    image = np.random.default_rng(1).integers(0, 255, (600, 800, 3), np.uint8)
    emb = sam.encode(image)
    frame = emb.frame
    assert (frame.input_size, frame.logit_size, frame.grid_size) == (256, 64, 16)
    assert frame.resized_hw == (192, 256) and frame.logit_hw == (48, 64) and frame.grid_cells() == (12, 16)
    cell = np.zeros((16, 16), np.float32)
    cell[0, 0] = 1  # the top-left cell covers 1/12 of the rows and 1/16 of the columns
    back = frame.grid_to_image(cell)
    assert back.shape == (600, 800)
    assert abs(back[:, 0].sum() - 600 / 12) <= 2 and abs(back[0].sum() - 800 / 16) <= 2
    # the left half of the image is half of the cells over the image
    half = np.zeros((600, 800), bool)
    half[:, :400] = True
    assert int(frame.image_to_grid(half).sum()) == 12 * 8
    assert len(build_reference(sam, emb, half, max_parts=1).patches) == 12 * 8
