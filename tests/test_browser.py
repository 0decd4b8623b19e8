"""litemedsam serve in a real browser: headless Chromium (Debian's chromium and chromium-driver, which bash test.sh
installs) loads the page from a real server process, opens a dev case, drags a box
with real mouse events, and the mask read back is infer's for that box; then a 3D case, a box dragged on its
middle slice and propagated over the box's slices. A screenshot is kept (in the test's
folder, and at $LITEMEDSAM_SCREENSHOT when set)."""
import io
from pathlib import Path
import os
import shutil
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

    flip_x, flip_y = driver.execute_script("const d = state.doc.display || {}; return [!!d.flip_x, !!d.flip_y]")

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
    from selenium.webdriver.support.ui import WebDriverWait

    ct = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw" / "example_ct_sm.nii.gz"
    if not ct.is_file():
        pytest.skip(f"{ct} is not here")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / ct.name).symlink_to(ct)
    proc, url = serve_process(tmp_path / "in", "-o", tmp_path / "segs", token=TOKEN)
    driver = browser_driver()
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(f"{url}/?token={TOKEN}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{ct.name}"]')).click()
        wait.until(lambda d: d.execute_script("return state.doc !== null && state.image !== null"))
        doc = driver.execute_script("return state.doc")
        assert doc["window"] == [40, 400] and doc["display"]["flip_x"] and doc["display"]["flip_y"]
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
        driver.get(f"{url}/?token={TOKEN}")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{ct.name}"]')).click()
        wait.until(lambda d: d.execute_script("return state.doc !== null && state.image !== null"))
        assert driver.find_element(By.ID, "unsaved").is_displayed() and np.array_equal(page_labels(), edited)
        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: "saved" in d.find_element(By.ID, "status").text)
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
        driver.get(f"{url}/?token={TOKEN}")  # the address serve prints
        for name, done_text in [(CASE, "label 1:"), (CASE_3D, "propagated over")]:
            button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{name}"]'))
            button.click()
            wait.until(lambda d: d.execute_script("return state.doc !== null && state.doc.name === arguments[0] "
                                                  "&& state.image !== null", name))
            box = np.load(folder / name)["boxes"][0].tolist()
            if len(box) == 6:  # 3D: to the box's middle slice, the range of the box, then drag on that slice
                x0, y0, z0, x1, y1, z1 = box
                driver.execute_script(f"showSlice({z0 + (z1 - z0) // 2})")
                wait.until(lambda d: d.execute_script("return state.z") == z0 + (z1 - z0) // 2)
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
