"""The app's model work as ZeroGPU runs it: cancellable generators, picklable arguments and results, no CUDA at
import, models loaded at module level."""
from __future__ import annotations

import contextvars
import inspect
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import jobs

ROOT = Path(__file__).resolve().parents[1]


def _work(seconds: float, stopped: list):
    def work(report):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if not report(0.5, "working"):
                stopped.append(time.perf_counter())
                return "stopped"
            time.sleep(0.01)
        return "finished"
    return work


def test_the_result_comes_last_after_progress():
    items = list(jobs.run_cancellable(_work(0.1, []), poll_s=0.02))
    assert items[-1] == "finished" and all(isinstance(i, jobs.Progress) for i in items[:-1]) and len(items) > 1


def test_closing_stops_the_work_at_its_next_report():
    stopped = []
    steps = jobs.run_cancellable(_work(30, stopped))
    assert isinstance(next(steps), jobs.Progress)
    closed = time.perf_counter()
    steps.close()
    while not stopped and time.perf_counter() - closed < 5:
        time.sleep(0.005)
    assert stopped and stopped[0] - closed < 0.1


def test_work_past_its_time_limit_is_stopped():
    stopped = []
    started = time.perf_counter()
    items = list(jobs.run_cancellable(_work(30, stopped), poll_s=0.02, limit_s=0.2))
    assert items[-1] == jobs.TimedOut(0.2) and stopped and stopped[0] - started < 0.5


def test_a_silent_worker_still_yields_so_a_close_is_never_stuck():
    def silent(report):
        time.sleep(0.3)
        return 1
    items = list(jobs.run_cancellable(silent, poll_s=0.05))
    assert items[-1] == 1 and sum(isinstance(i, jobs.Progress) for i in items) >= 3


def test_errors_in_the_work_reach_the_caller():
    def broken(report):
        raise KeyError("boom")
    with pytest.raises(KeyError, match="boom"):
        list(jobs.run_cancellable(broken))
    assert not [t for t in threading.enumerate() if t.name == "videoxai-job" and t.is_alive()]


def test_handlers_run_in_passing_threads_with_the_callers_context_and_errors():
    """``jobs.off_main``: a call (a generator's each step) runs in a thread that ends with it, sees the caller's
    context variables (Gradio's request and progress live there) and raises the handler's error to the caller;
    closing the generator closes the handler's; Gradio sees the handler's signature."""
    visitor = contextvars.ContextVar("visitor")
    visitor.set("visitor-1")
    seen, closed = [], []

    def double(x: int) -> int:
        seen.append((threading.current_thread(), visitor.get()))
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    def count(n: int):
        try:
            for i in range(n):
                seen.append((threading.current_thread(), visitor.get()))
                yield i
        finally:
            closed.append(threading.current_thread())

    assert jobs.off_main(double)(3) == 6
    with pytest.raises(ValueError, match="negative"):
        jobs.off_main(double)(-1)
    assert list(jobs.off_main(count)(3)) == [0, 1, 2]
    steps = jobs.off_main(count)(10)
    assert next(steps) == 0
    steps.close()
    caller = threading.current_thread()
    assert len(seen) == 6 and all(t is not caller and not t.is_alive() and v == "visitor-1" for t, v in seen)
    assert len({t for t, _ in seen}) == 6                           # a new thread for each call and each step
    assert len(closed) == 2 and caller not in closed
    assert inspect.isgeneratorfunction(jobs.off_main(count))
    assert inspect.signature(jobs.off_main(count)) == inspect.signature(count)


def test_freed_memory_goes_back_once_no_work_has_run_for_a_while(monkeypatch):
    released = []
    monkeypatch.setattr(jobs, "release_freed_memory", lambda: released.append(time.perf_counter()))
    monkeypatch.setattr(jobs, "IDLE_TRIM_S", 0.3)
    first, second = (jobs.run_cancellable(_work(s, []), poll_s=0.02) for s in (0.1, 0.4))
    next(first), next(second)
    assert list(first)[-1] == "finished"
    time.sleep(0.35)
    assert not released, "the other work still runs"
    assert list(second)[-1] == "finished"
    third = jobs.run_cancellable(_work(0.4, []), poll_s=0.02)
    next(third)                                                # a new request within the idle time: no trim
    time.sleep(0.35)
    assert not released
    assert list(third)[-1] == "finished"
    ended = time.perf_counter()
    time.sleep(0.6)
    assert len(released) == 1 and released[0] - ended >= 0.25, "after the idle time, once"


