"""The protocol's state: leases, each with its image's Scene (the core under the browser app too) and its object,
and how each of nnInteractive's interactions maps onto that core (the package's docstring says how)."""
from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from litemedsam import __version__
from litemedsam.core import progress
from litemedsam.core.errors import CaseError, LitemedsamError, shown
from litemedsam.core.limits import MAX_POINTS, human, room
from litemedsam.io.intensity import case_of_voxels
from litemedsam.io.geometry import Geometry, usable_spacing
from litemedsam.serve.http import Refused, number
from litemedsam.serve.background import BackgroundEncoding
from litemedsam.serve.encoding import Cancelled, EmbeddingCache, ModelTurns
from litemedsam.serve.scene import OFF_AXIS, Scene

log = logging.getLogger("litemedsam.nninteractive")

META, LEASE = "X-Meta", "X-Lease-Token"
OBJECT = 1  # the target buffer's object in a lease's scene
MAX_JSON = 1 << 20  # bytes of a JSON body
MAX_VOXELS = 1 << 31  # of an image (as nnInteractive's 4 GB target buffer: 2^31 uint16 voxels of labels)
WORK_PER_VOXEL = 4  # bytes a lease holds per voxel beside the decoded array: the image as the model sees it (1), the
# labels (2), a working mask (1)
PREPARE_PER_VOXEL = 10  # and, while an image that is not uint8 is mapped to 0-255, its float copies (measured:
# peak RSS of the server less its body: uint8 5.1 bytes a voxel, int16 15.4, float32 15.4, float64 21)
MAX_PENDING = 64  # interactions a lease may add without running them
MAX_PENDING_BYTES = 1 << 30  # and the masks (lassos, initial segmentations) they may hold
MAX_WAITING = 4  # requests of one lease waiting for its turn (one client does not take the server's threads)
CAPABILITIES = {
    "supported_interactions": {"points": True, "bbox2d": True, "bbox3d": True, "lasso": True, "scribble": False},
    # nnInteractive's channel layout, for clients that read it; LiteMedSAM has no interaction channels
    "channel_mapping": {"prev_seg": 0, "bbox2d": [1, 2], "bbox3d": [1, 2], "lasso": [1, 2], "points": [3, 4],
                        "scribble": [5, 6]},
    "num_interaction_channels": 7,
    "supports_initial_label": True,
    # an initial segmentation is taken as the object, not refined by the model (nothing measured to refine it better):
    # said, so that napari's "auto refine" is not offered for nothing
    "supports_zero_shot_label_refinement": False,
    "preferred_scribble_thickness": [3, 3, 3],
    "interaction_decay": None,
    "patch_size": None,
    "do_autozoom": False,
    "inference_session_version": "2.6.0",  # the protocol's version this server speaks
    "license": "Apache-2.0",  # LiteMedSAM's weights (MedSAM) and this server
    "supports_undo": True,
    "server": f"litemedsam {__version__}",
}


@dataclass
class ProtocolOptions:
    key: str  # the Bearer key every request but /healthz carries
    max_sessions: int = 1
    idle_timeout: float = 600.0  # seconds without an interaction before a lease is reaped
    liveness_timeout: float = 60.0  # seconds without any request (not even a heartbeat)
    max_image_bytes: int = 4 << 30  # of an uploaded image, decompressed
    modality: str | None = None  # every image's, when the client does not say (image_properties["modality"])
    window: tuple | None = None  # intensity window (level, width) for images that are not uint8
    memory: int | None = None  # bytes the server may hold at most (--memory; None: what the machine has)
    answer_within: float = 45.0  # seconds an interaction's answer waits for its work (the client's read timeout is
    # 60 s, Slicer's too): past them it answers with what is done, and the rest comes with the next answer


