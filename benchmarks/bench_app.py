"""An annotator's session with the browser app, scripted over its HTTP API (the requests the page sends), on a
real server process: a BraTS FLAIR tumour (the raw NIfTI and its oedema label) and ten 2D dev cases, each
segmented by a box per object, then the 2025 protocol's clicks (``--clicks`` per object, the largest error's
centre each time), then one brush stroke where the largest error is left. Prints each action's time and the Dice
after the boxes, the clicks and the brush (issue 38's acceptance).

    python -m benchmarks.bench_app [--clicks 5] [--cases10 ...] [--busy]

``--busy`` instead: a 2D case opened and a box drawn (its image not encoded before) on five of the 2D cases with
nothing else running, then
on the other five while the BraTS volume is encoded in the background (its page open): the median seconds of each
and their ratio (issue 46: within 1.5x). The server keeps no embeddings on disk (bench_serve.served).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.interactive import next_click
from benchmarks.bench_serve import call, served
from litemedsam.core.masks import dice
from litemedsam.models.registry import dev_data_dir

BRATS = ("BraTS2021_01646_flair.nii.gz", "BraTS2021_01646_edema_label.nii.gz")
CASES_2D = [
    "2DBox_CT_SAMMed2D_amos_0004_75.npz",
    "2DBox_Endoscopy_Kvasir_cju0qx73cjw570799j4n5cjze.npz",
    "2DBox_Fundus_MedScribble-STARE_im0044_axis0_midslice.npz",
    "2DBox_MR_MedScribble-ACDC_patient018_axis2_maxslice.npz",
    "2DBox_Microscopy_MedScribble-WBC_025_axis0_midslice.npz",
    "2DBox_OCT_MedScribble-OCTA500_10052_axis0_midslice.npz",
    "2DBox_US_MedScribble-CAMUS_train-patient0286_axis0_midslice.npz",
    "2DBox_XRay_MedScribble-HipXRay_image_098_axis0_midslice.npz",
    "2DBox_CT_MedScribble-CHAOS_30_axis0_midslice.npz",
    "2DBox_MR_MedScribble-OASIS_OASIS_OAS1_0209_MR1_axis2_midslice.npz",
]


class App:
    """The page's requests to one open case."""

    def __init__(self, url: str, doc: dict):
        self.url, self.doc, self.times = url, doc, []

    def post(self, what: str, body: dict) -> dict:
        start = time.perf_counter()
        answer = json.loads(call(f"{self.url}/api/doc/{self.doc['id']}/{what}", body))
        if answer.get("job"):
            while (answer := json.loads(call(f"{self.url}/api/doc/{self.doc['id']}/job")))["state"] == "running":
                time.sleep(0.05)
            assert answer["state"] == "done", answer
        self.times.append((what, time.perf_counter() - start))
        return answer

    def labels(self) -> np.ndarray:
        return np.load(io.BytesIO(call(f"{self.url}/api/doc/{self.doc['id']}/labels.npy")))


def scores(labels: np.ndarray, truth: np.ndarray, objects) -> float:
    return float(np.mean([dice(labels == c, truth == c) for c in objects]))


