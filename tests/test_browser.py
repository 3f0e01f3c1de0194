"""The app in a real browser (Debian's Chromium through Playwright): upload a clip, explain it, see the overlay video
and the plots. The screenshot is kept in ``test-artifacts/`` (or $TEST_ARTIFACTS)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

import app
from tests.test_app import _example, _free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-test.txt")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="no Chromium: `bash dev.sh test` installs it with apt-get when run as root")]


@pytest.fixture(scope="module")
def url():
    demo = app.build_demo()
    port = _free_port()
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_upload_explain_and_see_the_results(url):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    hosts = set()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#explain-button", timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(_example("move_right"))
            page.get_by_text("Ground truth: move_right", exact=False).wait_for(timeout=60_000)   # auto-classified
            page.locator("#explain-button").click()
            page.wait_for_selector("#explain-overlay video", timeout=120_000)
            page.wait_for_selector("#explain-curves .js-plotly-plot", timeout=60_000)
            page.wait_for_selector("#explain-importance .js-plotly-plot", timeout=60_000)
            page.wait_for_function("() => document.querySelector('#explain-overlay video').readyState >= 2",
                                   timeout=30_000)
            video = page.locator("#explain-overlay video").evaluate(
                "v => ({error: v.error, width: v.videoWidth, height: v.videoHeight})")
            traces = page.locator("#explain-curves .js-plotly-plot .scatterlayer .trace").count()
            page.screenshot(path=str(ARTIFACTS / "app-explain.png"), full_page=True)
            # the README's picture (docs/app.png is a copy): the overlay down to the curves
            top, bottom = (page.locator(s).evaluate("e => [e.getBoundingClientRect().top + window.scrollY, "
                                                    "e.getBoundingClientRect().bottom + window.scrollY]")
                           for s in ("#explain-overlay", "#explain-curves"))
            page.screenshot(path=str(ARTIFACTS / "app-result.png"), full_page=True,
                            clip={"x": 0, "y": top[0] - 8, "width": 1400, "height": bottom[1] - top[0] + 16})
        finally:
            browser.close()
    assert video["error"] is None and video["width"] > 600 and video["height"] > 300
    assert traces == 2                                            # insertion and deletion of Grad-CAM
    assert hosts <= {"127.0.0.1"}, f"the page called {hosts - {'127.0.0.1'}}"