class Protocolled(Scene):
    """A lease's scene: its edits are collected (``changed``, flat indices) until an answer carries their region
    (``unanswered``); one that came while its work went on (answered early) leaves the rest to the next."""

    def __init__(self, *args, **kwargs):
        self.changed: list = []
        self.hearing = threading.Lock()  # an edit heard and the edits taken for an answer, one at a time
        super().__init__(*args, edited=self._heard, **kwargs)

    def _heard(self, where: np.ndarray, values) -> None:
        with self.hearing:
            self.changed.append(where)

    def unanswered(self) -> list:
        """The voxels edited since the last answer, taken for this one (an edit made meanwhile, by work still under
        way, goes to the next: it is written before it is heard, and heard either before or after the taking)."""
        with self.hearing:
            taken, self.changed = self.changed, []
        return taken

    def still_owed(self, edits: list) -> None:
        """Edits taken (``unanswered``) but not sent: the next answer carries them."""
        with self.hearing:
            self.changed[:0] = edits


@dataclass
class Lease:
    token: str
    seen: float = field(default_factory=time.monotonic)  # any request (liveness)
    active: float = field(default_factory=time.monotonic)  # an interaction (idle)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request of the lease at a time
    waiting: int = 0  # requests of the lease waiting for their turn (at most MAX_WAITING)
    scene: Protocolled | None = None
    target: tuple | None = None  # (shape, dtype) of the client's target buffer
    clicks: list = field(default_factory=list)  # the object's points so far ((z, y, x) each): their voxels kept
    pending: list = field(default_factory=list)  # (action, bytes held) added with run_prediction false, run by the next
    encoding: BackgroundEncoding | None = None  # the scene's slices encoded ahead
    across: dict = field(default_factory=dict)  # and its cuts of a plane a box was drawn on ("y", "x": theirs)
    ended: threading.Event = field(default_factory=threading.Event)  # the lease is over: its interaction stops
    running: bool = False  # an interaction of the lease is being computed

    def close(self) -> None:
        """The lease ended (released, expired, the server stopping): an interaction under way stops at its next
        slice, and its image is let go."""
        self.ended.set()
        self.let_go()

    def let_go(self) -> None:
        """Its image is done with (a new one came, the lease ended): its background encoder stopped and its
        embeddings let go from memory (again by the encoder as it ends: the slice it was on)."""
        for encoding in [self.encoding, *self.across.values()]:
            if encoding is not None:
                encoding.stop()
        self.across = {}

    def focus_on(self, z: int) -> None:
        """The slice the background encoder goes on from (the latest interaction's)."""
        if self.encoding is not None:
            self.encoding.focus = int(z)

    def work_across(self, plane: str, index: int) -> None:
        """A box drawn on the cut ``index`` of ``plane`` ("y": coronal, "x": sagittal), whose propagation encodes
        that plane's cuts: they are encoded ahead too, from there outwards (beside the slices' encoder, both
        giving way to every prompt), so that the next box drawn in that view decodes only, as one drawn on a
        slice does."""
        if self.scene is None or self.ended.is_set():
            return
        encoding = self.across.get(plane)
        if encoding is None:
            encoding = self.across[plane] = BackgroundEncoding(self.scene, int(index), forget=True, plane=plane)
            encoding.start()
        encoding.focus = int(index)


