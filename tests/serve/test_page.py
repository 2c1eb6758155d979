"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright):
pick an image, see k neighbour tiles with labels and the verdict; a non-image shows the
service's refusal."""

from __future__ import annotations

import shutil
import signal

import pytest
from PIL import Image

from tripletlab.serve.process import start_service

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_IMAGES_SHOWN = ("[...document.querySelectorAll('[data-testid=neighbour] img')]"
                 ".every(image => image.complete && image.naturalWidth > 0)")  # fmt: skip


@pytest.fixture(scope="module")
def server(served_run):
    process, base = start_service(served_run.path, "--engine", "torch", "--max-k", "6",
                                  timeout=60)  # fmt: skip
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(60)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_searches_an_uploaded_image_and_shows_a_refusal(server, digits, tmp_path):
    from playwright.sync_api import sync_playwright

    Image.fromarray(digits[3]).save(tmp_path / "zero.png")  # a 0
    (tmp_path / "notes.png").write_text("not an image at all")
    requests = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])  # fmt: skip
        page = browser.new_page(viewport={"width": 420, "height": 900})  # a narrow window
        page.on("request", lambda r: requests.append(r.url))
        page.goto(server + "/")
        page.wait_for_function("document.getElementById('info').textContent.includes('seed_cnn')")
        page.fill("#k", "5")
        page.set_input_files("#file", str(tmp_path / "zero.png"))
        tiles = page.locator("[data-testid=neighbour]")
        tiles.nth(4).wait_for()
        assert tiles.count() == 5
        assert [tiles.nth(i).get_attribute("data-label") for i in range(5)] == ["0"] * 5
        assert "0 · " in tiles.first.inner_text()
        assert page.locator("#verdict").inner_text().startswith("Match: 0")
        page.wait_for_function(_IMAGES_SHOWN)  # each tile's gallery image came back
        page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
        page.set_input_files("#file", str(tmp_path / "notes.png"))
        error = page.locator("#error")
        error.wait_for(state="visible")
        assert "refused this image" in error.inner_text()
        assert "not an image" in error.inner_text()
        page.focus("#random")  # the keyboard reaches the controls
        page.keyboard.press("Enter")
        tiles.nth(4).wait_for()
        page.screenshot(path=str(tmp_path / "random.png"), full_page=True)
        # More neighbours than the service's --max-k: the page asks for 6 (it failed with 422).
        page.fill("#k", "9")
        page.set_input_files("#file", str(tmp_path / "zero.png"))
        tiles.nth(5).wait_for()
        assert tiles.count() == 6 and page.locator("#k").input_value() == "6"
        assert page.locator("#error").is_hidden()
        # A refused comparison shows no earlier pair beside its error.
        page.set_input_files("#first", str(tmp_path / "zero.png"))
        page.set_input_files("#second", str(tmp_path / "zero.png"))
        page.click("#compare")
        page.locator("#comparison").wait_for(state="visible")
        assert page.locator("#pair figure").count() == 2
        page.set_input_files("#second", str(tmp_path / "notes.png"))
        page.click("#compare")
        page.wait_for_function("document.getElementById('error').textContent.includes('these')")
        assert page.locator("#pair figure").count() == 0
        browser.close()
    assert (tmp_path / "search.png").stat().st_size > 1000
    assert all(url.startswith(server) or url.startswith("blob:") for url in requests)  # offline
