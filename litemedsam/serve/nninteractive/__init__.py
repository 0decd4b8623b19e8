"""The nnInteractive server protocol (``litemedsam serve nninteractive``): 3D Slicer's nnInteractive
extension, napari's plugin and any script with ``nninteractive-client`` drive LiteMedSAM on a CPU.

The protocol is nnInteractive's (its client's ``remote_session.py`` and ``SERVER_CLIENT.md`` define it): a
client claims a lease (``X-Lease-Token`` on each request after), uploads its image (``/set_image``: [C, a0, a1,
a2], packed by litemedsam.serve.wire; ``image_properties`` may give ``spacing`` in the array's axis order),
declares a target buffer (the object it edits: shape and dtype), then adds interactions; each answer carries
the changed region's bounding box in ``X-Meta`` and the target buffer's content there, packed. A Bearer key
guards every request but ``/healthz``.

Each lease holds a Scene (litemedsam.serve.scene: the core under the browser app too) of its image, axis 0 of
the array as slices, and its object as label 1 of the scene's map. How interactions map onto LiteMedSAM:

- a box of extent 1 along an axis (as a viewer draws it on a slice; half-open, floats rounded) is drawn on that
  cut: the object on it, propagated along that axis both ways until it ends (``Scene.propagate``); a box of
  extent 1 on no axis is a 3D box (``bbox3d``, as a challenge case's: the object within its slices). An
  excluding box removes what it gives from the object;
- a point is a click (litemedsam.methods.refine, as ``infer`` applies the 2025 protocol's clicks: the same
  voxels for the same clicks and previous mask), the earlier points of the object kept;
- a lasso (a filled region on one cut) adds the object of the box around it, or, excluding, removes its region;
- an initial segmentation is the object (the 2025 protocol's previous mask); scribbles are not supported
  (``/capabilities`` says so: the front ends grey the tool out);
- ``/undo`` takes the last edit back (any number of times), ``/reset_interactions`` empties the object.

After ``/set_image`` the slices are encoded in the background, the one under the latest interaction first, so
that interactions decode only; embeddings live in one cache of ``--cache-mb`` for all leases. One model lock
serialises the model's runs across leases (two runs on a 2-core machine would only slow each other). The server
writes no file.

The package: ``protocol`` (the leases, their scenes and how each interaction maps onto the core) and ``routes``
(the HTTP endpoints and the app).
"""
from litemedsam.serve.nninteractive.protocol import Lease, Protocol, ProtocolOptions
from litemedsam.serve.nninteractive.routes import make_app

__all__ = ["Lease", "Protocol", "ProtocolOptions", "make_app"]