class Protocol:
    """The leases and the model of one server."""

    def __init__(self, options: ProtocolOptions, prompting, segmenters, cache: EmbeddingCache):
        self.options, self.prompting, self.segmenters, self.cache = options, prompting, segmenters, cache
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()  # the leases dict
        self.model = ModelTurns()  # one model run at a time across leases, interactions before background encoding
        self.closing = threading.Event()  # the server is stopping: interactions under way are cancelled

    # -- leases --
    def claim(self) -> Lease:
        self.sweep()
        with self.lock:
            if len(self.leases) >= self.options.max_sessions:
                raise Refused(503, f"server is at capacity ({self.options.max_sessions} session(s)); try again "
                                   f"later")
            lease = Lease(secrets.token_urlsafe(24))
            self.leases[lease.token] = lease
            return lease

    def get(self, token: str | None, touch: str = "active") -> Lease:
        """The lease of ``token`` (410 when there is none), its clocks set as ``touch`` says: "active" (an
        interaction: both), "seen" (a heartbeat: liveness only) or "peek" (neither)."""
        self.sweep()  # a lease past its time is gone when asked for, whenever the sweeper last ran
        with self.lock:
            lease = self.leases.get(token or "")
        if lease is None:
            raise Refused(410, "lease expired or unknown" if token else "lease token missing (claim one first)")
        now = time.monotonic()
        if touch != "peek":
            lease.seen = now
        if touch == "active":
            lease.active = now
        return lease

    def release(self, token: str | None) -> None:
        with self.lock:
            lease = self.leases.pop(token or "", None)
        if lease is not None:
            lease.close()

    def sweep(self) -> None:
        """Drop the leases idle past the idle timeout or silent past the liveness timeout."""
        now = time.monotonic()
        with self.lock:
            limits = self.options
            gone = [self.leases.pop(t) for t, lease in list(self.leases.items())
                    if now - lease.seen > limits.liveness_timeout or now - lease.active > limits.idle_timeout]
        for lease in gone:  # outside the lock: letting go of an image's embeddings hashes its slices
            lease.close()

    def remaining(self, lease: Lease) -> float:
        return max(0.0, self.options.idle_timeout - (time.monotonic() - lease.active))

    def close(self) -> None:
        """The server ends: every lease's background encoder is stopped and waited for (before the model sessions go
        with the process)."""
        with self.lock:
            leases = list(self.leases.values())
            for lease in leases:
                lease.close()
            self.leases.clear()
        for lease in leases:
            if lease.encoding is not None:
                lease.encoding.join(timeout=120)

    # -- the image and the object --
    def check_image(self, shape: tuple, dtype: np.dtype) -> None:
        """Refused 413 for an image (its header's shape and dtype) that takes more than ``--max-image-mb`` decoded,
        or more memory than is available while a lease holds it (the decoded array, the image as the model sees it
        and the labels; for an image that is not uint8, its float copies while it is mapped to 0-255)."""
        voxels = int(np.prod(shape[1:], dtype=object)) if len(shape) == 4 else 0
        if voxels > MAX_VOXELS:
            raise Refused(413, f"an image of {list(shape[1:])} voxels; at most {MAX_VOXELS} are accepted")
        decoded = int(np.prod(shape, dtype=object)) * dtype.itemsize
        limit = self.options.max_image_bytes
        if decoded > limit:
            raise Refused(413, f"the image {list(shape)} {dtype.name} takes {human(decoded)} decoded; this server "
                               f"accepts at most {human(limit)} (--max-image-mb)")
        need = decoded + voxels * (WORK_PER_VOXEL + (0 if dtype in (np.uint8, np.bool_) else PREPARE_PER_VOXEL))
        if self.options.memory:  # within --memory, the embeddings' cache may still grow to its bound
            need += max(0, self.cache.max_bytes - self.cache.bytes)
        free = room(self.options.memory)
        if free is not None and need > free:
            raise Refused(413, f"the image {list(shape)} {dtype.name} needs about {human(need)} of memory; "
                               f"{human(free)} is available to this server"
                               + (" (--memory)" if self.options.memory else ""))

    def set_image(self, lease: Lease, image: np.ndarray, properties: dict) -> list:
        if image.ndim != 4 or min(image.shape) < 1:
            raise Refused(400, f"the image must be 4D [channels, a0, a1, a2] with no empty axis, got shape "
                               f"{list(image.shape)}")
        if image.dtype == np.float16:
            image = image.astype(np.float32)
        if image.dtype.kind == "f" and not np.isfinite(image[0]).all():
            raise Refused(400, "the image holds NaN or infinite values")
        modality = properties.get("modality", self.options.modality)
        if modality is not None and not (isinstance(modality, str) and modality.isprintable() and len(modality) < 40):
            raise Refused(400, "image_properties.modality must be a short name such as \"CT\" or \"MR\"")
        try:
            self.prompting.router.check_modality(modality, "image_properties.modality")
        except LitemedsamError as e:  # an unknown one would route the image by chance
            raise Refused(400, str(e)) from None
        spacing = properties.get("spacing")
        if spacing is not None:
            if not (isinstance(spacing, list) and len(spacing) == 3 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in spacing)
                    and usable_spacing(spacing)):
                raise Refused(400, "image_properties.spacing must be 3 positive numbers (mm, in the array's axis "
                                   "order)")
        data = image[0] if image.dtype != np.bool_ else image[0].astype(np.uint8) * np.uint8(255)
        try:
            case = case_of_voxels(Path("nninteractive"), data, np.zeros((0, 6)), "3D", modality, self.options.window,
                                  fmt="challenge", geometry=Geometry.of(spacing[::-1] if spacing else None))
            scene = Protocolled(case, self.prompting, self.segmenters, self.cache, turns=self.model)
            scene.model_for()  # a model is built for it: said now, not at the first interaction
        except LitemedsamError as e:
            raise Refused(400, f"the image: {e}") from None
        lease.let_go()  # the previous image
        lease.scene, lease.clicks, lease.pending = scene, [], []
        lease.encoding = BackgroundEncoding(scene, scene.depth // 2, forget=True)
        lease.encoding.start()
        return list(image.shape)

    def set_target(self, lease: Lease, payload: dict) -> None:
        shape, dtype = payload.get("shape"), payload.get("dtype")
        if not (isinstance(shape, list) and len(shape) == 3 and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise Refused(400, "shape must be 3 positive integers")
        try:
            dtype = np.dtype(dtype if isinstance(dtype, str) else "")
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "biu":
            raise Refused(400, f"dtype {shown(payload.get('dtype'))} is not a bool or integer type")
        if lease.scene is not None and tuple(shape) != lease.scene.labels.shape:
            raise Refused(400, f"the target buffer's shape {shape} is not the image's {list(lease.scene.labels.shape)}")
        lease.target = (tuple(shape), dtype)
        self.reset(lease)

    def reset(self, lease: Lease) -> None:
        """An empty object, no interactions, nothing to undo."""
        lease.clicks, lease.pending = [], []
        scene = lease.scene
        if scene is not None:
            scene.clear()
            scene.unanswered()  # the client clears its own buffer

    # -- interactions --
    def ready(self, lease: Lease) -> Protocolled:
        if lease.scene is None:
            raise Refused(409, "no image: call set_image first")
        if lease.target is None:
            raise Refused(409, "no target buffer: call set_target_buffer first")
        if lease.target[0] != lease.scene.labels.shape:
            raise Refused(409, "the target buffer's shape is not the image's: call set_target_buffer again")
        return lease.scene

    def interact(self, lease: Lease, action, run: bool, gone: threading.Event | None = None) -> bool:
        """Add ``action`` (a function of the scene) and, with ``run``, run it with those added before without a
        run: whether it ran (its edits answered by ``region``). ``gone``: set when the request's client has gone
        away (its work is then stopped)."""
        self.ready(lease)
        if len(lease.pending) >= MAX_PENDING:
            raise Refused(400, f"{len(lease.pending)} interactions wait for a prediction (run_prediction false); at "
                               f"most {MAX_PENDING}: call /predict")
        held = sum(getattr(a, "held", 0) for a in lease.pending) + getattr(action, "held", 0)
        if held > MAX_PENDING_BYTES:
            raise Refused(400, f"the masks waiting for a prediction would hold {held >> 20} MB; at most "
                               f"{MAX_PENDING_BYTES >> 20} MB: call /predict")
        lease.pending.append(action)
        if not run:
            return False
        return self.run(lease, gone)

    def run(self, lease: Lease, gone: threading.Event | None = None) -> bool:
        """Run the lease's interactions added without a run; whether there were any."""
        scene = self.ready(lease)
        if self.closing.is_set() or lease.ended.is_set():  # a request that waited its turn behind a cancelled one
            raise Refused(503, "cancelled: " + ("the server is stopping" if self.closing.is_set() else
                                                "the lease ended"))
        actions, lease.pending = lease.pending, []
        if not actions:
            return False

        def still_wanted(done: int, total: int) -> None:  # between slices: stop for nobody (Cancelled)
            if self.closing.is_set() or lease.ended.is_set() or (gone is not None and gone.is_set()):
                raise Cancelled()
        lease.running = True
        try:
            with progress.reporting(still_wanted):
                for action in actions:  # each runs the model in its turn (the scene's, this server's ModelTurns)
                    action(scene)
        except CaseError as e:
            raise Refused(400, str(e)) from None
        except Cancelled:  # (the actions run before it keep their edits: they are answered)
            why = ("the server is stopping" if self.closing.is_set() else "the client went away"
                   if gone is not None and gone.is_set() else "the lease ended")
            log.warning("an interaction was cancelled: %s (its object stays as it was before it)", why)
            raise Refused(503, f"cancelled: {why}") from None
        finally:
            lease.running = False
        return True

    def stop_work(self) -> int:
        """The server is stopping (SIGTERM, Ctrl-C): interactions under way are cancelled at their next slice and
        background encoders stopped, instead of being waited for. Returns how many interactions were running."""
        self.closing.set()
        with self.lock:
            leases = list(self.leases.values())
        for lease in leases:
            lease.ended.set()
            lease.let_go()
        return sum(lease.running for lease in leases)

    def undo(self, lease: Lease) -> bool:
        return self.ready(lease).undo()

    def region(self, lease: Lease) -> tuple[list | None, np.ndarray | None]:
        """The bbox of the voxels changed since the lease's last answer (half-open, in array order) and the object
        there, in the target buffer's dtype; (None, None) for none. Read without the lease's turn (an answer given
        while its work goes on): a voxel painted meanwhile is sent again by the next answer."""
        scene = lease.scene
        if scene is None or lease.target is None:
            return None, None
        changed = [w for w in scene.unanswered() if len(w)]
        if not changed:
            return None, None
        where = np.concatenate(changed)
        at = np.unravel_index(where, scene.labels.shape)
        bbox = [[int(a.min()), int(a.max()) + 1] for a in at]
        window = tuple(slice(lo, hi) for lo, hi in bbox)
        lease.focus_on((bbox[0][0] + bbox[0][1]) // 2)
        return bbox, (scene.labels[window] == OBJECT).astype(lease.target[1])

    def box_action(self, lease: Lease, coords, include: bool):
        """The action of a box (half-open [[lo, hi]] x 3 in array order, floats rounded)."""
        shape = self.ready(lease).labels.shape
        if not (isinstance(coords, list) and len(coords) == 3 and all(
                isinstance(b, list) and len(b) == 2 and all(number(v, 1 << 40) for v in b) for b in coords)):
            raise Refused(400, "bbox_coords must be [[lo, hi], [lo, hi], [lo, hi]] (numbers, half-open)")
        box = [[round(lo), round(hi)] for lo, hi in coords]
        if any(hi <= lo for lo, hi in box):
            raise Refused(400, f"bbox_coords {coords} has no extent on an axis (half-open: hi > lo)")
        flat = [a for a, (lo, hi) in enumerate(box) if hi - lo == 1]
        clipped = [[max(lo, 0), min(hi, n)] for (lo, hi), n in zip(box, shape)]
        if any(hi <= lo for lo, hi in clipped):
            raise Refused(400, f"bbox_coords {coords} lies outside the image {list(shape)}")
        (z0, z1), (y0, y1), (x0, x1) = clipped
        lease.focus_on((z0 + z1 - 1) // 2)
        if not flat:
            def box_3d(scene):
                mask, _ = scene.box_mask((x0, y0, x1 - 1, y1 - 1), (z0 + z1 - 1) // 2, (z0, z1 - 1))
                apply(scene, mask, include, (z0, z1 - 1), "z")
            return box_3d
        axis = 0 if 0 in flat else flat[0]
        plane = "zyx"[axis]
        index = clipped[axis][0]
        rows, cols = [clipped[a] for a in range(3) if a != axis]
        rect = (cols[0], rows[0], cols[1] - 1, rows[1] - 1)
        if plane != "z" and OFF_AXIS == "cuts":
            lease.work_across(plane, index)

        def action(scene):
            mask, _ = scene.propagate(rect, index, plane)
            apply(scene, mask, include, extent(mask, axis), plane)
        return action

    def point_action(self, lease: Lease, coordinates, include: bool):
        shape = self.ready(lease).labels.shape
        if not (isinstance(coordinates, list) and len(coordinates) == 3
                and all(number(v, 1 << 40) for v in coordinates)):
            raise Refused(400, "coordinates must be 3 numbers (a voxel, in the array's axis order)")
        at = tuple(int(round(v)) for v in coordinates)
        if not all(0 <= v < n for v, n in zip(at, shape)):
            raise Refused(400, f"point {list(at)} is outside the image {list(shape)}")
        if len(lease.clicks) >= MAX_POINTS:
            raise Refused(400, f"this object has {len(lease.clicks)} points; an object takes at most {MAX_POINTS} "
                               f"(reset the interactions, or start a new object)")
        lease.focus_on(at[0])
        clicks, before = lease.clicks, len(lease.clicks)  # the earlier points, read when it runs (no copy per point)
        clicks.append(at)

        def action(scene):
            if not include and not scene.has(OBJECT):
                return  # nothing to take the voxel from
            scene.click(OBJECT, "fg" if include else "bg", at, clicks[:before])
        return action

    def lasso_action(self, lease: Lease, mask: np.ndarray, bbox, include: bool):
        shape = self.ready(lease).labels.shape
        region = placed(mask, bbox, shape)
        found = np.nonzero(region)
        if not len(found[0]):
            raise Refused(400, "the lasso is empty")
        flat = [a for a in range(3) if found[a].min() == found[a].max()]
        if not flat:
            raise Refused(400, "a lasso is a region on one slice (extent 1 along an axis); this one spans several")
        axis = 0 if 0 in flat else flat[0]
        plane, index = "zyx"[axis], int(found[axis][0])
        rows, cols = [found[a] for a in range(3) if a != axis]
        rect = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
        lease.focus_on(found[0].min())

        if include and plane != "z" and OFF_AXIS == "cuts":
            lease.work_across(plane, index)

        def action(scene):
            if include:
                got, _ = scene.propagate(rect, index, plane)
                apply(scene, got, True, extent(got, axis), plane)
            else:
                scene.remove(region, OBJECT)
        action.held = 0 if include else region.nbytes  # type: ignore[attr-defined]
        return action

    def initial_action(self, lease: Lease, seg: np.ndarray):
        shape = self.ready(lease).labels.shape
        if seg.shape != shape:
            raise Refused(400, f"the initial segmentation's shape {list(seg.shape)} is not the image's {list(shape)}")
        if seg.dtype.kind == "f" and not np.isfinite(seg).all():
            raise Refused(400, "the initial segmentation holds NaN or infinite values (send 0 for background, "
                               "non-zero for the object)")
        lease.clicks = []
        mask = seg != 0

        def action(scene):
            scene.paint(mask, OBJECT)
        action.held = mask.nbytes  # type: ignore[attr-defined]
        return action


def extent(mask: np.ndarray, axis: int) -> tuple | None:
    """(first, last) cut along ``axis`` where ``mask`` has a voxel (None: nowhere)."""
    along = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    return (int(along[0]), int(along[-1])) if len(along) else None


def apply(scene: Scene, mask: np.ndarray, include: bool, cuts: tuple | None, plane: str) -> None:
    """A box's mask into the object: including, it replaces the object on the cuts the mask spans (the object
    elsewhere stays); excluding, the object loses the mask's voxels."""
    if cuts is None:
        return
    if include:
        scene.paint(mask, OBJECT, slices=cuts, plane=plane)
    else:
        scene.remove(mask, OBJECT)


def placed(mask: np.ndarray, bbox, shape: tuple) -> np.ndarray:
    """A mask interaction on the image's grid: the whole image's, or a crop at ``bbox`` (half-open, in bounds)."""
    if bbox is None:
        if mask.shape != shape:
            raise Refused(400, f"the mask's shape {list(mask.shape)} is not the image's {list(shape)} (or give its "
                               f"interaction_bbox)")
        return mask != 0
    if not (isinstance(bbox, list) and len(bbox) == 3 and all(
            isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in b)
            for b in bbox)):
        raise Refused(400, "interaction_bbox must be [[lo, hi], [lo, hi], [lo, hi]] (integers, half-open)")
    if not all(0 <= lo < hi <= n for (lo, hi), n in zip(bbox, shape)):
        raise Refused(400, f"interaction_bbox {bbox} is not within the image {list(shape)}")
    if list(mask.shape) != [hi - lo for lo, hi in bbox]:
        raise Refused(400, f"the mask's shape {list(mask.shape)} is not its interaction_bbox's size")
    region = np.zeros(shape, bool)
    region[tuple(slice(lo, hi) for lo, hi in bbox)] = mask != 0
    return region


# -- HTTP --

