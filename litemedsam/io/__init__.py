"""Cases in and out: a case and what its name says, the checked .npz reader, one module per file format, boxes
from the command line, intensities, overlays."""
