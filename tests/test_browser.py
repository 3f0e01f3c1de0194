"""The app in a real browser (Debian's Chromium through Playwright), as a new visitor meets it on a laptop
(1440×900) and on a phone (390×844): an example, Explain, the overlay and plots, the waits and the Stop button.
A screenshot per state is kept in ``test-artifacts/`` (or $TEST_ARTIFACTS)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

import app
from tests.test_app import _example, _free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
LAPTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}
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
    assert app.jobs.wait_idle(60), "a request was still in a lane a minute after the last test"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def _open(browser, url: str, viewport: dict, hosts: set, clip: str | None = None):
    """A new page with a clip loaded (an example unless ``clip``) and classified."""
    page = browser.new_page(viewport=viewport)
    page.on("request", lambda r: hosts.add(urlparse(r.url).hostname) if r.url.startswith("http") else None)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#explain-button", timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(clip or _example("move_right"))
    page.locator("#clip-notes").get_by_text("The model sees").wait_for(timeout=60_000)   # auto-classified
    return page


def _box(page, selector: str) -> dict:
    """The element's box in page coordinates (scrolling included)."""
    return page.locator(selector).evaluate("e => { const r = e.getBoundingClientRect(); return {top: r.top + "
                                           "window.scrollY, bottom: r.bottom + window.scrollY, right: r.right}; }")


BARS = "#explain-importance .barlayer .point path"
# The frame marked in the importance plot and in the strip (assets/frames.js)
MARKED = "[...document.querySelectorAll('#explain-importance .frame-marker, #clip-strip .frame-marker')]" \
         ".map(m => m.dataset.frame)"


def _click_tile(page, frame: int) -> None:
    """Click the middle of ``frame`` in the numbered strip (rows of ``analysis.STRIP_COLUMNS``, scaled to fit)."""
    img = page.locator("#clip-strip img")
    box, (width, height) = img.bounding_box(), img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    columns, gap, rows = app.analysis.STRIP_COLUMNS, app.analysis.STRIP_GAP, 4       # 16 frames
    scale = min(box["width"] / width, box["height"] / height)
    tile_w, tile_h = (width - (columns - 1) * gap) / columns, (height - (rows - 1) * gap) / rows
    row, col = divmod(frame, columns)
    page.mouse.click(box["x"] + (box["width"] - width * scale) / 2 + (col * (tile_w + gap) + tile_w / 2) * scale,
                     box["y"] + (box["height"] - height * scale) / 2 + (row * (tile_h + gap) + tile_h / 2) * scale)


def _pick(page, method: str) -> None:
    page.locator("#method input").click()
    page.get_by_role("option", name=method).first.click()


def test_a_visitor_explains_an_example_above_the_fold_and_sees_the_results(browser, url):
    hosts = set()
    page = _open(browser, url, LAPTOP, hosts)
    page.locator("#method input").click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    page.screenshot(path=str(ARTIFACTS / "1-example-loaded.png"))
    page.locator("#explain-button").click()
    page.wait_for_selector("#explain-overlay video", timeout=120_000)
    page.wait_for_selector("#explain-curves .js-plotly-plot", timeout=60_000)
    page.wait_for_selector("#explain-importance .js-plotly-plot", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#explain-overlay video').readyState >= 2", timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#explain-button').disabled", timeout=30_000)
    video = page.locator("#explain-overlay video").evaluate(
        "v => ({error: v.error, width: v.videoWidth, height: v.videoHeight})")
    traces = page.locator("#explain-curves .js-plotly-plot .scatterlayer .trace").count()
    boxes = {s: _box(page, s) for s in ("#clip", "#model", "#method", "#explain-button", "#explain-overlay")}
    curves, perturbed = _box(page, "#explain-curves"), _box(page, "#explain-perturbed")
    page.screenshot(path=str(ARTIFACTS / "2-explained.png"))
    page.screenshot(path=str(ARTIFACTS / "app-explain.png"), full_page=True)
    # the README's picture (docs/app.png is a copy): the first screen, where the visitor sees the answer
    page.screenshot(path=str(ARTIFACTS / "app-result.png"))
    page.locator("#explain-importance").scroll_into_view_if_needed()
    bar = page.locator(BARS).nth(10).bounding_box()
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)     # frame 10 of the plot
    page.wait_for_function("() => document.querySelector('#explain-overlay video').paused", timeout=5_000)
    shown = page.locator("#explain-overlay video").evaluate("v => v.currentTime") * app.analysis.VIDEO_FPS
    page.wait_for_function(f"() => {MARKED}.every(m => m === '10')", timeout=5_000)   # in the plot and the strip
    band, bar = _box(page, "#explain-importance .frame-marker"), _box(page, f"{BARS} >> nth=10")
    page.locator("#clip-strip img").scroll_into_view_if_needed()
    _click_tile(page, 6)                                          # frame 6 of the strip
    page.wait_for_function(f"() => {MARKED}.every(m => m === '6')", timeout=5_000)
    strip_frame = page.locator("#explain-overlay video").evaluate("v => v.currentTime") * app.analysis.VIDEO_FPS
    page.screenshot(path=str(ARTIFACTS / "7-linked-frames.png"))
    page.locator("#explain-gif").click()
    page.locator("#explain-files").get_by_text(".gif", exact=True).wait_for(timeout=30_000)
    assert all(re.search(r"· (under 1 s|about [\d,]+ (s|min)|too long here)$", o) for o in options), options
    assert len(options) == len(app.method_choices(app.DEFAULT_MODEL))     # those that apply to the 3-D CNN
    assert video["error"] is None and video["width"] > 400 and video["height"] > 200
    assert traces == 2                                            # insertion and deletion of Grad-CAM
    assert 10 <= shown < 11, shown                                # the overlay shows the frame clicked in the plot
    assert 6 <= strip_frame < 7, strip_frame                      # ... and the one clicked in the strip
    assert abs(band["right"] - bar["right"]) < 8                  # the band marks that bar
    assert all(b["bottom"] <= LAPTOP["height"] for b in boxes.values()), boxes      # nothing needs a scroll
    assert 0 <= perturbed["top"] - curves["bottom"] < 200 and perturbed["right"] == curves["right"]   # beside it
    assert hosts <= {"127.0.0.1"}, f"the page called {hosts - {'127.0.0.1'}}"


