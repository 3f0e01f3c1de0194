"""A new visitor's first results: how long after a click the overlay, then the metrics and curves, appear.

Starts the app in this process on 127.0.0.1, with the server's process settings (``app.configure_server``) and no
torch op in its main thread, and drives it in headless Chromium (Debian's, through Playwright) at 1440×900: an
example is loaded, then for each method *Explain* is clicked ``--repeats`` times, its answer forgotten before each
click so that the model runs (the ``random`` map it is judged against is the example's, kept from the
start, as for any visitor). Reported per method, median of the repeats:

* handler: from the handler's start (the request has reached the server) to its first result (overlay and
  per-frame importance made) and to its last (metrics, curves, table, downloads), timed by calling the handler
  with the page blank (no overlay playing on the server's cores);
* browser: from the click to the overlay video ready to play, and to the insertion/deletion plot drawn;
* the bundled example answered from memory (the default method, answers computed at start), click to overlay;
* a long run (3-D occlusion, paper preset), click to its progress shown under the button (then stopped).

    python -m benchmarks.first_minute [--threads 2] [--repeats 5] [--methods grad_cam gradient ...]
"""
from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import time

METHODS = ("grad_cam", "gradient", "grad_cam_pp", "saliency_tubes")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OVERLAY_READY = "() => { const v = document.querySelector('#explain-overlay video'); return v && v.readyState >= 2; }"
CURVES_DRAWN = "() => document.querySelector('#explain-curves .js-plotly-plot') !== null"
REQUEST_DONE = "() => !document.querySelector('#explain-button').disabled"
PROGRESS_SHOWN = "() => document.querySelector('#explain-summary').innerText.includes('Explaining')"


def forget(app, clip, method: str) -> None:
    """Forget the kept answer to ``method`` (its default preset, top-1 class, seed 0) on ``clip``."""
    preset = app.default_preset(method)
    app.ANSWERS.forget(app.request_key(clip, [app.jobs.Job(method, None if preset == "default" else preset, {})],
                                       None, 0))


def handler_seconds(app, clip, example: str, method: str) -> tuple[float, float]:
    """Seconds from the handler's start to its first result and to its last (its answer forgotten)."""
    forget(app, clip, method)
    time.sleep(1)                                                  # the browser has drawn the last results
    start, first = time.perf_counter(), None
    for item in app.jobs.off_main(app.explain_clip)(example, app.DEFAULT_MODEL, None, None, method,
                                                    app.default_preset(method), app.TOP1, 0, None,
                                                    progress=lambda *a, **k: None):    # as the server runs it
        if item is not app.SKIP and first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start


def fresh_page(page, url: str, example: str, method: str, name: str) -> None:
    """The page as a new visitor gets it, with the example loaded and classified and ``method`` picked."""
    page.goto(url, wait_until="load")
    page.wait_for_selector("#explain-button", timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(example)
    page.locator("#clip-notes").get_by_text("The model sees").wait_for(timeout=60_000)
    page.locator("#method input").click()
    page.get_by_role("option", name=name).first.click()
    page.wait_for_function("() => document.querySelector('#explain-cost').innerText.length > 0")
    time.sleep(0.5)                                                  # the page settles (no pending events)


def click_to_results(page) -> tuple[float, float]:
    """Seconds from a click on Explain to the overlay ready to play and to the curves drawn."""
    start = time.perf_counter()
    page.locator("#explain-button").click()
    page.wait_for_function(OVERLAY_READY, timeout=120_000, polling=10)
    overlay = time.perf_counter() - start
    page.wait_for_function(CURVES_DRAWN, timeout=120_000, polling=10)
    curves = time.perf_counter() - start
    page.wait_for_function(REQUEST_DONE, timeout=120_000)          # the verdict against random too: nothing left
    return overlay, curves


def click_to_progress(page) -> float:
    """Seconds from a click on Explain (3-D occlusion at its paper preset: minutes of work) to its progress shown
    under the button; the run is stopped after."""
    page.get_by_label("paper", exact=True).check()
    page.wait_for_function("() => document.querySelector('#explain-cost').innerText.includes('906 forward')")
    start = time.perf_counter()
    page.locator("#explain-button").click()
    page.wait_for_function(PROGRESS_SHOWN, timeout=30_000, polling=10)
    shown = time.perf_counter() - start
    page.locator("#explain-stop").click()
    page.wait_for_function(REQUEST_DONE, timeout=30_000)
    return shown


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    import app

    app.configure_server(args.threads)                             # as app.main

    example = sorted(str(p) for p in app.EXAMPLES_DIR.glob("*.mp4"))[0]
    app.jobs.in_own_thread(app.answer_examples)                    # as at start, off ZeroGPU
    demo = app.jobs.in_own_thread(app.build_demo)                 # as app.main builds it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True)
    rows, report = [], {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                        "--disable-gpu"])
            page, url = browser.new_page(viewport={"width": 1440, "height": 900}), f"http://127.0.0.1:{port}/"
            cached = []
            for _ in range(args.repeats):                          # the example is answered from memory
                fresh_page(page, url, example, app.DEFAULT_METHOD, app.REGISTRY[app.DEFAULT_METHOD].name)
                cached.append(click_to_results(page)[0])
            report["cached example, overlay"] = statistics.median(cached)
            progress = []
            for _ in range(args.repeats):                          # a long run's progress at the button
                fresh_page(page, url, example, "occlusion", app.REGISTRY["occlusion"].name)
                progress.append(click_to_progress(page))
            report["click to progress"] = statistics.median(progress)
            clip = app.jobs.in_own_thread(app.load_clip, example, app.DEFAULT_MODEL)   # torch: not in this thread
            for method in args.methods:
                handler, browser_s = [], []
                for _ in range(args.repeats):
                    page.goto("about:blank")                       # no overlay looping on the server's cores
                    handler.append(handler_seconds(app, clip, example, method))
                    fresh_page(page, url, example, method, app.REGISTRY[method].name)
                    forget(app, clip, method)
                    browser_s.append(click_to_results(page))
                med = lambda values, i: statistics.median(v[i] for v in values)
                report[method] = {"handler overlay": med(handler, 0), "handler whole": med(handler, 1),
                                  "browser overlay": med(browser_s, 0), "browser curves": med(browser_s, 1)}
                rows.append(f"| {method} | {med(handler, 0):.2f} s | {med(handler, 1):.2f} s | "
                            f"{med(browser_s, 0):.2f} s | {med(browser_s, 1):.2f} s |")
            browser.close()
    finally:
        app.jobs.wait_idle(60)                            # a request the server is still finishing
        demo.close()
    print("| method | handler: overlay | handler: whole answer | browser: click to overlay | "
          "browser: click to curves |\n|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nA bundled example answered from memory ({app.DEFAULT_METHOD}): click to overlay "
          f"{report['cached example, overlay']:.2f} s (median of {args.repeats}). A long run (occlusion, paper): "
          f"click to its progress under the button {report['click to progress']:.2f} s.")
    return report


if __name__ == "__main__":
    main()
