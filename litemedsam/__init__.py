"""litemedsam: CPU-first box-prompted medical image segmentation with LiteMedSAM in ONNX Runtime."""

__version__ = "0.1.0"
