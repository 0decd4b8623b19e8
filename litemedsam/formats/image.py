"""2D images (.png, .jpg, .jpeg, .tif, .tiff, .bmp) via OpenCV: colour images as RGB, grey ones as they are;
16-bit and float images brought to 0-255 (litemedsam.intensity); boxes ``x0,y0,x1,y1`` in pixels (x = column,
y = row), inclusive. The label map is written as a PNG of the same size (8-bit, 16-bit above 255 boxes)
named as the input with the suffix ``.png``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from litemedsam.cases import Case, make_case
from litemedsam.errors import CaseError, OutputError
from litemedsam.given_boxes import boxes_of_labels, no_boxes_message
from litemedsam.intensity import to_uint8
from litemedsam.npz import MEMORY_FACTOR, available_memory, check_file, human, max_case_bytes
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
        raise CaseError(f"not a readable image ({str(e).strip().splitlines()[-1][:200]})") from None
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
    if need > max_case_bytes():
        raise CaseError(f"a PNG of {width}x{height} pixels ({human(need)} decoded), more than the limit of "
                        f"{human(max_case_bytes())} per case (LITEMEDSAM_MAX_CASE_BYTES)")
    free = available_memory()
    if free is not None and need * MEMORY_FACTOR > free:
        raise CaseError(f"a PNG of {width}x{height} pixels needs about {human(need * MEMORY_FACTOR)} of memory; "
                        f"{human(free)} is available")


def read_labels(path: Path) -> np.ndarray:
    labels = _decode(path)
    if labels.ndim != 2:
        raise CaseError(f"a label image must have one channel, got shape {labels.shape}")
    return labels


def read(path: Path, inputs=None, require_boxes: bool = True) -> Case:
    image = _decode(path)
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise CaseError(f"an image with {image.shape[2]} channels; 1, 3 or 4 (RGBA) are read")
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    image = to_uint8(image, inputs.modality if inputs else None, inputs.window if inputs else None)
    boxes, absent = np.zeros((0, 4)), []
    given = inputs.for_case(path) if inputs else None
    labels = inputs.labels_for(path) if inputs else None
    if given is not None:
        boxes = np.array(given, np.float64)
    elif labels is not None:
        from litemedsam.formats.registry import module_for

        label_map = module_for(labels).read_labels(labels)
        if label_map.shape != image.shape[:2]:
            raise CaseError(f"its label image {labels.name} is {label_map.shape}, the image {image.shape[:2]}")
        boxes, absent = boxes_of_labels(label_map)
    elif require_boxes:
        raise CaseError(no_boxes_message())
    return make_case(path, image, boxes, dim="2D", absent=absent, fmt="image")


def write(case: Case, segs: np.ndarray, target: Path) -> None:
    ok, data = cv2.imencode(".png", segs)
    if not ok:
        raise OutputError(f"cannot encode the label map of {case.path.name} as PNG")
    write_bytes(target, data.tobytes())