def test_a_long_run_shows_its_wait_at_the_button_which_waits_and_stop_says_how_far_it_got(browser, url):
    page = _open(browser, url, LAPTOP, set())
    _pick(page, "3-D occlusion")
    page.get_by_label("paper", exact=True).check()                 # 846 windows: long enough to stop
    page.wait_for_function("() => document.querySelector('#explain-cost').innerText.includes('906 forward')")
    page.locator("#explain-button").click()
    page.locator("#explain-summary").get_by_text(re.compile(r"Explaining: .*left")).wait_for(timeout=5_000)
    assert page.locator("#explain-button").is_disabled()
    summary, button = _box(page, "#explain-summary"), _box(page, "#explain-button")
    page.screenshot(path=str(ARTIFACTS / "3-running.png"))
    page.locator("#explain-stop").click()
    page.locator("#explain-summary").get_by_text("Stopped explaining").wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "4-stopped.png"))
    assert summary["top"] - button["bottom"] < 40, "the progress sits right under the button"
    assert page.locator("#explain-button").is_enabled()
    assert re.search(r"Stopped explaining \(.*\d+% done after \d+ s\)\. Nothing was changed\.",
                     page.locator("#explain-summary").inner_text())


def test_a_real_clip_on_a_synthetic_model_gets_a_notice_and_unloadable_models_are_marked(browser, url):
    page = _open(browser, url, LAPTOP, set(), clip=str(next((app.EXAMPLES_DIR / "real").glob("*.mp4"))))
    notes = page.locator("#clip-notes").inner_text()
    page.locator("#model input").click()
    models = page.get_by_role("option").all_inner_texts()
    page.screenshot(path=str(ARTIFACTS / "6-real-clip.png"))
    assert notes.startswith("⚠️ Outside what this model knows.") and "squeezed" in notes
    embedded = sum(app.load_card(c).kind == "embedded" for c in app.jobs.SELECTABLE)
    assert sum(m.endswith("· not available here") for m in models) == len(app.jobs.SELECTABLE) - embedded  # offline


def test_on_a_phone_the_page_is_one_column_in_reading_order_without_sideways_scrolling(browser, url):
    page = _open(browser, url, PHONE, set())
    page.locator("#explain-button").click()
    page.wait_for_selector("#explain-curves .js-plotly-plot", timeout=120_000)
    tops = [_box(page, s)["top"] for s in ("#clip", "#model", "#method", "#explain-button", "#explain-overlay",
                                           "#explain-importance", "#explain-curves")]
    page.screenshot(path=str(ARTIFACTS / "5-phone.png"), full_page=True)
    assert tops == sorted(tops), tops                             # one column, in this order; the plots stacked
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
