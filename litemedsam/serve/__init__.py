"""The browser app: one case edited box by box with its embedding cache, and the web server."""
