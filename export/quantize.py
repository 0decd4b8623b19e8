"""Int8 encoder of a registered float model, accepted only if its masks agree with the float model's.

    python -m export --model MODEL-int8 [--cases DIR] [--min-dice 0.98] [--min-p10 0.90] [--force]

MODEL is a float model of the registry (litemedsam, efficientsam-ti, efficientsam-s); the result is the encoder
of its ``-int8`` entry (``*_encoder.int8.onnx``; the decoders stay the float model's: they are a small share of
the time). Steps, as ONNX Runtime recommends for dynamic quantization: ``quant_pre_process`` (shape inference
and graph optimisation), then ``quantize_dynamic`` of the MatMul nodes whose second operand is a weight matrix,
weights per output channel, full 8-bit range, except the second layer of each MLP (``fc2``: its input, GELU's
output, is heavy-tailed). Measured on LiteMedSAM (64 dev images, per-box masks against fp32, mean Dice):
every weight MatMul 0.968 (7-bit weights) / 0.975 (8-bit); without fc2 0.978 / **0.985**; Conv too: unusable.
Activation-by-activation MatMuls (attention scores) are never quantized. The full 8-bit range needs a CPU with
VNNI (``u8 x s8`` products saturate in AVX2's ``vpmaddubsw``): litemedsam.models.fastest runs it only there.

Gate: every box of the gate cases (2D cases; for 3D cases the middle slice of each box) is segmented
by the float and the int8 model; the int8 model is accepted when the mean Dice between the two is at
least ``--min-dice`` and its 10th percentile at least ``--min-p10``. A rejected model is deleted
unless ``--force`` (kept for benchmarks, marked ``"accepted": false`` in its manifest). The whole-pipeline
gate on every dev case (3D propagation included) is ``python -m benchmarks.bench_int8``.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from litemedsam.models.digests import sha256_of
from litemedsam.models.registry import dev_data_dir, get_model, model_paths, work_dir, write_manifest
from litemedsam.core.safeio import write_bytes

OP_TYPES = ["MatMul"]
KEEP_FLOAT = "fc2"  # node names holding this stay float (the MLPs' second layers, see above)


def weight_matmuls(path: Path) -> list:
    """MatMul nodes to quantize: a weight matrix as second operand (not per-head weights (H, d, C), not an
    activation), not in an MLP's second layer."""
    import onnx

    model = onnx.load(str(path))
    ndim = {t.name: len(t.dims) for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and len(n.input) == 2
            and ndim.get(n.input[1]) == 2 and KEEP_FLOAT not in n.name]


