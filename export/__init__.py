"""Export tools: torch checkpoints -> verified ONNX graphs. The only place torch is used."""
