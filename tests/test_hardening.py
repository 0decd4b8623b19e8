"""Hostile input and run conditions (issue 16): nothing lost, nothing written outside the output folder,
every problem a clear message naming the file, never a traceback."""
import csv
import os
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import wait_for_pause
from litemedsam.io.cases import CaseError
from litemedsam.io.formats.challenge import load_case, save_segmentation

REPO = Path(__file__).resolve().parent.parent
BOX = np.array([[8, 8, 40, 40]])


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "litemedsam", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, **kwargs)


def tiny_case(path, boxes=BOX):
    image = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    np.savez(path, imgs=image, boxes=boxes)
    return path


def no_traceback(done):
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


def temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


# 1. the input is never overwritten ----------------------------------------------------------------

def test_input_file_inside_the_output_folder_is_refused(tmp_path):
    case = tiny_case(tmp_path / "2DBox_CT_in.npz")
    before = case.read_bytes()
    (tmp_path.parent / f"{tmp_path.name}-link").symlink_to(tmp_path)
    for out in (tmp_path, tmp_path.parent / f"{tmp_path.name}-link", tmp_path / "."):
        done = cli("infer", "-i", case, "-o", out)
        assert done.returncode == 2 and "would replace the inputs" in done.stderr, done.stderr
        no_traceback(done)
    assert case.read_bytes() == before


def test_a_link_from_the_input_folder_into_the_output_folder_is_not_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    real = tiny_case(out / "2DBox_CT_x.npz")
    before = real.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / real.name).symlink_to(real)
    done = cli("infer", "-i", tmp_path / "in", "-o", out)
    assert done.returncode == 1 and "is the input file itself" in done.stderr
    no_traceback(done)
    assert real.read_bytes() == before


# 2. temporary files are made exclusively, never through a planted link ------------------------------

