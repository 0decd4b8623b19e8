"""The core: errors, limits, atomic writes, image geometry, mask strategies, progress, timing, settings (imports
nothing else of litemedsam)."""
