"""Models: the registry, ONNX Runtime sessions made in one place, the graph cache, which encoder a machine runs,
fetching weights, and the segmenters (encode once, decode many)."""