@pytest.mark.integration
def test_gpu_arguments_and_results_are_picklable():
    import analysis

    clip = analysis.load_clip(next((ROOT / "assets" / "examples").glob("*.mp4")), "synth-r2plus1d-small")
    todo = [jobs.Job("grad_cam", None, {}), jobs.Job("rise", "fast", {"masks": 10})]
    pickle.loads(pickle.dumps((clip, todo, None, 0)))
    *progress, results = jobs.analyse(clip, todo, None, 0)
    assert [a.name for a in results] == ["grad_cam", "rise"]
    again = pickle.loads(pickle.dumps(results))
    assert (again[0].explanation.saliency == results[0].explanation.saliency).all()
    assert pickle.loads(pickle.dumps(progress[0])) == progress[0]
    failed = list(jobs.analyse(clip, [jobs.Job("rise", None, {"masks": 3})], None, 0))[-1]
    assert isinstance(failed, jobs.Failed) and "masks" in failed.message and pickle.dumps(failed)


@pytest.mark.integration
def test_importing_the_app_touches_no_cuda_and_imports_spaces_before_torch():
    code = ("import sys, json, app, torch; names = list(sys.modules); "
            "print(json.dumps([torch.cuda.is_initialized(), names.index('spaces') < names.index('torch'), "
            "app.jobs.ON_ZERO_GPU, app.jobs.SELECTABLE == app.jobs.list_cards()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, False, True]


@pytest.mark.integration
def test_module_level_loading_on_cpu_keeps_the_embedded_models(hf_cache):
    import analysis

    loaded = jobs.preload_models()
    assert {"synth-r2plus1d-small", "synth-cnn-lstm", "synth-videomae-small"} <= set(loaded)
    assert len(loaded) <= analysis.MODELS_KEPT
    assert "hf-videomae-base-k400" not in loaded, "not in this empty cache: skipped with a warning"


def _example_clip(card_id: str = "synth-r2plus1d-small"):
    import analysis

    return analysis.load_clip(next((ROOT / "assets" / "examples").glob("*.mp4")), card_id)


@pytest.mark.integration
def test_the_estimate_counts_the_passes_the_run_makes():
    clip = _example_clip()
    todo = [jobs.Job("occlusion", "fast", {}), jobs.Job("integrated_gradients", "fast", {"steps": 4})]
    cost = jobs.estimate(clip.model_id, todo)
    *_, results = jobs.analyse(clip, todo, None, 0)
    metric_forwards = 2 * (28 + 1) + 2
    assert cost.forward == sum(a.explanation.forward_passes + metric_forwards for a in results)
    assert cost.backward == sum(a.explanation.backward_passes for a in results)
    assert 0 < cost.seconds and cost.fits


def _quiet() -> None:
    """Wait for earlier tests' closed work and visitors to end."""
    end = time.perf_counter() + 10
    while (jobs._working or jobs._held) and time.perf_counter() < end:
        time.sleep(0.01)
    assert not jobs._working and not jobs._held, (jobs._working, jobs._held)


@pytest.mark.integration
def test_estimates_learn_only_from_steps_that_had_the_cores_to_themselves():
    clip, todo = _example_clip(), [jobs.Job("grad_cam", None, {})]
    _quiet()
    jobs.forget()
    prior = jobs.estimate(clip.model_id, todo).scoring
    with jobs.visitor_slot("a", "/explain"), jobs.visitor_slot("b", "/explain"):
        *_, crowded = jobs.analyse(clip, todo, None, 0)
    assert not crowded[0].timed_alone and crowded[0].scoring_s > 0
    jobs.learn(clip.model_id, crowded)
    assert jobs.estimate(clip.model_id, todo).scoring == prior, "a crowd's timing is not the request's cost"
    with jobs.visitor_slot("a", "/explain"):
        *_, alone = jobs.analyse(clip, todo, None, 0)
    assert alone[0].timed_alone
    jobs.learn(clip.model_id, alone)
    assert jobs.estimate(clip.model_id, todo).scoring == pytest.approx(alone[0].scoring_s)


@pytest.mark.integration
def test_a_models_pass_time_is_measured_at_the_threads_of_lone_work():
    import analysis

    model, seen = analysis.get_model("synth-r2plus1d-small"), []
    _quiet()
    jobs.forget()
    before = jobs.THREADS
    jobs.configure_threads(2)
    handle = model.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        with jobs.visitor_slot("a", "/explain"), jobs.visitor_slot("b", "/explain"):
            assert jobs.in_own_thread(lambda: (torch.get_num_threads(), jobs.pass_seconds(model.card.id))[0]) == 1
        assert seen and set(seen) == {2}
    finally:
        handle.remove()
        jobs.configure_threads(before)


@pytest.mark.integration
def test_a_request_over_budget_is_refused_before_any_work(monkeypatch):
    import gradio as gr

    import app

    monkeypatch.setattr(jobs, "MAX_SECONDS", 5.0)
    steps = app.explain_clip(str(next((ROOT / "assets" / "examples").glob("*.mp4"))), app.DEFAULT_MODEL, None, None,
                             "ep_unsync", "fast", app.TOP1, 0, None, progress=lambda f, desc="": None)
    with pytest.raises(gr.Error, match=r"needs about [\d,]+ s and [\d,]+ MB of memory at its peak \(14,509 forward and "
                                       r"14,400 backward passes"):
        next(steps)
    assert not [t for t in threading.enumerate() if t.name == "videoxai-job"]


@pytest.mark.integration
def test_a_request_over_the_memory_cap_is_refused_before_any_work(monkeypatch):
    import gradio as gr

    import app

    monkeypatch.setattr(jobs, "MAX_SECONDS", 1e9)                       # over the memory cap alone, however slow

    steps = app.explain_clip(str(next((ROOT / "assets" / "examples").glob("*.mp4"))), app.DEFAULT_MODEL, None, None,
                             "rise", "default", app.TOP1, 0, {"masks": 15000, "grid": [32, 32, 32]},
                             progress=lambda f, desc="": None)     # 15,000 × 33³ mask cells: 2.0 GB
    with pytest.raises(gr.Error, match=r"[\d,]+ MB of memory at its peak .*more than the 2,048 MB of memory one"):
        next(steps)
    assert not [t for t in threading.enumerate() if t.name == "videoxai-job"]


PEAK = """
import json, sys
import analysis, jobs
def rss_mb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1]) / 1024
clip = analysis.load_clip(sys.argv[1], "synth-r2plus1d-small")
job = jobs.Job(sys.argv[2], None, json.loads(sys.argv[3]))
cost = jobs.estimate(clip.model_id, [job])                                   # has run the model's batched passes once
before = rss_mb("VmRSS")
open("/proc/self/clear_refs", "w").write("5")                        # the high-water mark starts again from here
analysis.run_method(clip, job.method, None, None, job.params, 0)
print(json.dumps([cost.memory_mb, rss_mb("VmHWM") - before]))
"""


@pytest.mark.integration
@pytest.mark.parametrize("method, params", [("rise", {"masks": 600, "grid": [32, 32, 32]}),
                                            ("ep3d", {"iterations": 3, "areas": [0.1, 0.2, 0.3, 0.4]}),
                                            ("integrated_gradients", {"steps": 64})])
def test_the_memory_estimate_bounds_what_a_run_takes(method, params):
    """In a fresh process: the growth of resident memory during a run is at most the estimate, and the estimate is
    not far above it."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(next((ROOT / "assets" / "examples").glob("*.mp4"))),
                          method, json.dumps(params)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    estimate, grew = json.loads(out.stdout.strip().splitlines()[-1])
    assert grew <= estimate <= 4 * grew + 400, (estimate, grew)


@pytest.mark.integration
def test_a_run_that_overruns_its_estimate_is_stopped_with_a_message(monkeypatch):
    import gradio as gr

    import app

    monkeypatch.setattr(jobs, "OVERRUN_S", 0.0)
    monkeypatch.setattr(jobs, "pass_seconds", lambda card_id: jobs.PassTime(1e-6, 1e-6))   # far below EP-3D
    steps = app.explain_clip(str(next((ROOT / "assets" / "examples").glob("*.mp4"))), app.DEFAULT_MODEL, None, None,
                             "ep3d", "fast", app.TOP1, 0, None, progress=lambda f, desc="": None)
    started = time.perf_counter()
    with pytest.raises(gr.Error, match="Stopped after 0 s: the run took far longer than its estimate"):
        list(steps)
    assert time.perf_counter() - started < 10, "EP-3D fast runs for about a minute here"


@pytest.mark.integration
def test_zero_gpu_windows_stay_below_a_signed_out_visitors_quota(monkeypatch):
    """Every method's fast preset on the embedded models: the window asked of ZeroGPU, scaled by the largest
    duration factor of the GPUs ZeroGPU lists, is under 2 minutes; what cannot fit is refused, not cut short."""
    import spaces

    factor = max(c["duration_factor"] for c in json.loads(
        (Path(spaces.__file__).parent / "zero" / "configs.json").read_text()))
    monkeypatch.setattr(jobs, "ON_ZERO_GPU", True)
    monkeypatch.setattr(jobs, "_pass_s", {})
    refused = set()
    for card_id in ("synth-r2plus1d-small", "synth-cnn-lstm"):
        clip = _example_clip(card_id)
        for method, spec in jobs.REGISTRY.items():
            todo = [jobs.Job(method, "fast" if "fast" in spec.presets else None, {})]
            cost = jobs.estimate(clip.model_id, todo)
            assert (jobs.window(cost.explaining) + jobs.window(cost.scoring)) * factor <= 120
            if not cost.fits:
                refused.add(method)
    assert refused == {"ep_unsync"}, "a minute of GPU fits every fast preset but Unsync's 14,400 steps"


def _busy(seconds: float):
    """A start function for a lane: work that reports until ``seconds`` have passed."""
    return lambda nice: jobs.run_cancellable(_work(seconds, []), poll_s=0.02, nice=nice)


def test_a_lane_runs_its_requests_one_at_a_time_in_order():
    lane = jobs.Lane("long", 1)
    first, second, third = (lane.run(_busy(30), poll_s=0.02) for _ in range(3))
    assert isinstance(next(first), jobs.Progress)               # running
    assert next(second) == jobs.Waiting(1, "long") and next(third) == jobs.Waiting(2, "long")
    third.close()                                               # a visitor who gives up while waiting leaves the line
    assert lane.busy == 2
    first.close()
    assert isinstance(next(second), jobs.Progress), "the next in line starts when the running one ends"
    second.close()
    assert lane.busy == 0


def test_a_quick_request_is_served_while_a_long_one_runs():
    long, quick = jobs.Lane("long", 1), jobs.Lane("quick", 1)
    running = long.run(_busy(30), poll_s=0.02)
    next(running)
    items = list(quick.run(_busy(0.05), poll_s=0.02))
    assert items[-1] == "finished" and not any(isinstance(i, jobs.Waiting) for i in items)
    running.close()


def test_work_pauses_at_its_reports_while_a_higher_priority_lane_runs_and_its_time_limit_waits_too():
    returned = []

    def long_work(report):                      # 0.3 s of work, reporting every 10 ms
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            if not report(0.5, "working"):
                return "stopped"
            returned.append(time.perf_counter())
            time.sleep(0.01)
        return "finished"
    steps = jobs.run_cancellable(long_work, poll_s=0.02, limit_s=0.6, nice=jobs.LONG.nice)
    next(steps)
    time.sleep(0.05)
    quick = jobs.QUICK.run(_busy(0.8), poll_s=0.02)
    next(quick)
    began = time.perf_counter()
    assert jobs.outranked(jobs.LONG.nice) and jobs.outranked(jobs.SCORING.nice) and not jobs.outranked(0)
    items = list(quick)
    ended = time.perf_counter()
    assert items[-1] == "finished"
    assert not [t for t in returned if began + 0.05 < t < ended - 0.05], "long work went on beside quick work"
    assert list(steps)[-1] == "finished", "0.8 s of pause is not counted against its 0.6 s limit"
    assert not jobs.outranked(jobs.LONG.nice)


def test_paused_work_is_still_cancelled_at_once():
    steps = jobs.run_cancellable(_work(30, stopped := []), poll_s=0.02, nice=jobs.LONG.nice)
    next(steps)
    quick = jobs.QUICK.run(_busy(30), poll_s=0.02)
    next(quick)
    time.sleep(0.05)
    closed = time.perf_counter()
    steps.close()
    while not stopped and time.perf_counter() - closed < 2:
        time.sleep(0.005)
    quick.close()
    assert stopped and stopped[0] - closed < 0.1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_long_work_runs_at_a_lower_cpu_priority_than_quick_work():
    def priority(report):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert jobs.LONG.nice > jobs.SCORING.nice > jobs.QUICK.nice == 0
    assert list(jobs.run_cancellable(priority, nice=jobs.LONG.nice))[-1] == min(own + jobs.LONG.nice, 19)
    assert list(jobs.run_cancellable(priority))[-1] == own
    told = list(jobs.LONG.run(lambda nice: jobs.run_cancellable(priority, nice=nice)))[-1]
    assert told == min(own + jobs.LONG.nice, 19), "a lane hands its priority to the work it starts"
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own, "the caller's priority is unchanged"


def test_the_estimate_chooses_the_lane():
    assert jobs.Estimate(61, 1, jobs.QUICK_S / 2, 300).lane is jobs.QUICK
    assert jobs.Estimate(900, 0, jobs.QUICK_S * 2, 300).lane is jobs.LONG


def test_a_visitor_has_a_bounded_number_of_places():
    with jobs.visitor_slot("a", "/explain", limit=2), jobs.visitor_slot("a", "/compare", limit=2):
        with pytest.raises(jobs.TooMany, match="already have 2"), jobs.visitor_slot("a", "/learn", limit=2):
            pass
        with jobs.visitor_slot("b", "/explain", limit=2), jobs.visitor_slot(None, "/explain", limit=2):
            pass                                                # others, and calls without a visitor, are not held
    with jobs.visitor_slot("a", "/explain", limit=1):
        pass                                                    # places are given back at the end


def test_a_visitor_has_one_request_per_endpoint_in_flight():
    with jobs.visitor_slot("a", "/explain", limit=2):
        with pytest.raises(jobs.TooMany, match="already have a request to /explain"):
            with jobs.visitor_slot("a", "/explain", limit=2):
                pass
    with jobs.visitor_slot("a", "/explain", limit=2):
        pass


def test_work_uses_every_thread_alone_and_one_beside_other_visitors_or_work():
    seen: list[int] = []

    def work(report):
        while report(0.5, "working"):
            seen.append(torch.get_num_threads())
            time.sleep(0.01)

    def threads_now(report):
        return torch.get_num_threads()
    _quiet()
    before = jobs.THREADS
    jobs.configure_threads(2)
    try:
        with jobs.visitor_slot("alone", "/explain"):
            assert list(jobs.run_cancellable(threads_now))[-1] == 2
            assert jobs.work_threads() == 2, "a step's thread is counted out before its result is handed over"
            steps = jobs.run_cancellable(work, poll_s=0.02)
            next(steps)
            time.sleep(0.1)
            with jobs.visitor_slot("another", "/explain"):      # a second visitor arrives while it runs
                time.sleep(0.1)
                assert jobs.work_threads() == 1 and seen[-1] == 1
                assert list(jobs.run_cancellable(threads_now))[-1] == 1
            time.sleep(0.1)
            steps.close()
        assert seen[0] == 2 and seen[-1] == 2, "the running work follows the crowd at its reports"
        assert torch.get_num_threads() == 2, "the caller's own setting is left alone"
    finally:
        jobs.configure_threads(before)
