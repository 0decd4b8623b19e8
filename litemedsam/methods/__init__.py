"""How a case is segmented: 2D and 3D propagation, the router, the ways of prompting (boxes, self-prompting,
one-shot, prompt-free)."""
