"""litemedsam serve in a real browser: headless Chromium (Debian's chromium and chromium-driver, which bash test.sh
installs) loads the page from a real server process, opens a dev case, drags a box
with real mouse events, and the mask read back is infer's for that box; then a 3D case, a box dragged on its
middle slice and propagated over the box's slices. A screenshot is kept (in the test's
folder, and at $LITEMEDSAM_SCREENSHOT when set)."""
import io
from pathlib import Path
import os
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.test_infer_real import cli, link_cases
from tests.test_serve import serve_process

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (litemedsam[serve])")

CASE = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"
CASE_3D = "3DBox_MR_pyradiomics_brain1.npz"
TOKEN = "browser-test-token-0123456789"  # given to the server as $LITEMEDSAM_SERVE_TOKEN
TOKEN_HEADER = {"X-Litemedsam-Token": TOKEN}


def chromium() -> tuple:
    """(browser, driver) paths; bash test.sh installs them (scripts/system.sh); a failure where CI asks for
    the browser tests (LITEMEDSAM_BROWSER_TESTS=1), else a skip saying why."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    why = "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver, or bash test.sh)"
    if os.environ.get("LITEMEDSAM_BROWSER_TESTS") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def server(dev_data, models_ready, tmp_path):
    folder = link_cases(dev_data, [CASE, CASE_3D], tmp_path / "in")
    proc, url = serve_process(folder, "-o", tmp_path / "segs", token=TOKEN)
    try:
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(10)


def drag_box(driver, box) -> None:
    """Drag from one corner of ``box`` (image pixels x0, y0, x1, y1) to the other with real mouse events."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "view")
    width, height, css_w, css_h = driver.execute_script(
        "const c = arguments[0], r = c.getBoundingClientRect(); return [c.width, c.height, r.width, r.height]", canvas)

    flip_x, flip_y = driver.execute_script("const d = planeView(); return [!!d.flip_x, !!d.flip_y]")

    def offset(x, y):  # image pixel -> offset from the canvas centre in CSS pixels (selenium 4), as displayed
        x, y = (width - 1 - x if flip_x else x), (height - 1 - y if flip_y else y)
        return (int(round((x + 0.5) * css_w / width - css_w / 2)), int(round((y + 0.5) * css_h / height - css_h / 2)))
    (ax, ay), (bx, by) = offset(*box[:2]), offset(*box[2:])
    actions = ActionChains(driver).move_to_element_with_offset(canvas, ax, ay).click_and_hold()
    for _ in range(5):
        actions.move_by_offset((bx - ax) // 5, (by - ay) // 5)
    actions.move_to_element_with_offset(canvas, bx, by).release().perform()


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return np.logical_and(a, b).sum() / max(1, np.logical_or(a, b).sum())


def browser_driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                 "--disable-gpu", "--no-first-run"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def raw_ct() -> Path:
    """The raw CT NIfTI of ../shared/data/raw (a skip where it is not)."""
    from conftest import shared

    return shared("raw/example_ct_sm.nii.gz")


def serve_dev(dev_data: Path, names: list, tmp_path: Path):
    """(folder, process, address) of a real server of a folder of links to dev cases."""
    folder = link_cases(dev_data, names, tmp_path / "in")
    return (folder, *serve_process(folder, "-o", tmp_path / "segs", token=TOKEN))


def serve_file(path: Path, tmp_path: Path):
    """(process, address) of a real server of a folder holding a link to ``path``."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / path.name).symlink_to(path)
    return serve_process(tmp_path / "in", "-o", tmp_path / "segs", token=TOKEN)


def open_in_page(driver, url: str, name: str):
    """Load the page, open case ``name`` and wait for its image; returns the wait."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    driver.get(f"{url}/#token={TOKEN}")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{name}"]')).click()
    wait.until(lambda d: d.execute_script("return state.doc !== null && state.doc.name === arguments[0] "
                                          "&& state.image !== null", name))
    return wait


def nib_zooms(path):
    import nibabel as nib

    return nib.load(str(path)).header.get_zooms()[:3]


def test_a_ct_nifti_shows_radiologically_and_a_box_lands_where_drawn(models_ready, tmp_path):
    """Issue 26, bug 8: a CT NIfTI whose name says nothing opens windowed as CT (its Hounsfield units) and shown
    as radiologists read it (the patient's right on the left, the front at the top: flipped from voxel order, with
    the sides' letters); a box dragged on the flipped view segments the voxels under it; the brush fixes it, undo
    and redo, a box propagated; the server restarts and the page opens the case with every edit, Save writes them
    in the input's geometry."""
    from selenium.webdriver.common.by import By

    ct = raw_ct()
    proc, url = serve_file(ct, tmp_path)
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, ct.name)
        doc = driver.execute_script("return state.doc")
        assert doc["window"] == [40, 400] and doc["display"]["z"]["flip_x"] and doc["display"]["z"]["flip_y"]
        assert [driver.find_element(By.ID, f"side-{s}").text for s in ("top", "bottom", "left", "right")] == \
            ["A", "P", "R", "L"]
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.ID, "mw-preset")).select_by_value("-600,1500")  # the lung preset
        wait.until(lambda d: d.execute_script("return state.doc.window") == [-600, 1500])
        Select(driver.find_element(By.ID, "mw-preset")).select_by_value("40,400")  # back to soft tissue
        wait.until(lambda d: d.execute_script("return state.doc.window") == [40, 400])
        driver.find_element(By.ID, "propagate").click()  # this slice only
        z, (h, w) = doc["depth"] // 2, (doc["height"], doc["width"])
        box = [w // 4, h // 4, w // 2, h // 2]  # image pixels: on screen in the lower right quarter
        drag_box(driver, box)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#objects .object"))
        got = np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/doc/{doc['id']}/labels.npy", headers=TOKEN_HEADER)).read()))[z]
        mm3 = float(np.prod(nib_zooms(ct)))
        assert driver.execute_script("return state.objects[0].ml") == round(got.sum() * mm3 / 1000, 3)  # mL shown
        ys, xs = np.nonzero(got)
        assert len(xs) and box[0] - 2 <= xs.min() and xs.max() <= box[2] + 2 and box[1] - 2 <= ys.min() \
            and ys.max() <= box[3] + 2, (xs.min(), xs.max(), ys.min(), ys.max())
        # the brush (key B) on the flipped view: the selected object grows where it is painted, on this slice
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(driver).send_keys("b").perform()
        assert driver.execute_script("return tool()") == "brush"
        driver.find_element(By.CSS_SELECTOR, "#objects .object").click()  # select label 1: the brush paints it
        before = got.sum()
        drag_box(driver, [w // 4 - 12, h // 4 - 12, w // 4 - 6, h // 4 - 6])  # a short stroke above-left of the box
        wait.until(lambda d: "painted" in d.find_element(By.ID, "status").text)
        painted = np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/doc/{doc['id']}/labels.npy", headers=TOKEN_HEADER)).read()))
        assert painted[z].sum() > before and painted[z, h // 4 - 9, w // 4 - 9] == 1 and not painted[z - 1].any()
        driver.save_screenshot(str(tmp_path / "ct.png"))

        def page_labels():
            return np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
                f"{url}/api/doc/{driver.execute_script('return state.doc.id')}/labels.npy",
                headers=TOKEN_HEADER)).read()))

        driver.find_element(By.ID, "undo").click()  # the brush stroke taken back, then made again
        wait.until(lambda d: "undo done" in d.find_element(By.ID, "status").text)
        assert page_labels()[z, h // 4 - 9, w // 4 - 9] == 0
        driver.find_element(By.ID, "redo").click()
        wait.until(lambda d: "redo done" in d.find_element(By.ID, "status").text)
        assert page_labels()[z, h // 4 - 9, w // 4 - 9] == 1
        # a second object by a box propagated over five slices
        ActionChains(driver).send_keys("x").send_keys(Keys.ESCAPE).perform()
        driver.find_element(By.ID, "propagate").click()
        for field, value in (("z0", z - 2), ("z1", z + 2)):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(str(value))
        drag_box(driver, [w // 2 + 5, h // 2 + 5, w // 2 + 30, h // 2 + 30])
        wait.until(lambda d: "propagated over" in d.find_element(By.ID, "status").text)
        edited = page_labels()
        assert {int(v) for v in np.unique(edited[z - 2:z + 3])} >= {0, 2} and not (edited[:z - 2] == 2).any()
        # the server restarts: the page opens the case again with every edit, unsaved; Save writes them
        proc.terminate()
        proc.wait(10)
        proc, url = serve_process(tmp_path / "in", "-o", tmp_path / "segs", token=TOKEN)
        driver.get(f"{url}/#token={TOKEN}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{ct.name}"]')).click()
        wait.until(lambda d: d.execute_script("return state.doc !== null && state.image !== null"))
        assert driver.find_element(By.ID, "unsaved").is_displayed() and np.array_equal(page_labels(), edited)
        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("saved "))
        assert not driver.find_element(By.ID, "unsaved").is_displayed()
        import nibabel as nib

        saved, source = nib.load(str(tmp_path / "segs" / ct.name)), nib.load(str(ct))
        assert np.allclose(saved.affine, source.affine) and saved.shape == source.shape  # the input's geometry
        assert np.array_equal(np.asarray(saved.dataobj).transpose(2, 1, 0), edited)  # the page's labels
        driver.save_screenshot(str(tmp_path / "ct-saved.png"))
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def test_page_segments_dragged_boxes_2d_and_3d(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    url, folder = server
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,800",
                 "--disable-gpu", "--no-first-run"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    status = lambda d: d.find_element(By.ID, "status").text  # noqa: E731
    docs = {}
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{url}/#token={TOKEN}")  # the address serve prints
        for name, done_text in [(CASE, "label 1:"), (CASE_3D, "propagated over")]:
            button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{name}"]'))
            button.click()
            wait.until(lambda d: d.execute_script("return state.doc !== null && state.doc.name === arguments[0] "
                                                  "&& state.image !== null", name))
            box = np.load(folder / name)["boxes"][0].tolist()
            if len(box) == 6:  # 3D: to the box's middle slice, the range of the box, then drag on that slice
                x0, y0, z0, x1, y1, z1 = box
                driver.execute_script(f"showSlice({z0 + (z1 - z0) // 2})")
                wait.until(lambda d: d.execute_script("return state.at.z") == z0 + (z1 - z0) // 2)
                for field, value in (("z0", 0), ("z1", 0)):  # a range without the slice: said, never stretched
                    driver.find_element(By.ID, field).clear()
                    driver.find_element(By.ID, field).send_keys(str(value))
                drag_box(driver, [x0, y0, x1, y1])
                wait.until(lambda d: "is outside the range 0–0" in status(d))
                assert not driver.find_elements(By.CSS_SELECTOR, "#objects .object")
                assert [driver.find_element(By.ID, f).get_attribute("value") for f in ("z0", "z1")] == ["0", "0"]
                for field, value in (("z0", z0), ("z1", z1)):
                    driver.find_element(By.ID, field).clear()
                    driver.find_element(By.ID, field).send_keys(str(value))
                box = [x0, y0, x1, y1]
            drag_box(driver, box)
            try:
                wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#objects .object") and done_text in status(d))
            except Exception:
                driver.save_screenshot(str(tmp_path / "failed.png"))
                raise AssertionError(f"{name}: no object after the drag; the page says {status(driver)!r}") from None
            shot = tmp_path / f"{name}.png"
            driver.save_screenshot(str(shot))
            assert shot.stat().st_size > 10000
            docs[name] = driver.execute_script("return state.doc.id")
            assert [o["label"] for o in driver.execute_script("return state.objects")] == [1]
            assert driver.find_element(By.ID, "unsaved").is_displayed()  # edits kept on the server, not saved yet
        if os.environ.get("LITEMEDSAM_SCREENSHOT"):
            shutil.copy(shot, os.environ["LITEMEDSAM_SCREENSHOT"])
    finally:
        driver.quit()
    for name, doc in docs.items():
        got = np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/doc/{doc}/labels.npy", headers=TOKEN_HEADER)).read()))
        done = cli("infer", "-i", folder / name, "-o", tmp_path / "infer")
        assert done.returncode == 0, done.stderr
        expected = np.load(tmp_path / "infer" / name)["segs"]
        # the dragged box is the case's to within a pixel of rounding: the mask is infer's, or all but its rim
        assert got.shape == expected.shape and overlap(got == 1, expected == 1) > 0.95, (name, overlap(got, expected))


def test_a_ct_in_three_planes_with_hu_under_the_cursor_zoom_and_a_coronal_box(models_ready, tmp_path):
    """Issue 26: the CT NIfTI shows its axial slice large and its coronal and sagittal cuts beside it (named from
    the file's orientation, head at the top); one click shows the coronal cut large, a box dragged on it segments
    that cut (the liver, against the file's own labels) and nothing else; the value under the mouse is the file's,
    in HU; zooming enlarges the image and a box still lands under the mouse. Screenshots at 1024x700 and 1400x900
    and of the coronal box (kept in the test's folder, and in $LITEMEDSAM_SCREENSHOTS when set: the README's are
    made with LITEMEDSAM_SCREENSHOTS=docs)."""
    import nibabel as nib
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ct = raw_ct()
    truth = np.asarray(nib.load(str(ct.parent / "example_seg.nii.gz")).dataobj).transpose(2, 1, 0)  # (z, y, x)
    hu = np.asarray(nib.load(str(ct)).dataobj).transpose(2, 1, 0)
    liver = truth == 5
    y = int(np.argmax(liver.sum(axis=(0, 2))))  # the coronal cut with the most liver
    zs, xs = np.nonzero(liver[:, y, :])
    proc, url = serve_file(ct, tmp_path)
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, ct.name)
        wait.until(lambda d: d.find_element(By.ID, "other-1-name").text)
        assert [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#planes button")] == [
            "axial",
            "coronal",
            "sagittal",
        ]
        assert driver.find_element(By.ID, "other-0-name").text.startswith("coronal")
        for width, height in ((1024, 700), (1400, 900)):  # the three views and the toolbar in sight at both sizes
            driver.set_window_size(width, height)
            wait.until(lambda d: d.execute_script("return innerWidth") <= width)
            shot = tmp_path / f"serve-{width}x{height}.png"
            driver.save_screenshot(str(shot))
            for id_ in ("save", "undo", "view", "other-0", "other-1"):
                assert driver.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                             "return r.width > 0 && r.right <= innerWidth && r.top < innerHeight",
                                             driver.find_element(By.ID, id_)), (id_, width)
            if os.environ.get("LITEMEDSAM_SCREENSHOTS"):
                shutil.copy(shot, Path(os.environ["LITEMEDSAM_SCREENSHOTS"]) / shot.name)
        # the value under the mouse: the file's own, in HU (the page shows the voxel and its value)
        z = driver.execute_script("return state.at.z")
        canvas = driver.find_element(By.ID, "view")
        ActionChains(driver).move_to_element(canvas).perform()
        wait.until(lambda d: "HU" in d.find_element(By.ID, "cursor").text)
        text = driver.find_element(By.ID, "cursor").text
        vx, vy, vz = (int(text.split(f"{k} ")[1].split(",")[0].split(":")[0]) for k in "xyz")
        assert vz == z and text.endswith(f": {int(hu[vz, vy, vx])} HU"), text
        # the coronal cut shown large: one click on it; a box on it segments that cut only
        driver.execute_script("state.at.y = arguments[0]", y)
        driver.find_element(By.ID, "other-0").click()
        wait.until(lambda d: d.execute_script("return state.plane === 'y' && view.height === state.doc.depth"))
        wait.until(lambda d: d.find_element(By.ID, "side-top").text == "S")
        wide = driver.execute_script("return view.getBoundingClientRect().width")
        driver.find_element(By.ID, "zoom-in").click()  # zoomed: the box is still drawn where the mouse is
        assert driver.execute_script("return view.getBoundingClientRect().width") > 1.2 * wide
        drag_box(driver, [int(xs.min()), int(zs.min()), int(xs.max()), int(zs.max())])
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#objects .object"))
        got = np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
            f"{url}/api/doc/{driver.execute_script('return state.doc.id')}/labels.npy", headers=TOKEN_HEADER)).read()))
        assert got.any() and not np.delete(got, y, axis=1).any()  # that cut alone
        dice = 2 * (got[:, y] & liver[:, y]).sum() / (got[:, y].astype(bool).sum() + liver[:, y].sum())
        assert dice > 0.8, dice
        driver.save_screenshot(str(tmp_path / "serve-ct.png"))
        if os.environ.get("LITEMEDSAM_SCREENSHOTS"):
            shutil.copy(tmp_path / "serve-ct.png", Path(os.environ["LITEMEDSAM_SCREENSHOTS"]) / "serve-ct.png")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def test_late_slices_are_dropped_and_a_gone_server_is_said(dev_data, models_ready, tmp_path):
    """Issue 26, bugs 6 and 7: the image of a slice asked for before another arrives after it (held back in the
    page's loader, released by the test): the page keeps showing the slice now wanted, and its number. Then the
    server stops: the next slice asked for says that the server does not answer, in red."""
    from selenium.webdriver.common.by import By

    folder, proc, url = serve_dev(dev_data, [CASE_3D], tmp_path)
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, CASE_3D)
        # slice 5's image held back until the test lets it go; slice 6 asked for meanwhile, and shown
        driver.execute_script("""
            const load = loadImage;
            window.held = null;
            loadImage = (url) => url.includes("/image/5?") && !url.includes("plane=")
              ? new Promise((resolve) => { window.held = () => resolve(load(url)); }) : load(url);
            window.five = showSlice(5);""")
        wait.until(lambda d: d.execute_script("return window.held !== null"))
        shown = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            showSlice(6).then(() => { window.six = state.image; done(state.at.z); });""")
        assert shown == 6
        late = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            window.held();
            window.five.then(() => done([state.image === window.six, state.at.z, $("slice").value]));""")
        assert late == [True, 6, "6"], late  # slice 5's late image did not replace slice 6's
        proc.terminate()  # the server gone: the next slice says so
        proc.wait(10)
        driver.execute_script("showSlice(7)")
        wait.until(lambda d: "still running" in d.find_element(By.ID, "status").text)
        assert driver.find_element(By.ID, "status").get_attribute("class") == "error"
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def test_a_click_on_the_page_changes_the_mask_as_infer_with_that_click(dev_data, models_ready, tmp_path):
    """Issue 27, item 4: after a box, the click tool (key C) on the page: a left click where the object is missing
    (or a right click where it is not), at the pixel the 2025 protocol would click; the page's labels equal
    infer's for the case with that click and the labels before it as its previous prediction."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from evaluation.interactive import next_click, write_case

    folder, proc, url = serve_dev(dev_data, [CASE], tmp_path)
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, CASE)
        case, gts = np.load(folder / CASE), np.load(dev_data / "gts" / CASE)["gts"]
        drag_box(driver, case["boxes"][0].tolist())
        wait.until(lambda d: "label 1:" in d.find_element(By.ID, "status").text)

        def page_labels():
            return np.load(io.BytesIO(urllib.request.urlopen(urllib.request.Request(
                f"{url}/api/doc/{driver.execute_script('return state.doc.id')}/labels.npy",
                headers=TOKEN_HEADER)).read()))
        before = page_labels()
        kind, (y, x) = next_click(before, gts, 1)
        driver.find_element(By.CSS_SELECTOR, "#objects .object").click()  # the object clicked on
        ActionChains(driver).send_keys("c").perform()
        assert driver.execute_script("return tool()") == "click"
        canvas = driver.find_element(By.ID, "view")
        width, height, css_w, css_h = driver.execute_script(
            "const c = arguments[0], r = c.getBoundingClientRect(); return [c.width, c.height, r.width, r.height]",
            canvas,
        )
        at = ActionChains(driver).move_to_element_with_offset(
            canvas,
            int(round((x + 0.5) * css_w / width - css_w / 2)),
            int(round((y + 0.5) * css_h / height - css_h / 2)),
        )
        (at.click() if kind == "fg" else at.context_click()).perform()
        wait.until(lambda d: "here" in d.find_element(By.ID, "status").text)
        after = page_labels()
        assert (after[y, x] == 1) == (kind == "fg") and not np.array_equal(after, before)
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)
    clicked = tmp_path / "clicked"
    clicked.mkdir()
    write_case(clicked / CASE, case["imgs"], np.ones(3), case["boxes"], [{"fg": [[0, y, x]] if kind == "fg" else [],
               "bg": [[0, y, x]] if kind == "bg" else []}], [[kind]], before)
    done = cli("infer", "-i", clicked, "-o", tmp_path / "infer")
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(tmp_path / "infer" / CASE)["segs"], after)


def test_a_propagation_belongs_to_its_case(dev_data, models_ready, tmp_path):
    """Issue 26, bug 4: a box propagated on a volume, and another case opened while its job runs (the page's
    polling of the job held back by the test): a box on the case opened now is segmented at once, and when the
    old job's answer arrives it does not go into the new case's object list."""
    from selenium.webdriver.common.by import By

    folder, proc, url = serve_dev(dev_data, [CASE, CASE_3D], tmp_path)
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, CASE_3D)
        driver.execute_script("""
            const call = api;
            window.held = [];
            api = (method, url, body) => url.endsWith("/job")
              ? new Promise((resolve) => window.held.push(() => { const answer = call(method, url, body);
                                                                   resolve(answer); return answer; }))
              : call(method, url, body);""")
        x0, y0, z0, x1, y1, z1 = np.load(folder / CASE_3D)["boxes"][0].tolist()
        driver.execute_script(f"showSlice({(z0 + z1) // 2})")
        wait.until(lambda d: d.execute_script("return state.at.z") == (z0 + z1) // 2)
        for field, value in (("z0", z0), ("z1", z1)):
            driver.find_element(By.ID, field).clear()
            driver.find_element(By.ID, field).send_keys(str(value))
        drag_box(driver, [x0, y0, x1, y1])
        wait.until(lambda d: d.execute_script("return window.held.length") > 0)  # the job runs, its page waits
        driver.find_element(By.CSS_SELECTOR, f'button.case[data-name="{CASE}"]').click()
        wait.until(lambda d: d.execute_script("return state.doc.name === arguments[0] && state.image !== null", CASE))
        drag_box(driver, np.load(folder / CASE)["boxes"][0].tolist())
        wait.until(lambda d: "label 1:" in d.find_element(By.ID, "status").text)  # not blocked by the volume's job
        mine = driver.execute_script("return state.objects")
        driver.execute_async_script("""  // the old job's answer arrives, and the page has done with it
            const done = arguments[arguments.length - 1];
            const later = () => setTimeout(done, 50);
            Promise.all(window.held.map((release) => release())).then(later, later);""")
        assert (
            driver.execute_script("return state.doc.name") == CASE
            and driver.execute_script("return state.objects") == mine
        )
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)


def test_the_token_never_reaches_another_local_port(server, tmp_path):
    """Issue 34, T07: the page kept the token in a cookie, and a browser sends a host's cookies to every port of
    it: any other local program the browser visited (here a recorder on another port of 127.0.0.1) received the
    token, and with it the API. Now the page takes it from the address's fragment, keeps it in the tab's
    sessionStorage (this origin's) and sends it as a header: the other port gets nothing, and the page still works
    when the tab comes back without the token in its address."""
    import http.server
    import threading

    from selenium.webdriver.common.by import By

    url, _ = server
    seen = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>another local program</body></html>")

        def log_message(self, *args):
            pass

    recorder = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    driver = browser_driver()
    try:
        wait = open_in_page(driver, url, CASE)
        assert TOKEN not in driver.current_url  # it left the address bar
        driver.get(f"http://127.0.0.1:{recorder.server_address[1]}/")
        wait.until(lambda d: "another local program" in d.page_source)
        assert seen and not [h for h in seen if any(TOKEN in v for v in h.values())], seen
        for headers in seen:  # whatever the other port received opens nothing
            given = {k: v for k, v in headers.items() if k.lower() == "cookie"}
            with pytest.raises(urllib.error.HTTPError, match="403"):
                urllib.request.urlopen(urllib.request.Request(url + "/api/cases", headers=given), timeout=10)
        driver.get(url + "/")  # back, without the token in the address: the tab still has it
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{CASE}"]'))
    finally:
        driver.quit()
        recorder.shutdown()