def quantize_file(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_dynamic(str(pre), str(out), op_types_to_quantize=OP_TYPES, per_channel=True,
                         reduce_range=False, weight_type=QuantType.QInt8, nodes_to_quantize=weight_matmuls(pre))
        write_bytes(dst, out.read_bytes())  # atomically, never through a link at dst's name


def gate_images(cases_dir: Path | None, limit: int = 40):
    """(name, image, (N, 4) boxes) to compare on: real cases when there are any, else synthetic images."""
    from litemedsam.io.cases import CaseError
    from litemedsam.io.formats.challenge import load_case

    found = []
    for path in sorted(cases_dir.glob("*.npz")) if cases_dir and cases_dir.is_dir() else []:
        try:
            case = load_case(path)
        except CaseError:
            continue
        keep = [i for i in range(len(case.boxes)) if i + 1 not in case.skipped]
        if case.dim == "2D":
            found.append((path.name, case.image, case.boxes[keep]))
        else:
            for i in keep[:4]:
                x0, y0, z0, x1, y1, z1 = case.boxes[i]
                found.append((f"{path.name}#{i + 1}", case.image[(z0 + z1) // 2], np.array([[x0, y0, x1, y1]])))
    if found:
        step = max(1, len(found) // limit)
        return found[::step][:limit], f"{len(found[::step][:limit])} images from {cases_dir}"
    rng = np.random.default_rng(0)
    synthetic = []
    for k in range(8):
        yy, xx = np.mgrid[0:320, 0:384]
        img = (60 + 40 * np.sin(xx / 30.0 + k)).astype(np.float32)
        boxes = []
        for _ in range(3):
            cx, cy, r = rng.integers(60, 320), rng.integers(60, 260), rng.integers(15, 50)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(150, 255)
            boxes.append([cx - r, cy - r, cx + r, cy + r])
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        synthetic.append((f"synthetic-{k}", np.repeat(img[:, :, None], 3, axis=2), np.clip(np.array(boxes), 0, 319)))
    return synthetic, "8 synthetic images (no real cases found)"


def compare(float_model: str, int8_model: str, images) -> dict:
    """Per-box masks of both models on the gate images (each box alone, as the decoder gives it): Dice."""
    from export.onnx_export import dice
    from litemedsam.models.segmenter import make_segmenter

    ref, test = make_segmenter(float_model), make_segmenter(int8_model)
    dices, times = [], {"float": 0.0, "int8": 0.0}
    for _, image, boxes in images:
        outs = {}
        for key, seg in (("float", ref), ("int8", test)):
            start = time.perf_counter()
            emb = seg.encode(image)
            outs[key] = seg.predict(emb, emb.frame.boxes_to_model(boxes))
            times[key] += time.perf_counter() - start
        dices += [dice(a, b) for a, b in zip(outs["float"], outs["int8"])]
    d = np.array(dices)
    return {"boxes": int(d.size), "mean_dice": float(d.mean()), "p10_dice": float(np.percentile(d, 10)),
            "lowest_dice": float(d.min()), "seconds_float": round(times["float"], 2),
            "seconds_int8": round(times["int8"], 2)}


def export_model(spec, checkpoint=None, out_dir: Path | None = None, cases: Path | None = None,
                 min_dice: float = 0.98, min_p10: float = 0.90, force: bool = False) -> dict:
    """Make the int8 encoder of an ``-int8`` entry from its verified float model. A registry-pinned entry is
    accepted when the graph made equals the gated one (same checksum; the gate runs only when ``cases`` asks
    for it); any other is gated here (the module's doc). Raises RuntimeError when it is rejected (nothing is
    kept), unless ``force``."""
    src = get_model(spec.quantized_from)
    directory = out_dir or work_dir()
    target = directory / spec.encoder.file
    quantize_file(model_paths(src)[0], target)  # the float model must be the verified one
    report = {"model": spec.name, "from": src.name, "op_types": OP_TYPES, "kept_float": KEEP_FLOAT,
              "per_channel": True, "reduce_range": False}
    if spec.pinned:
        same = sha256_of(target) == spec.encoder.sha256
        if same and cases is None:
            return {**report, "accepted": True, "gate": "the registry's checksum: the graph gated on the dev cases"}
        if not same and not force:
            target.unlink(missing_ok=True)
            raise RuntimeError(f"{target.name} has sha256 {sha256_of(target) if target.exists() else 'other'} "
                               f"instead of the registry's {spec.encoder.sha256}: this onnxruntime quantizes "
                               "differently from the one that made the gated graph; nothing kept")
    images, described = gate_images(cases or dev_data_dir() / "imgs", limit=1000)
    if not spec.pinned:  # a provisional manifest lets the int8 model load for the comparison
        write_manifest(spec, directory, accepted=None)
    gate = compare(src.name, spec.name, images)
    gate.update(images=described, min_dice=min_dice, min_p10=min_p10)
    accepted = gate["mean_dice"] >= min_dice and gate["p10_dice"] >= min_p10
    report.update(accepted=accepted, gate=gate)
    if accepted or force:
        if not spec.pinned:
            write_manifest(spec, directory, **{k: v for k, v in report.items() if k != "model"})
        if not accepted:
            print(f"{spec.name} fails the gate but is kept (--force)", file=sys.stderr)
        return report
    target.unlink(missing_ok=True)
    (directory / f"{spec.name}.manifest.json").unlink(missing_ok=True)
    raise RuntimeError(f"{spec.name} rejected: its masks disagree with {src.name} (mean Dice {gate['mean_dice']:.4f} < "
                       f"{min_dice} or 10th percentile {gate['p10_dice']:.4f} < {min_p10}); nothing kept")
