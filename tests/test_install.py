"""A plain install, as a user makes one (issue 33): the wheel built from this tree installed with no extras into a
fresh venv (its dependencies from the package registry), then each feature run once by that venv's `litemedsam`
from a folder outside the repository: a box case, a 2025 case with clicks and prev_pred, the Python API (each the
same output as the development venv's), the features of an extra saying which extra to install, and once the
`serve` extra is installed, `litemedsam serve`'s Fill holes over HTTP. SciPy was once only in extras: every click
step failed in a plain install and in the Docker image while the development venv, which has every extra, passed.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from evaluation.interactive import boxes_2025, next_click, write_case

REPO = Path(__file__).resolve().parent.parent
CASE_2D = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"
CASE_3D = "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz"


class Venv:
    def __init__(self, root: Path, work: Path):
        self.root, self.work = root, work
        self.env = {**os.environ, "LITEMEDSAM_WORK_DIR": str(REPO / "work_dir"), "PYTHONPATH": ""}

    def run(self, program: str, *args, **kw):
        return subprocess.run([str(self.root / "bin" / program), *map(str, args)], capture_output=True, text=True,
                              cwd=self.work, env={**self.env, **kw.pop("env", {})}, **kw)


@pytest.fixture(scope="module")
def venv(models_ready, tmp_path_factory):
    """A fresh venv with the wheel of this tree and nothing else (no extras), run from an empty folder."""
    tmp = tmp_path_factory.mktemp("install")
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "-w", tmp / "wheel", REPO], capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stderr[-2000:]
    subprocess.run([sys.executable, "-m", "venv", tmp / "venv"], check=True)
    made = Venv(tmp / "venv", tmp / "work")
    made.work.mkdir()
    made.wheel = next((tmp / "wheel").glob("litemedsam-*.whl"))
    done = made.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", made.wheel)
    assert done.returncode == 0, done.stderr[-2000:]
    found = made.run("python", "-c", "import litemedsam; print(litemedsam.__file__)")
    assert found.stdout.startswith(str(made.root)), found.stdout + found.stderr  # the installed copy, not the tree's
    return made


def host_infer(folder: Path, out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "litemedsam", "infer", "-i", folder, "-o", out], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


def both_infer(venv, folder: Path, tmp_path: Path, name: str) -> np.ndarray:
    """The segmentation of ``folder``'s case ``name`` by the fresh venv, checked equal to the development venv's."""
    done = venv.run("litemedsam", "infer", "-i", folder, "-o", tmp_path / "plain")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    host_infer(folder, tmp_path / "dev")
    ours, theirs = (np.load(tmp_path / out / name)["segs"] for out in ("plain", "dev"))
    assert np.array_equal(ours, theirs), name
    return ours


def test_a_box_case_and_the_api(venv, dev_data, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(dev_data / "imgs" / CASE_2D, folder)
    segs = both_infer(venv, folder, tmp_path, CASE_2D)
    code = ("import sys, numpy as np, litemedsam; case = np.load(sys.argv[1]); "
            "np.save(sys.argv[2], litemedsam.segment(case['imgs'], case['boxes']))")
    done = venv.run("python", "-c", code, folder / CASE_2D, tmp_path / "api.npy")
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(tmp_path / "api.npy"), segs)


def test_a_2025_click_step(venv, dev_data, tmp_path):
    """The organisers' second step: the box step's output as prev_pred and one click per class (where its largest
    error is), as their script writes them."""
    data, gts = np.load(dev_data / "imgs" / CASE_3D), np.load(dev_data / "gts" / CASE_3D)["gts"]
    folder = tmp_path / "in"
    folder.mkdir()
    write_case(folder / CASE_3D, data["imgs"], data["spacing"], boxes_2025(gts), None, None, None)
    host_infer(folder, tmp_path / "box")
    prev = np.load(tmp_path / "box" / CASE_3D)["segs"]
    kinds = [int(c) for c in np.unique(gts) if c]
    clicks, order = [{"fg": [], "bg": []} for _ in kinds], [[] for _ in kinds]
    for i, c in enumerate(kinds):
        kind, at = next_click(prev, gts, c)
        clicks[i][kind].append(list(at))
        order[i].append(kind)
    write_case(folder / CASE_3D, data["imgs"], data["spacing"], boxes_2025(gts), clicks, order, prev.astype(np.uint8))
    segs = both_infer(venv, folder, tmp_path, CASE_3D)
    assert (segs != prev).any()


def test_the_features_of_an_extra_name_it(venv, dev_data, tmp_path):
    """Without the extras: serve, --scheduler and NRRD each say what to install, with no traceback."""
    raw = dev_data.parent / "raw" / "brain1_image.nrrd"
    for args, extra in [(("serve", "app", dev_data / "imgs"), "serve"), (("serve", "nninteractive"), "serve"),
                        (("serve", "--protocol", "nninteractive"), "serve"),  # the older form, still taken
                        (("infer", "-i", dev_data / "imgs" / CASE_2D, "-o", tmp_path / "a", "--scheduler",
                          "tcp://127.0.0.1:9"), "cluster"),
                        (("infer", "-i", raw, "-o", tmp_path / "b", "--box", "10,10,10,40,40,20"), "io")]:
        given = next((a for a in args if isinstance(a, Path)), None)  # the folder or case read
        if given is not None and not given.exists():
            continue
        done = venv.run("litemedsam", *args)
        assert done.returncode != 0 and f"litemedsam[{extra}]" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_serve_fills_holes_once_its_extra_is_installed(venv, dev_data, tmp_path):
    done = venv.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{venv.wheel}[serve]")
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(dev_data / "imgs" / CASE_3D, folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "fresh-venv-token-0123456789abcdef"
    server = subprocess.Popen(
        [venv.root / "bin" / "litemedsam", "serve", "app", folder, "-o", tmp_path / "segs", "--port", str(port)],
        cwd=venv.work,
        env={**venv.env, "LITEMEDSAM_SERVE_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/api"

    def call(path, body=None):
        request = urllib.request.Request(url + path, None if body is None else json.dumps(body).encode(),
                                         {"X-Litemedsam-Token": token, "X-Litemedsam": "1",
                                          "Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    try:
        for _ in range(600):  # until it answers (it prints its address once listening)
            try:
                call("/cases")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.05)
        doc = call("/open", {"name": CASE_3D})
        z = doc["depth"] // 2
        ring = [[40 + 10 * np.cos(a), 40 + 10 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 40)]
        call(f"/doc/{doc['id']}/brush", {"z": z, "points": ring, "radius": 2, "label": 7})
        filled = call(f"/doc/{doc['id']}/tidy", {"z": z, "label": 7, "action": "fill"})
        assert filled["changed"] > 100  # the ring's inside
    finally:
        server.terminate()
        server.wait(30)


def test_the_nninteractive_protocol_once_serve_is_installed(venv, dev_data, tmp_path):
    """The fresh venv's server (litemedsam[serve]: blosc2 declared) answers the real client: a box, a 3D object."""
    pytest.importorskip("nnInteractive.inference.remote", reason="nninteractive-client is not installed")
    from evaluation.served import Served, box_dice

    done = venv.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{venv.wheel}[serve]")
    assert done.returncode == 0, done.stderr[-2000:]
    server = Served(venv.work, program=[venv.root / "bin" / "litemedsam"], env=venv.env)
    try:
        session = server.session()
        assert box_dice(session, dev_data, CASE_3D) > 0.8
        session.close()
    finally:
        _, err = server.close()
    assert "Traceback" not in err, err


def test_models_are_found_from_any_folder_in_the_users_data_folder(venv, dev_data, tmp_path):
    """No $LITEMEDSAM_WORK_DIR, no checkout: the installed package looks in this user's data folder, from any
    current folder, and `models list` says so."""
    data = tmp_path / "data"
    (data / "litemedsam").mkdir(parents=True)
    for path in (REPO / "work_dir").glob("*.onnx*"):
        (data / "litemedsam" / path.name).symlink_to(path)
    env = {k: v for k, v in venv.env.items() if k != "LITEMEDSAM_WORK_DIR"}
    env.update(XDG_DATA_HOME=str(data), LITEMEDSAM_CACHE_DIR="off")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = subprocess.run([venv.root / "bin" / "litemedsam", "models", "list"], capture_output=True, text=True,
                            cwd=elsewhere, env=env)
    assert f"models folder: {data / 'litemedsam'} (this user's data folder" in listed.stdout, (
        listed.stdout + listed.stderr
    )
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(dev_data / "imgs" / CASE_2D, folder)
    done = subprocess.run([venv.root / "bin" / "litemedsam", "infer", "-i", folder, "-o", tmp_path / "out"],
                          capture_output=True, text=True, cwd=elsewhere, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / CASE_2D).is_file()
