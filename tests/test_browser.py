"""litemedsam serve in a real browser: headless Chromium (Debian's chromium and chromium-driver, installed here when
absent and this runs as root with apt) loads the page from a real server process, opens a dev case, drags a box
with real mouse events, and the mask read back is infer's for that box. A screenshot is kept (in the test's
folder, and at $LITEMEDSAM_SCREENSHOT when set)."""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from tests.test_infer_real import REPO, cli, link_cases

pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (litemedsam[serve])")

CASE = "2DBox_Endoscopy_Kvasir_cju0qkwl35piu0993l0dewei2.npz"


def chromium() -> tuple:
    """(browser, driver) paths; installs Debian's packages when missing and possible, else skips saying why."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get") or os.environ.get("LITEMEDSAM_NO_INSTALL") == "1":
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
    if subprocess.run(install, capture_output=True, env=env).returncode:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
        if done.returncode:
            pytest.skip(f"cannot install Chromium: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def server(dev_data, models_ready, tmp_path):
    folder = link_cases(dev_data, [CASE], tmp_path / "in")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "litemedsam", "serve", str(folder), "-o", str(tmp_path / "segs"),
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/api/cases", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        yield url, folder
    finally:
        proc.terminate()
        proc.wait(10)


def test_page_segments_a_dragged_box(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
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
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'button.case[data-name="{CASE}"]'))
        button.click()
        wait.until(lambda d: d.execute_script("return state.doc !== null && state.image !== null"))
        canvas = driver.find_element(By.ID, "view")
        width, height = driver.execute_script("return [arguments[0].width, arguments[0].height]", canvas)
        rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]",
                                     canvas)
        x0, y0, x1, y1 = np.load(folder / CASE)["boxes"][0].tolist()

        def offset(x, y):  # image pixel -> offset from the canvas centre in CSS pixels (selenium 4)
            return (int(round((x + 0.5) * rect[0] / width - rect[0] / 2)),
                    int(round((y + 0.5) * rect[1] / height - rect[1] / 2)))
        (ax, ay), (bx, by) = offset(x0, y0), offset(x1, y1)
        actions = ActionChains(driver)
        actions.move_to_element_with_offset(canvas, ax, ay).click_and_hold()
        for step in range(1, 6):
            actions.move_by_offset((bx - ax) // 5, (by - ay) // 5)
        actions.move_to_element_with_offset(canvas, bx, by).release().perform()
        status = lambda d: d.find_element(By.ID, "status").text  # noqa: E731
        try:
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#objects .object") and "label 1" in status(d))
        except Exception:
            driver.save_screenshot(str(tmp_path / "failed.png"))
            raise AssertionError(f"no object after the drag; the page says {status(driver)!r}") from None
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("LITEMEDSAM_SCREENSHOT"):
            shutil.copy(shot, os.environ["LITEMEDSAM_SCREENSHOT"])
        doc = driver.execute_script("return state.doc.id")
        sent = driver.execute_script("return state.objects")
    finally:
        driver.quit()
    assert shot.stat().st_size > 10000 and [o["label"] for o in sent] == [1]
    got = np.load(io.BytesIO(urllib.request.urlopen(f"{url}/api/doc/{doc}/labels.npy").read()))
    done = cli("infer", "-i", folder / CASE, "-o", tmp_path / "infer")
    assert done.returncode == 0, done.stderr
    expected = np.load(tmp_path / "infer" / CASE)["segs"]
    # the dragged box is the case's box to within a pixel of rounding: the mask is infer's, or all but its rim
    inter = np.logical_and(got == 1, expected == 1).sum()
    assert inter / np.logical_or(got == 1, expected == 1).sum() > 0.97, json.dumps(sent)
