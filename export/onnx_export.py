"""One generic export function: export a module, check the graph, and compare ONNX Runtime with torch."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from litemedsam.core.masks import dice
from litemedsam.core.safeio import temp_path
from litemedsam.models.session import make_session


@dataclass
class GraphSpec:
    """What to export and how to check it.

    ``dummy`` are the tracing inputs; ``test`` are different inputs (other values and other sizes
    along the dynamic axes) on which ONNX Runtime must agree with torch.
    """

    name: str
    module: torch.nn.Module
    dummy: tuple
    test: tuple
    input_names: list
    output_names: list
    dynamic_axes: dict = field(default_factory=dict)
    reference: torch.nn.Module | None = None  # what the graph must reproduce; default: module
    mask_outputs: tuple = ()  # logit outputs whose masks (> 0) must agree
    min_dice: float = 0.999
    max_abs_error: float = 1e-2  # sanity bound; the report gives the real number


def export_graph(spec: GraphSpec, path: Path, opset: int = 17) -> dict:
    """Export ``spec.module`` to ``path`` and verify it; returns a report, raises on disagreement."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent)  # beside the target (never through a link planted at a fixed name), then renamed
    try:
        report = _export_and_check(spec, tmp, path, opset)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, 0o644)
    tmp.replace(path)
    return report


def _export_and_check(spec: GraphSpec, tmp: Path, path: Path, opset: int) -> dict:
    spec.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer notes that it leaves strided slices unfolded; nothing to act on
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            spec.module,
            spec.dummy,
            str(tmp),
            dynamo=False,
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(tmp), full_check=True)

    session = make_session(tmp)
    feeds = {name: t.numpy() for name, t in zip(spec.input_names, spec.test)}
    got = session.run(spec.output_names, feeds)
    with torch.no_grad():
        ref = (spec.reference or spec.module).eval()(*spec.test)
    ref = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]

    report = {"graph": spec.name, "file": path.name, "outputs": {}}
    problems = []
    for name, r, g in zip(spec.output_names, ref, got):
        if r.shape != g.shape:
            problems.append(f"{name}: shape {g.shape} from ONNX Runtime, {r.shape} from torch")
            continue
        entry = {"shape": list(g.shape), "max_abs_error": float(np.abs(r - g).max())}
        if entry["max_abs_error"] > spec.max_abs_error:
            problems.append(f"{name}: max abs error {entry['max_abs_error']:.3g}")
        if name in spec.mask_outputs:
            entry["mask_dice"] = dice(r > 0, g > 0)
            if entry["mask_dice"] < spec.min_dice:
                problems.append(f"{name}: mask Dice {entry['mask_dice']:.5f} < {spec.min_dice}")
        report["outputs"][name] = entry
    if problems:
        raise RuntimeError(f"{spec.name}: ONNX Runtime disagrees with torch: " + "; ".join(problems))
    return report


def check_chain(reference, encoder: Path, decoder: Path, image: torch.Tensor, prompts: dict,
                min_dice: float = 0.999) -> dict:
    """The exported graphs chained in ONNX Runtime (image -> encoder -> decoder with ``prompts``, a dict of the
    decoder's prompt inputs) against ``reference(image, *prompts)`` in torch: the errors of the first output
    (low-res logits); raises when their masks disagree."""
    with torch.no_grad():
        ref = reference(image, *prompts.values())[0].numpy()
    (emb,) = make_session(encoder).run(None, {"image": image.numpy()})
    got = make_session(decoder).run(None, {"image_embeddings": emb, **{k: v.numpy() for k, v in prompts.items()}})[0]
    chain = {"max_abs_error": float(np.abs(ref - got).max()), "mask_dice": dice(ref > 0, got > 0)}
    if chain["mask_dice"] < min_dice:
        raise RuntimeError(f"encoder+decoder chain: mask Dice {chain['mask_dice']:.5f} < {min_dice}")
    return chain
