"""litemedsam: CPU-first box-prompted medical image segmentation with LiteMedSAM in ONNX Runtime.

``litemedsam.segment(image, boxes)`` and ``litemedsam.Predictor`` are the Python API (litemedsam.api), imported
when first used (the command line does not pay for them)."""

__version__ = "0.1.0"
__all__ = ["segment", "Predictor"]  # noqa: F822 (given by __getattr__ below, when first used)


def __getattr__(name: str):
    if name in __all__:
        from litemedsam import api

        return getattr(api, name)
    raise AttributeError(f"module 'litemedsam' has no attribute {name!r}")
