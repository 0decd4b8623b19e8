"""2D images (.png, .jpg, .jpeg, .tif, .tiff, .bmp) via OpenCV: colour images as RGB, grey ones as they are;
16-bit and float images brought to 0-255 (litemedsam.io.intensity); boxes ``x0,y0,x1,y1`` in pixels (x = column,
y = row), inclusive. The label map is written as a PNG of the same size (8-bit, 16-bit above 255 boxes)
named as the input with the suffix ``.png``."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from litemedsam.core.errors import CaseError, OutputError, reason
from litemedsam.core.limits import check_file, check_size, human, max_case_bytes
from litemedsam.core.safeio import write_bytes
from litemedsam.io.geometry import Geometry

DIM = "2D"


def _decode(path: Path) -> np.ndarray:
    check_file(path)
    size = path.stat().st_size
    if size > max_case_bytes():
        raise CaseError(f"{human(size)}, more than the limit of {human(max_case_bytes())} per case")
    data = np.fromfile(str(path), dtype=np.uint8)
    _check_declared(data)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise CaseError(f"not a readable image ({reason(e, path)})") from None
    if image is None or image.size == 0:
        raise CaseError(f"not a readable {path.suffix.lstrip('.').upper()} image")
    return image


def _declared(data: memoryview) -> tuple | None:
    """(format, width, height, channels, bytes per channel, pages) an image file declares in its header, or None
    for a file whose header is not one of these (OpenCV then says what it can read)."""
    head = bytes(data[:16])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(data) >= 26:
        channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 4)
        return "PNG", _int(data, 16, 4, "big"), _int(data, 20, 4, "big"), channels, max(1, data[24] // 8), 1
    if head[:2] == b"\xff\xd8":
        return _jpeg(data)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data)
    if head[:2] == b"BM" and len(data) >= 30:
        return "BMP", abs(_int(data, 18, 4, "little", True)), abs(_int(data, 22, 4, "little", True)), 4, 1, 1
    return None


def _int(data: memoryview, at: int, size: int, order: str, signed: bool = False) -> int:
    if at < 0 or at + size > len(data):
        raise CaseError("its header is truncated (not a readable image)")
    return int.from_bytes(data[at:at + size], "little" if order == "little" else "big", signed=signed)


def _jpeg(data: memoryview) -> tuple:
    """A JPEG's frame header (SOFn): its size and components."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return ("JPEG", _int(data, i + 7, 2, "big"), _int(data, i + 5, 2, "big"), _int(data, i + 9, 1, "big"),
                    2 if _int(data, i + 4, 1, "big") > 8 else 1, 1)
        if marker == 0xDA:  # image data before any frame header
            break
        i += 2 + (0 if 0xD0 <= marker <= 0xD8 or marker == 0x01 else _int(data, i + 2, 2, "big"))
    raise CaseError("not a readable JPEG image (no frame header)")


def _tiff(data: memoryview, max_pages: int = 4096) -> tuple:
    """A TIFF's first page (ImageWidth, ImageLength, SamplesPerPixel, BitsPerSample) and its number of pages."""
    order = "little" if bytes(data[:2]) == b"II" else "big"
    offset, pages, first = _int(data, 4, 4, order), 0, None
    seen = set()
    while offset and offset not in seen and pages < max_pages:
        seen.add(offset)
        count = _int(data, offset, 2, order)
        if first is None:
            tags = {}
            for n in range(count):
                at = offset + 2 + 12 * n
                kind, values = _int(data, at + 2, 2, order), _int(data, at + 4, 4, order)
                width = {3: 2, 4: 4}.get(kind, 4)
                value = _int(data, at + 8, width, order)
                if values * width > 4:  # the values are elsewhere: the first one
                    value = _int(data, value, width, order)
                tags[_int(data, at, 2, order)] = value
            first = ("TIFF", tags.get(256, 0), tags.get(257, 0), tags.get(277, 1), max(1, tags.get(258, 8) // 8))
        pages += 1
        offset = _int(data, offset + 2 + 12 * count, 4, order)
    return (*first, pages) if first else ("TIFF", 0, 0, 1, 1, 0)


def _check_declared(data: np.ndarray) -> None:
    """An image's declared size (its header) against the per-case and memory limits, before decoding: a few KB of
    PNG, JPEG or TIFF can declare gigabytes of pixels. A TIFF of several pages is refused (one image a file)."""
    found = _declared(np.ascontiguousarray(data).data)
    if found is None:
        return
    kind, width, height, channels, depth, pages = found
    if pages > 1:
        raise CaseError(f"a {kind} of {pages} pages; one 2D image is read per file (save each page as its own file)")
    need = width * height * channels * depth
    check_size(need, f"a {kind} of {width}x{height} pixels ({human(need)} decoded)",
               f"a {kind} of {width}x{height} pixels")


def read_labels(path: Path) -> tuple:
    labels = _decode(path)
    if labels.ndim != 2:
        raise CaseError(f"a label image must have one channel, got shape {labels.shape}")
    return labels, Geometry()


def read_image(path: Path) -> tuple:
    image = _decode(path)
    if image.ndim == 3:
        if image.shape[2] not in (3, 4):
            raise CaseError(f"an image with {image.shape[2]} channels; 1, 3 or 4 (RGBA) are read")
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2RGB)
    return image, Geometry(), None


def write(segs: np.ndarray, geometry: Geometry, target: Path) -> None:
    ok, data = cv2.imencode(".png", segs)
    if not ok:
        raise OutputError(f"cannot encode the label map {target.name} as PNG")
    write_bytes(target, data.tobytes())
