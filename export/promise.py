"""ProMISe (xinkunwang111/ProMISe, model "SAM_vit-b_APM_IPS_resnet"): SAM ViT-B with an auto-prompting
module (APM) and an image-specific pattern shift (IPS), exported as one ONNX graph: image -> mask, no prompt.

    python -m export --model promise --checkpoint PROMISE.pt [--point-value 1-1-1-1-1-1-1-1-0-0-0-0-0-0-0-0]

What the graph computes (ProMISe's ``Sam.forward`` for APM + IPS with the ResNet head):
- the SAM ViT-B encoder (export/sam_vit.py), keeping the outputs of blocks 3, 6, 9 and 12;
- APM: blocks 12, 9, 6 concatenated on channels (3 x 768) -> ``apm_feature_map`` (three 3x3 convs to
  256 with ReLU between) -> ``apm_resnet`` (ResNet34 on 256 channels) -> ``fc`` -> sigmoid x S: P
  points (x, y) in the S x S frame, with fixed labels (``--point-value``; ProMISe's scripts give 16
  points, eight positive then eight negative); SAM's prompt encoder adds its padding point (label -1);
- IPS: the image embedding averaged over space -> ``ips_ffn`` (256 -> 1024 -> 1024, GELU) -> four
  256-vectors added to the decoder's four mask tokens;
- SAM's mask decoder; ProMISe evaluates with ``multimask_output=True`` and keeps the first of the
  multimask outputs, i.e. mask token 1.
The graph takes the image resized to S x S in [0, 1] and normalises it with the ImageNet mean and std
(ProMISe's ``basic_color`` transform). The morphological opening (5 x 5) of its evaluation is done by
``litemedsam.models.image_segmenters.AutoPromptSegmenter`` on the thresholded low-res mask.

Checkpoint layout (a plain state dict of ProMISe's ``Sam``; ``module.`` prefixes dropped, and
``ffn.lin*`` renamed ``ips_ffn.lin*`` as ProMISe's eval.py does): ``image_encoder.*``,
``prompt_encoder.*``, ``mask_decoder.*`` (SAM's, 4 mask tokens), ``apm_feature_map.fusion_conv{1,2,3}``
(weight, bias), ``apm_resnet.{conv1, bn1, layer1..layer4, fc, fc2}`` (ResNet34 of BasicBlocks
``conv1, bn1, conv2, bn2, shortcut.{0,1}``; ``conv1`` 256 -> 64, 3x3, stride 1, then max-pool; the last
block of ``layer4`` always has a 1x1 conv shortcut; ``fc`` 512 -> 2P, ``fc2`` 512 -> 1024, unused),
``ips_ffn.{lin1, lin2}``. No ProMISe checkpoint can be had here: tests build small random ones.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from export.checkpoints import read_state
from export.layers import MLPBlock
from export.mask_decoder import MaskDecoder
from export.prompt_encoder import PromptEncoder
from export.sam_vit import VIT_B, ImageEncoderViT, vit_config

TAPS = (2, 5, 8, 11)  # blocks 3, 6, 9, 12
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_labels(points: int) -> list:
    """ProMISe's point_value: the first half positive, the rest negative."""
    return [1] * (points // 2) + [0] * (points - points // 2)


class FeatureMap(nn.Module):
    def __init__(self, cin: int, cout: int = 256):
        super().__init__()
        self.fusion_conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.fusion_conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.fusion_conv3 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return self.fusion_conv3(F.relu(self.fusion_conv2(F.relu(self.fusion_conv1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1, conv_shortcut: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if conv_shortcut or stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class ResNet34(nn.Module):
    """ProMISe's point head: ResNet34 on the fused 256-channel map -> 2P coordinates (and an unused fc2)."""

    def __init__(self, points: int, cin: int = 256, blocks=(3, 4, 6, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, width = [], 64
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
            stride = 1 if i == 0 else 2
            layer = []
            for j in range(count):
                layer.append(BasicBlock(width, planes, stride if j == 0 else 1,
                                        conv_shortcut=(i == 3 and j == count - 1)))
                width = planes
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, 2 * points)
        self.fc2 = nn.Linear(512, 1024)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class ProMISe(nn.Module):
    """image (1, 3, S, S) in [0, 1] -> mask token 1's low-res logits (1, 1, S/4, S/4), points (1, P, 2)."""

    def __init__(self, points: int = 16, labels=None, **vit):
        super().__init__()
        cfg = {**VIT_B, **vit}
        s, grid = cfg["img_size"], cfg["img_size"] // 16
        self.image_encoder = ImageEncoderViT(**cfg)
        self.prompt_encoder = PromptEncoder(256, (grid, grid), (s, s))
        self.mask_decoder = MaskDecoder(256, 3)
        self.apm_feature_map = FeatureMap(3 * cfg["width"])
        self.apm_resnet = ResNet34(points)
        self.ips_ffn = MLPBlock(256, 1024, F.gelu, out=1024)  # ProMISe's FFNBlock(256, 1024, 1024)
        labels = default_labels(points) if labels is None else list(labels)
        if len(labels) != points:
            raise ValueError(f"{len(labels)} point labels for {points} points")
        self.register_buffer("point_labels", torch.tensor([labels + [-1]], dtype=torch.float32), persistent=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, image):
        size = self.prompt_encoder.input_size[0]
        emb, (_, f6, f9, f12) = self.image_encoder((image - self.mean) / self.std, TAPS)
        points = torch.sigmoid(self.apm_resnet(self.apm_feature_map(torch.cat([f12, f9, f6], dim=1))))
        points = points.reshape(1, -1, 2) * size
        shift = self.ips_ffn(emb.mean(dim=(2, 3))).reshape(1, -1, emb.shape[1])
        coords = torch.cat([points, torch.zeros(1, 1, 2)], dim=1)  # SAM's padding point (no box given)
        pe = self.prompt_encoder
        sparse = pe.embed_points(coords, self.point_labels)
        masks, _ = self.mask_decoder.all_masks(emb, pe.dense_pe(), sparse, pe.no_mask_dense(), shift)
        return masks[:, 1:2], points


def upstream_state(state: dict) -> dict:
    """A ProMISe checkpoint's state dict as this module names it (ProMISe's own renames applied)."""
    return {re.sub(r"^ffn\.lin", "ips_ffn.lin", key): value for key, value in read_state(state).items()}


def load_model(checkpoint, labels=None, **vit) -> ProMISe:
    """A ProMISe checkpoint (path or state dict) -> ProMISe, loaded strictly (P from ``apm_resnet.fc``)."""
    state = upstream_state(checkpoint)
    points = state["apm_resnet.fc.weight"].shape[0] // 2
    model = ProMISe(points, labels, **{**vit_config(state), **vit})
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(model: ProMISe, path: Path) -> dict:
    from export.onnx_export import GraphSpec, export_graph

    torch.manual_seed(0)
    s = model.prompt_encoder.input_size[0]
    spec = GraphSpec("promise", model, (torch.rand(1, 3, s, s),), (torch.rand(1, 3, s, s),), ["image"],
                     ["low_res_logits", "points"], mask_outputs=("low_res_logits",))
    return export_graph(spec, path)


def export_model(spec, checkpoint, out_dir: Path | None = None, point_value: str | None = None,
                 img_size: int | None = None) -> dict:
    """Export ProMISe (APM + IPS, one graph) from its checkpoint; ``point_value`` gives the labels of its points
    (e.g. 1-1-0-0; default half 1, half 0). Checked, with its manifest."""
    from litemedsam.models.registry import work_dir, write_manifest

    labels = [int(v) for v in point_value.split("-")] if point_value else None
    out_dir = out_dir or work_dir()
    report = export(load_model(checkpoint, labels, img_size=img_size or spec.input_size), out_dir / spec.encoder.file)
    write_manifest(spec, out_dir, checkpoint=str(checkpoint), point_value=point_value)
    return report