def test_writers_do_not_follow_links_planted_at_temporary_names(tmp_path):
    pytest.importorskip("onnx", reason="saving a head needs onnx (the export extra)")
    from litemedsam.models.registry import MODELS, write_manifest
    from litemedsam.core.timing import write_times
    from litemedsam.methods.selfprompt import save_head

    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    names = ["2DBox_CT_x.npz", "efficiency.csv", "litemedsam-ft.manifest.json", "head.onnx"]
    for name in names:  # every fixed temporary name the writers used before
        for planted in (f".{name}.{os.getpid()}.tmp", f"{name}.tmp", f"{name}.part"):
            (out / planted).symlink_to(victim)
    save_segmentation(out / names[0], np.ones((4, 4), np.uint8))
    write_times(out / names[1], {"a.npz": {"time": "1.0", "status": "ok"}})
    write_manifest(MODELS["litemedsam-ft"], out)
    save_head(out / names[3], np.zeros(256), 0.0, {"model": "litemedsam"})
    assert victim.read_text() == "precious"
    for name in names:
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert oct((out / names[0]).stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_does_not_follow_a_link_planted_at_its_temporary_name(tmp_path):
    torch = pytest.importorskip("torch")
    from export.onnx_export import GraphSpec, export_graph

    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "lin.onnx"
    target.with_suffix(".tmp.onnx").symlink_to(victim)
    module = torch.nn.Linear(3, 2)
    export_graph(GraphSpec("lin", module, (torch.zeros(1, 3),), (torch.ones(2, 3),), ["x"], ["y"],
                           {"x": {0: "n"}}), target)
    assert victim.read_text() == "precious" and target.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lin.onnx", "lin.tmp.onnx", "victim"]


# 3. SIGTERM and leftovers of killed runs ---------------------------------------------------------

def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    dead = 99999999  # above any pid_max
    stale = [f".litemedsam-{dead}-abc123.tmp", f".2DBox_CT_x.npz.{dead}.tmp", f".efficiency.csv.{dead}.tmp"]
    for name in stale:
        (out / name).write_bytes(b"partial")
    live = out / f".litemedsam-{os.getpid()}-xyz.tmp"  # this test's process is alive: a concurrent run
    live.write_bytes(b"in progress")
    mine = out / "notes.tmp"  # not ours
    mine.write_text("user file")
    done = cli("infer", "-i", tmp_path / "in", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "removed 3 temporary file(s)" in done.stdout
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".tmp") == sorted([live.name, mine.name])


def test_sigterm_is_handled_like_ctrl_c(dev_data, models_ready, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    names = ["2DBox_CT_SAMMed2D_s0114_111.npz", "3DBox_MR_BraTS-deepmedic_brats_2013_pat0003_1.npz"]  # quick, slow
    for name in names:
        (inp / name).symlink_to(dev_data / "imgs" / name)
    out = tmp_path / "out"
    flag = tmp_path / "paused"  # infer stops mid-volume (litemedsam.run.pause), its pid in the flag
    env = {**os.environ, "LITEMEDSAM_PAUSE_IN": f"{names[1]}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "infer", "-i", str(inp), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert wait_for_pause(flag, proc) == proc.pid
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr and "--continue-prediction" in stderr and "Traceback" not in stderr
    assert temp_files(out) == [] and not (out / names[1]).exists()
    assert np.load(out / names[0])["segs"].any()


# 4. disk full --------------------------------------------------------------------------------------

def test_disk_full_names_the_file_tries_every_case_and_leaves_nothing_partial(models_ready, tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("needs unshare -rm (user and mount namespaces) to mount a small tmpfs")
    inp = tmp_path / "in"
    inp.mkdir()
    names = ["2DBox_CT_a.npz", "2DBox_CT_b.npz", "2DBox_CT_c.npz"]
    for name in names:
        tiny_case(inp / name)
    out = tmp_path / "out"
    out.mkdir()
    py = sys.executable
    script = f"""
set -u
mount -t tmpfs -o size=128k tmpfs {out}
dd if=/dev/zero of={out}/filler bs=4k 2>/dev/null
{py} -m litemedsam infer -i {inp} -o {out}
echo "rc=$?"
ls -A {out} | tr '\\n' ' '; echo
rm {out}/filler
{py} -m litemedsam infer -i {inp} -o {out} --continue-prediction
echo "rc=$?"
ls -A {out} | tr '\\n' ' '; echo
cat {out}/efficiency.csv
"""
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    no_traceback(done)
    first, second = done.stdout.split("rc=")[1:3]
    assert first.startswith("1"), done.stdout + done.stderr
    for name in names:  # every case tried and reported, with the file that could not be written
        assert f"ERROR {name}: cannot write {out / name}: No space left on device" in done.stderr
    assert "WARNING: cannot write" in done.stderr and "efficiency.csv" in done.stderr
    assert ".tmp" not in first.splitlines()[1]
    assert second.startswith("0") and ".tmp" not in second
    rows = list(csv.DictReader(second.splitlines()[2:]))
    assert sorted(r["case"] for r in rows) == names and {r["status"] for r in rows} == {"ok"}


# 5. names -----------------------------------------------------------------------------------------

def test_long_newline_and_undecodable_names(models_ready, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    long_name = "2DBox_CT_" + "a" * (255 - len("2DBox_CT_") - 4) + ".npz"
    assert len(long_name.encode()) == 255
    tiny_case(inp / long_name)
    forged = "2DBox_CT_x\nERROR forged.npz"
    (inp / forged).write_bytes(b"not a case")
    odd = os.fsdecode(b"2DBox_CT_\xff\xfe.npz")
    tiny_case(inp / odd)
    out = tmp_path / "out"
    done = cli("infer", "-i", inp, "-o", out)
    no_traceback(done)
    assert done.returncode == 1
    assert (out / long_name).is_file() and (out / odd).is_file()
    assert not any(line.startswith("ERROR forged") for line in done.stderr.splitlines())
    assert "ERROR 2DBox_CT_x\\nERROR forged.npz: not a valid .npz file" in done.stderr
    with open(out / "efficiency.csv", newline="", errors="surrogateescape") as handle:
        rows = {r["case"]: r["status"] for r in csv.DictReader(handle)}
    assert rows == {long_name: "ok", forged: "failed", odd: "ok"}


# 6. --continue-prediction with an efficiency.csv of another kind -------------------------------------

def test_continue_with_a_foreign_or_binary_efficiency_csv(models_ready, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("2DBox_CT_a.npz", "2DBox_CT_b.npz"):
        tiny_case(inp / name)
    out = tmp_path / "out"
    out.mkdir()
    save_segmentation(out / "2DBox_CT_a.npz", np.zeros((48, 48), np.uint8))
    (out / "efficiency.csv").write_text("case,time\n2DBox_CT_a.npz,1.5\n")  # as the challenge scripts write it
    done = cli("infer", "-i", inp, "-o", out, "--continue-prediction")
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    rows = {r["case"]: r for r in csv.DictReader(open(out / "efficiency.csv"))}
    assert rows["2DBox_CT_a.npz"]["time"] == "1.5" and rows["2DBox_CT_b.npz"]["status"] == "ok"
    (out / "efficiency.csv").write_bytes(bytes(range(256)) * 4)
    (out / "2DBox_CT_b.npz").unlink()
    done = cli("infer", "-i", inp, "-o", out, "--continue-prediction")
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    assert "moved aside to efficiency.csv.unreadable" in done.stderr
    assert (out / "efficiency.csv.unreadable").read_bytes() == bytes(range(256)) * 4
    assert "2DBox_CT_b.npz" in (out / "efficiency.csv").read_text()


# 7-9. run-wide options -----------------------------------------------------------------------------

def test_a_binary_router_file_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    router = tmp_path / "router.toml"
    router.write_bytes(b"\xff\xfe\x00\x01garbage\x80")
    done = cli("infer", "-i", tmp_path / "in", "-o", tmp_path / "out", "--router", router)
    assert done.returncode == 2 and f"{router}: not a text file" in done.stderr
    no_traceback(done)


def test_a_npy_reference_mask_is_refused(tmp_path):
    (tmp_path / "in").mkdir()
    ref = tiny_case(tmp_path / "2DBox_CT_ref.npz")
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones((48, 48), np.uint8))
    done = cli("infer", "-i", tmp_path / "in", "-o", tmp_path / "out", "--reference", ref, "--reference-mask", mask)
    assert done.returncode == 2 and "mask.npy: a .npy file" in done.stderr
    no_traceback(done)


def test_thread_counts_are_checked_once_and_capped(models_ready, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    tiny_case(inp / "2DBox_CT_a.npz")
    done = cli("infer", "-i", inp, "-o", tmp_path / "o1", "--threads", 1000, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING: --threads 1000 is more than the" in done.stderr
    for args, env in (
        ((("--threads", 99999999999)), None),
        (("--threads", 0), None),
        ((), {"LITEMEDSAM_THREADS": "99999999999"}),
        ((), {"LITEMEDSAM_THREADS": "many"}),
    ):
        done = cli("infer", "-i", inp, "-o", tmp_path / "o2", *args, env=env, timeout=60)
        assert done.returncode == 2 and "threads" in done.stderr, (args, env, done.stderr)
        no_traceback(done)
        assert not (tmp_path / "o2" / "2DBox_CT_a.npz").exists()


# 10. an unreadable model file ------------------------------------------------------------------------

def test_an_unreadable_model_file_is_named_and_stops_the_run(models_ready, tmp_path):
    from litemedsam.models.registry import work_dir

    models = tmp_path / "models"
    models.mkdir()
    for entry in models_ready.files:
        (models / entry.file).symlink_to(work_dir() / entry.file)
    encoder = models / models_ready.encoder.file
    if os.geteuid() == 0:  # root reads any file: a file whose reading fails (EIO) instead
        encoder.unlink()
        encoder.symlink_to("/proc/self/mem")
    else:
        encoder.unlink()
        shutil.copy(work_dir() / models_ready.encoder.file, encoder)
        encoder.chmod(0)
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("2DBox_CT_a.npz", "2DBox_CT_b.npz"):
        tiny_case(inp / name)
    done = cli("infer", "-i", inp, "-o", tmp_path / "out", env={"LITEMEDSAM_WORK_DIR": str(models)})
    assert done.returncode == 2, done.stderr
    assert f"model file {encoder} cannot be read" in done.stderr and "cannot write" not in done.stderr
    no_traceback(done)


# 11-13, 15. malformed archives --------------------------------------------------------------------

def stored_case(path, members: dict):
    """An uncompressed zip (so that its bytes can be edited) of raw members."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def npy_bytes(array):
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def patch_headers(path, offset_in_local: int, offset_in_central: int, value: int):
    """Set a 2-byte field in every local file header and central directory entry."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", offset_in_local), (b"PK\x01\x02", offset_in_central)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + offset:start + offset + 2] = struct.pack("<H", value)
            start += 4
    path.write_bytes(bytes(data))


def members(boxes=BOX):
    return {"imgs.npy": npy_bytes(np.zeros((8, 8, 3), np.uint8)), "boxes.npy": npy_bytes(boxes)}


def test_a_member_that_is_not_an_array(tmp_path):
    p = stored_case(tmp_path / "2DBox_CT_x.npz", {**members(), "imgs.npy": b"just some text, no array"})
    with pytest.raises(CaseError, match="member 'imgs' is not a NumPy array"):
        load_case(p)


def test_encrypted_and_unsupported_compression(tmp_path):
    enc = stored_case(tmp_path / "2DBox_CT_enc.npz", members())
    patch_headers(enc, 6, 8, 0x1)  # general purpose flag: encrypted
    with pytest.raises(CaseError, match="encrypted"):
        load_case(enc)
    odd = stored_case(tmp_path / "2DBox_CT_odd.npz", members())
    patch_headers(odd, 8, 10, 99)  # compression method 99
    with pytest.raises(CaseError, match="compression method 99"):
        load_case(odd)


def npy_header(shape, descr="|u1"):
    """A version 1.0 .npy header declaring ``shape`` (no data after it)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def test_a_huge_declared_array_with_little_data_is_refused_before_allocating(tmp_path):
    npy = npy_header((52000000000,)) + bytes(100)
    p = stored_case(tmp_path / "2DBox_CT_huge.npz", {**members(), "imgs.npy": npy})
    tracemalloc.start()  # NumPy's array buffers are traced too: what the refusal allocated, not how long it took
    try:
        with pytest.raises(CaseError, match=r"declares 48.4 GiB .* holds only 100 bytes"):
            load_case(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


def test_random_bytes_or_a_text_file_are_not_a_valid_npz(tmp_path):
    rand = tmp_path / "2DBox_CT_rand.npz"
    rand.write_bytes(np.random.default_rng(1).bytes(4096))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    link = tmp_path / "2DBox_CT_link.npz"
    link.symlink_to(text)
    for p in (rand, link):
        with pytest.raises(CaseError) as e:
            load_case(p)
        assert "not a valid .npz file" in str(e.value) and "pickle" not in str(e.value)


def test_declared_sizes_are_limited(tmp_path, monkeypatch):
    p = tmp_path / "2DBox_CT_bomb.npz"
    np.savez_compressed(p, imgs=np.zeros((8192, 8192, 3), np.uint8), boxes=BOX)  # 192 MiB in ~200 KB
    assert p.stat().st_size < 1 << 20
    monkeypatch.setenv("LITEMEDSAM_MAX_CASE_BYTES", str(64 << 20))
    with pytest.raises(CaseError, match=r"declare 192.0 MiB .* more than the limit of 64.0 MiB"):
        load_case(p)


# 14, 17. what a folder holds -------------------------------------------------------------------------

def test_broken_links_and_loops_are_failed_cases(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "2DBox_CT_gone.npz").symlink_to(tmp_path / "nowhere.npz")
    (inp / "2DBox_CT_loop.npz").symlink_to(inp / "2DBox_CT_loop.npz")
    done = cli("infer", "-i", inp, "-o", tmp_path / "out")
    assert done.returncode == 1
    assert "ERROR 2DBox_CT_gone.npz: a broken symbolic link" in done.stderr
    assert "ERROR 2DBox_CT_loop.npz: a symbolic link loop" in done.stderr
    no_traceback(done)


def test_upper_case_suffix_is_read_and_other_entries_are_named(tmp_path):
    from litemedsam.run.folders import list_cases

    inp = tmp_path / "in"
    inp.mkdir()
    tiny_case(inp / "upper.npz")
    (inp / "upper.npz").rename(inp / "2DBox_CT_UP.NPZ")
    tiny_case(inp / ".hidden.npz")
    os.mkfifo(inp / "2DBox_CT_fifo.npz")
    (inp / "2DBox_CT_dir.npz").mkdir()
    cases, notices = list_cases(inp)
    assert [p.name for p in cases] == ["2DBox_CT_UP.NPZ"]
    assert len(notices) == 3 and any("hidden" in n for n in notices)
    assert any("FIFO" in n and "2DBox_CT_fifo.npz" in n for n in notices)
    assert any("folder" in n and "2DBox_CT_dir.npz" in n for n in notices)


# 16. absurd box coordinates ------------------------------------------------------------------------

def test_huge_box_coordinates_are_clipped_without_overflow(tmp_path):
    p = tiny_case(tmp_path / "2DBox_CT_far.npz", boxes=np.array([[0, 0, 1e300, 1e300], [-1e300, 5, -1e299, 9]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning about the cast
        case = load_case(p)
    assert case.boxes[0].tolist() == [0, 0, 47, 47] and case.skipped == [2]
    assert "[0, 0, 1e+300, 1e+300] extends beyond the image; clipped" in case.warnings[0]
    assert "lies outside the image" in case.warnings[1] and "9223372036854775808" not in " ".join(case.warnings)


# the whole probe: 120+ kinds of bad input and run conditions, run once, one test per kind -------------------

import hostile_probe  # noqa: E402  (tests/ is on the path, as for the probe's own command line)


@pytest.fixture(scope="module")
def probed(models_ready):
    hostile_probe.main([])
    return {kind.name: kind for kind in hostile_probe.FILE_KINDS + hostile_probe.RUN_KINDS}


@pytest.mark.parametrize("name", [kind.name for kind in hostile_probe.FILE_KINDS + hostile_probe.RUN_KINDS])
def test_hostile_probe_kind(probed, name):
    kind = probed[name]
    if kind.skipped:
        pytest.skip(f"{name}: {kind.skipped}")
    assert kind.ok, f"expected {kind.expect}, got {kind.code}: {kind.got} {kind.notes}"