def session(app: App, truth: np.ndarray, boxes: list, clicks: int, dim: str) -> list:
    """Boxes (one per object, label = its truth's), clicks, a brush stroke; the mean Dice after each."""
    objects = list(range(1, len(boxes) + 1))
    for label, box in zip(objects, boxes):
        if dim == "2D":
            app.post("box", {"box": box, "label": label})
        else:
            x0, y0, z0, x1, y1, z1, z = box
            app.post("box", {"box": [x0, y0, x1, y1], "z": z, "z_range": [z0, z1], "label": label})
    found = [scores(app.labels(), truth, objects)]
    for _ in range(clicks):
        for label in objects:
            got = next_click(app.labels(), truth, label)
            if got is not None:
                kind, at = got
                z, y, x = at if dim == "3D" else (0, *at)
                app.post("click", {"x": x, "y": y, "z": z, "kind": kind, "label": label})
    found.append(scores(app.labels(), truth, objects))
    got = next_click(app.labels(), truth, objects[0])
    if got is not None:  # a brush (or eraser) stroke of 3 pixels where the largest error is left
        kind, at = got
        z, y, x = at if dim == "3D" else (0, *at)
        app.post(
            "brush", {"z": z, "points": [[x, y], [x + 1, y]], "radius": 3, "label": objects[0] if kind == "fg" else 0}
        )
    found.append(scores(app.labels(), truth, objects))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5, help="protocol clicks per object")
    parser.add_argument("--raw", type=Path, default=dev_data_dir().parent / "raw")
    parser.add_argument("--skip-brats", action="store_true")
    parser.add_argument("--ahead", action="store_true", help="let the volume's slices be encoded before the box (as "
                        "while a user looks at it)")
    parser.add_argument("--busy", action="store_true", help="a 2D box idle, then while a volume encodes")
    args = parser.parse_args(argv)
    dev = dev_data_dir()
    if args.busy:
        return busy(dev, args.raw)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for name in CASES_2D:
            (folder / name).symlink_to((dev / "imgs" / name).resolve())
        (folder / BRATS[0]).symlink_to((args.raw / BRATS[0]).resolve())
        with served(folder, Path(tmp) / "segs") as url:
            rows = []
            for name in CASES_2D:
                app = App(url, json.loads(call(url + "/api/open", {"name": name})))
                data, truth = np.load(folder / name), np.load(dev / "gts" / name)["gts"]
                found = session(app, truth, data["boxes"].tolist(), args.clicks, "2D")
                rows.append(found)
                times = [t for _, t in app.times]
                print(
                    f"{name}: {len(data['boxes'])} objects, {len(times)} actions, median {np.median(times):.2f} s, "
                    f"max {max(times):.2f} s; Dice box {found[0]:.3f} -> clicks {found[1]:.3f} -> brush {found[2]:.3f}"
                )
            mean = np.mean(rows, axis=0)
            print(f"ten 2D cases: mean Dice box {mean[0]:.3f} -> clicks {mean[1]:.3f} -> brush {mean[2]:.3f}")
            if not args.skip_brats:
                from litemedsam.io import formats

                app = App(url, json.loads(call(url + "/api/open", {"name": BRATS[0]})))
                truth, _ = formats.read_labels(args.raw / BRATS[1])
                truth = (np.asarray(truth) > 0).astype(np.uint8)
                # the challenge's box: the label's 3D bounding box, from its middle slice
                zs, ys, xs = np.nonzero(truth)
                box = [int(xs.min()), int(ys.min()), int(zs.min()), int(xs.max()), int(ys.max()), int(zs.max()),
                       (int(zs.min()) + int(zs.max())) // 2]
                if args.ahead:  # the page shows the middle slice: the server encodes the volume in the background
                    call(f"{url}/api/doc/{app.doc['id']}/image/{box[6]}")
                    start = time.perf_counter()
                    while json.loads(call(f"{url}/api/doc/{app.doc['id']}"))["encoded"] < app.doc["depth"]:
                        time.sleep(0.2)
                    print(
                        f"  BraTS: {app.doc['depth']} slices encoded in the background in "
                        f"{time.perf_counter() - start:.1f} s"
                    )
                found = session(app, truth, [box], args.clicks, "3D")
                for what, seconds in app.times:
                    print(f"  BraTS {what}: {seconds:.2f} s")
                print(
                    f"BraTS FLAIR oedema ({box[5] - box[2] + 1} slices): Dice box {found[0]:.3f} -> "
                    f"clicks {found[1]:.3f} -> "
                    f"brush {found[2]:.3f}; {sum(t for _, t in app.times):.1f} s of waiting in all"
                )
    return 0


def busy(dev: Path, raw: Path) -> int:
    """Seconds of a 2D box on a case not yet encoded: five cases idle, five while a volume encodes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for name in CASES_2D:
            (folder / name).symlink_to((dev / "imgs" / name).resolve())
        (folder / BRATS[0]).symlink_to((raw / BRATS[0]).resolve())
        with served(folder, Path(tmp) / "segs") as url:
            def box(name: str) -> float:
                """Seconds to open the case (its image encoded then) and draw its first object's box."""
                start = time.perf_counter()
                app = App(url, json.loads(call(url + "/api/open", {"name": name})))
                app.post("box", {"box": np.load(folder / name)["boxes"][0].tolist(), "label": 1})
                return time.perf_counter() - start

            idle = [box(name) for name in CASES_2D[:5]]
            volume = json.loads(call(url + "/api/open", {"name": BRATS[0]}))
            call(f"{url}/api/doc/{volume['id']}/image/{volume['depth'] // 2}")  # the page shows it: encoding starts
            during, encoded = [], []
            for name in CASES_2D[5:]:  # the volume asked about first: kept open (the app closes past MAX_OPEN)
                encoded.append(json.loads(call(f"{url}/api/doc/{volume['id']}"))["encoded"])
                during.append(box(name))
            encoded.append(json.loads(call(f"{url}/api/doc/{volume['id']}"))["encoded"])
    print(
        f"2D case opened and a box drawn: idle {' '.join(f'{t:.2f}' for t in idle)} (median {np.median(idle):.2f} s); "
        f"while the volume encodes (its slices done before each: {encoded}) {' '.join(f'{t:.2f}' for t in during)} "
        f"(median {np.median(during):.2f} s); ratio {np.median(during) / np.median(idle):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
