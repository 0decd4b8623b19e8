"""2D images (.png, .jpg, .jpeg, .tif, .tiff, .bmp) via OpenCV: colour images as RGB, grey ones as they are;
16-bit and float images brought to 0-255 (litemedsam.intensity); boxes ``x0,y0,x1,y1`` in pixels (x = column,
y = row), inclusive. The label map is written as a PNG of the same size (8-bit, 16-bit above 255 boxes)
named as the input with the suffix ``.png``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from litemedsam.cases import Case, make_case
from litemedsam.errors import CaseError, OutputError, reason
from litemedsam.given_boxes import CaseInputs
from litemedsam.intensity import prepare
from litemedsam.npz import check_file, check_size, human, max_case_bytes
from litemedsam.safeio import write_bytes


def _decode(path: Path) -> np.ndarray:
    check_file(path)
    size = path.stat().st_size
    if size > max_case_bytes():
        raise CaseError(f"{human(size)}, more than the limit of {human(max_case_bytes())} per case")
    data = np.fromfile(str(path), dtype=np.uint8)
    _check_png_size(data)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise CaseError(f"not a readable image ({reason(e, path)})") from None
    if image is None or image.size == 0:
        raise CaseError(f"not a readable {path.suffix.lstrip('.').upper()} image")
    return image


def _check_png_size(data: np.ndarray) -> None:
    """A PNG's declared size (its IHDR) against the per-case and memory limits, before decoding: a few KB of
    PNG can declare gigabytes of pixels."""
    head = data[:26].tobytes()
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return  # not a PNG (or damaged): OpenCV says what it can read
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    depth, colour = head[24], head[25]
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4)
    need = width * height * channels * max(1, depth // 8)
    check_size(need, f"a PNG of {width}x{height} pixels ({human(need)} decoded)", f"a PNG of {width}x{height} pixels")


def read_labels(path: Path) -> np.ndarray:
    labels = _decode(path)
    if labels.ndim != 2:
        raise CaseError(f"a label image must have one channel, got shape {labels.shape}")
    return labels


def read(path: Path, inputs: CaseInputs | None = None, require_boxes: bool = True) -> Case:
    inputs = inputs or CaseInputs()
    image = _decode(path)
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise CaseError(f"an image with {image.shape[2]} channels; 1, 3 or 4 (RGBA) are read")
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    image, found, warnings = prepare(image, path.name, inputs.modality, inputs.window)
    boxes, absent = inputs.boxes_of(path, image.shape[:2], 4, require_boxes)
    return make_case(path, image, boxes, dim="2D", absent=absent, fmt="image", modality=found, warnings=warnings)


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    ok, data = cv2.imencode(".png", segs)
    if not ok:
        raise OutputError(f"cannot encode the label map of {case.path.name} as PNG")
    write_bytes(target, data.tobytes())
