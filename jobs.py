"""The app's model work, shaped for ZeroGPU and for cancellation.

A request is decoded on the CPU (``analysis.load_clip``); its model work runs in two steps, ``explain_on_gpu`` (the
maps) and ``score_on_gpu`` (the metrics' passes) — the only functions that hold a GPU on ZeroGPU — so the overlay is
shown while the metrics are computed; its pictures and files are made on the CPU in between and after. Both are
generators: they yield progress while the work runs in a thread and then the result, so closing one (Gradio does on
Stop, on a client's cancel and on a dropped connection; ZeroGPU forwards that to its worker) stops the work at its
next progress report. Their arguments and results are plain data (picklable: ZeroGPU sends them to a forked worker).

On ZeroGPU (``SPACES_ZERO_GPU`` set) the selectable models are loaded at import onto ``cuda``, as ZeroGPU requires:
the embedded ones and the Hub models that the Space preloads (cards pinned to a commit, found in the cache), at
most ``analysis.get_model``'s cache size, so none is ever evicted. Elsewhere every card is selectable and models
load on first use.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import spaces  # before torch: ZeroGPU patches CUDA at import
import torch

import analysis
from analysis import Analysis, ClipInput
from explainers import REGISTRY, Cancelled, ProgressFn
from explainers.device import default_batch, release_freed_memory
from explainers.metrics import EVALUATION_OVERHEAD, SENSITIVITY_SAMPLES, evaluation_forwards
from zoo.cards import list_cards, load_card
from zoo.models import ModelLoadError

log = logging.getLogger(__name__)

ON_ZERO_GPU = spaces.config.Config.zero_gpu
POLL_S = 0.5             # the longest a cancel waits for running work's generator to be at a yield
WAIT_POLL_S = 3.0        # the same while waiting in a lane (each yield costs Gradio about 10 ms of its event loop);
                         # below gradio_client's 5 s timeout on a cancel, which Gradio answers once the step ends
GPU_CAP_S = 60           # one request's GPU window; ZeroGPU may scale it 1.5x, below a signed-out visitor's 2 min
MAX_SECONDS = float(os.environ.get("VIDEOXAI_MAX_SECONDS", 300))   # one request's budget off ZeroGPU
SETUP_S = 5.0            # a request's fixed cost on ZeroGPU: worker start, moving the clip
OVERRUN, OVERRUN_S = 4.0, 15.0   # a step is stopped past 4× its estimate + 15 s (a first EP run takes 3.4× its
                                 # estimate alone, and steps share the cores with two other lanes)
PAUSE_POLL_S = 0.01      # how often paused work looks whether the work it waits for has ended
QUICK_S = float(os.environ.get("VIDEOXAI_QUICK_S", 1))      # explanations estimated under this take the quick lane
PER_VISITOR = int(os.environ.get("VIDEOXAI_PER_VISITOR", 2))  # analyses one visitor may have running or waiting
# Seconds per forward clip pass (a backward counts two) of a 787,242-parameter model on a 16×112×112 clip on a
# GPU, from the H100 figure of docs/performance.md (EP-3D fast: 903 forwards + 900 backwards in about 7 s). On
# ZeroGPU it is the prior, scaled by the model's parameter count, until a run of that model measures its own.
GPU_UNIT_S, GPU_UNIT_PARAMS = 0.0026, 787_242
MAX_MEMORY_MB = float(os.environ.get("VIDEOXAI_MAX_MEMORY_MB", 2048))   # one request's peak memory, at most
GPU_MEMORY_MB = 20480    # the same on ZeroGPU, in GPU memory (a ZeroGPU slice has far more)
# Bytes one clip's forward + backward keeps for the backward, of the default model (measured on the CPU: 42.5 MB);
# on ZeroGPU, where the main process cannot run the model, the prior for every model.
GPU_PASS_BYTES = 45 * 2**20


@dataclass(frozen=True)
class Job:
    """One method to run on a clip: preset (None for the method's defaults) and parameter overrides."""

    method: str
    preset: str | None
    params: dict


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str


@dataclass(frozen=True)
class Failed:
    """An expected failure (bad parameter, stopped): the message is for the visitor."""

    message: str


@dataclass(frozen=True)
class Waiting:
    """The request waits in a lane behind ``ahead`` others (running or earlier in line)."""

    ahead: int
    lane: str


@dataclass(frozen=True)
class TimedOut:
    """The work ran past its time limit and was stopped."""

    seconds: float


_working = 0                  # work threads alive in this process
_starts = 0                   # work threads started so far (an idle trim is called off by a start since)
_working_lock = threading.Lock()
IDLE_TRIM_S = 1.0             # the work threads' memory goes back to the kernel after this long with none running


THREADS = torch.get_num_threads()    # torch threads for work that has the machine to itself (``configure_threads``)


def configure_threads(threads: int) -> None:
    """Set the torch threads that work which has the machine to itself runs with (``work_threads``)."""
    global THREADS
    THREADS = threads
    torch.set_num_threads(threads)


def work_threads() -> int:
    """Torch threads for model work starting now: all ``THREADS`` while it is the only work of the only visitor,
    one while other work or other visitors' requests share the cores. A team of threads waits at every operation for
    its slowest member, so beside anything else that runs now and then (another lane's work, rendering, Gradio's
    event loop) two threads on two cores lose more than they gain: a map's metrics took 1.32× as long as alone beside
    a process busy 30 % of the time with two threads, and as long as alone with one (docs/performance.md, many
    visitors). Off on ZeroGPU, whose work runs on a GPU in another process."""
    return 1 if _sharing() else THREADS


def _sharing() -> bool:
    """Whether work starting now shares the cores: other work threads run, or other visitors have requests in
    flight. Never on ZeroGPU, whose work runs on a GPU in another process."""
    if ON_ZERO_GPU:
        return False
    with _held_lock:
        visitors = len(_held)
    return _working > 1 or visitors > 1


_step = threading.local()     # per work thread: whether the step it runs has shared the cores since it began


def use_work_threads() -> None:
    """Set the calling thread's torch threads to ``work_threads()`` (a thread's own setting: each work thread calls
    it as it starts and at each of its progress reports), and note whether its step has shared the cores."""
    if _sharing():
        _step.shared = True
    threads = work_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _started() -> None:
    global _working, _starts
    with _working_lock:
        _working += 1
        _starts += 1


def _ended() -> None:
    """A work thread ends; once none has run for ``IDLE_TRIM_S``, the memory their work freed is handed back to the
    kernel, so the process returns to its idle size between bursts of visitors
    (``explainers.device.keep_freed_memory`` keeps it otherwise). Not at once: the next step of the same request
    (its scoring after its map) would fault those pages in again, and the trim would delay its answer."""
    global _working
    with _working_lock:
        _working -= 1
        if _working:
            return
        starts = _starts
    timer = threading.Timer(IDLE_TRIM_S, _trim_if_idle, (starts,))
    timer.daemon = True
    timer.start()


def _trim_if_idle(starts: int) -> None:
    with _working_lock:
        if _working or _starts != starts:
            return
    release_freed_memory()


def in_own_thread(work: Callable[..., Any], *args, **kwargs) -> Any:
    """``work(*args, **kwargs)`` in a thread that ends with it (the caller's context variables carried over, its
    exception re-raised here). A thread that runs torch ops on several cores keeps an OpenMP pool as long as it
    lives, and once more pooled threads than cores exist libgomp stops spinning between parallel regions, which
    made model work 1.3–1.5× slower on 2 cores (docs/performance.md); so the app runs no torch op in a long-lived
    thread (the main one, Gradio's workers)."""
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            use_work_threads()
            outcome["value"] = context.run(work, *args, **kwargs)
        except BaseException as e:   # re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=target, name=f"videoxai-{getattr(work, '__name__', 'work')}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def off_main(handler: Callable) -> Callable:
    """``handler`` (a function or a generator function) with its body run in passing threads (``in_own_thread``; a
    generator's each step in one), for the app's event handlers, which Gradio calls in long-lived threads. Gradio
    sees the same signature (``functools.wraps``); closing the generator closes ``handler``'s. Unchanged on ZeroGPU,
    where the model work runs in ZeroGPU's own process."""
    if ON_ZERO_GPU:
        return handler
    if not inspect.isgeneratorfunction(handler):
        return functools.wraps(handler)(lambda *args, **kwargs: in_own_thread(handler, *args, **kwargs))

    @functools.wraps(handler)
    def steps(*args, **kwargs):
        inner = handler(*args, **kwargs)
        try:
            while True:
                try:
                    item = in_own_thread(next, inner)
                except StopIteration:
                    return
                yield item
        finally:
            in_own_thread(inner.close)
    return steps


def lower_priority(nice: int) -> bool:
    """Lower the CPU priority of the calling thread, and of the OpenMP workers it starts from now on, by ``nice``
    (Linux schedules each thread by its own nice value). ``os.setpriority`` on a thread's id, which other systems
    would read as a process id, so it changes nothing there; returns whether it was lowered."""
    if not nice or not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + nice))
    except OSError:
        return False
    return True


def outranked(nice: int) -> bool:
    """Whether a lane of higher priority (lower ``nice``) has work running, for which work at ``nice`` pauses. Never
    on ZeroGPU, where the work runs in another process and these lanes are not what it would see."""
    return not ON_ZERO_GPU and any(lane.nice < nice and lane.running for lane in LANES)


def run_cancellable(work: Callable[[ProgressFn], Any], poll_s: float = POLL_S,
                    limit_s: float | None = None, nice: int = 0) -> Generator[Any, None, None]:
    """Run ``work(report)`` in a thread (its CPU priority lowered by ``nice``); yield a ``Progress`` as soon as it
    has started (so a caller can start it and do something else meanwhile), its latest ``Progress`` every
    ``poll_s`` while it runs, then its result (``TimedOut`` instead, if it ran past ``limit_s`` and was stopped).

    At each of its progress reports the work pauses while work of a higher-priority lane runs (``outranked``):
    the cores' caches and memory are shared however low its priority, and a map's metrics ran 1.5–1.6× slower
    beside a long run at nice 10 or 19 (docs/performance.md, many visitors). The time limit does not count the pauses.

    Closing the generator makes ``report`` return False, so explainers stop with ``Cancelled`` at their next
    progress report; the thread is not waited for (a close may come from the server's event loop). Passing the
    time limit does the same, and the generator waits for the work to end."""
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()
    last = Progress(0.0, "starting")
    deadline = None if limit_s is None else time.perf_counter() + limit_s
    paused = [0.0, None]                       # seconds paused so far, and when the pause in progress began

    def report(fraction: float, message: str) -> bool:
        updates.put(Progress(fraction, message))
        use_work_threads()
        if outranked(nice):
            paused[1] = time.perf_counter()
            while outranked(nice) and not stop.is_set():
                time.sleep(PAUSE_POLL_S)
            paused[0], paused[1] = paused[0] + time.perf_counter() - paused[1], None
        return not stop.is_set()

    def paused_s() -> float:
        began = paused[1]
        return paused[0] + (0.0 if began is None else time.perf_counter() - began)

    def target() -> None:
        lower_priority(nice)
        use_work_threads()
        try:
            outcome = ("done", work(report))
        except BaseException as e:   # handed to the generator, which re-raises it in the caller's thread
            outcome = ("raised", e)
        _ended()                     # first: the caller may start the next step (``work_threads`` counts this one)
        updates.put(outcome)

    thread = threading.Thread(target=target, name="videoxai-job", daemon=True)
    _started()
    thread.start()
    due = time.perf_counter()
    try:
        while True:
            if deadline is not None and time.perf_counter() > deadline + paused_s():
                stop.set()
            try:
                item = updates.get(timeout=max(0.0, due - time.perf_counter()))
            except queue.Empty:
                item = None
            if isinstance(item, Progress):
                last = item
            elif item is not None:
                thread.join()                      # it has handed over its outcome: only its bookkeeping is left
                if item[0] == "raised":
                    raise item[1]
                yield TimedOut(limit_s) if stop.is_set() else item[1]
                return
            if time.perf_counter() >= due:         # the latest progress, once per poll_s: each yield costs the
                yield last                         # server a round of Gradio's output processing
                due = time.perf_counter() + poll_s
    finally:
        stop.set()


class Lane:
    """A first-come, first-served line in which at most ``slots`` requests run at once, their work at CPU priority
    ``nice``.

    The app has three: a request's explanations wait in ``QUICK`` or ``LONG`` by their estimate, so a one-pass
    explanation is served while an EP or occlusion run goes on, and long runs take turns; then its scoring waits in
    ``SCORING``, so a queue of metric passes never holds back the next overlay. Scoring runs two at a time: with
    other visitors about, each piece of work has one torch thread (``work_threads``), so one scoring alone would
    leave a core idle. Where they share the cores, quick work goes first (nice 0, as classifying), then scoring (1:
    Chromium on the same machine runs threads at nice −8 to 5, and with scoring at 5 its curves came 0.1–0.15 s
    later), then long runs (10); lower work also pauses while higher work runs (``outranked``). Written here rather
    than as Gradio concurrency groups because one endpoint (``/explain``) serves every kind."""

    def __init__(self, name: str, slots: int, nice: int = 0):
        self.name, self.slots, self.nice = name, slots, nice
        self._cond = threading.Condition()
        self._line: list[object] = []
        self._running: set[object] = set()

    def _free(self, ticket: object) -> bool:
        return len(self._running) < self.slots and self._line[0] is ticket

    def run(self, start: Callable[[int], Iterator], poll_s: float = WAIT_POLL_S) -> Generator:
        """Yield ``Waiting`` (at once, then every ``poll_s``) until it is this request's turn, then the items of
        ``start(nice)`` (the work, told the lane's priority); the lane is left when that ends or the generator is
        closed (waiting or running)."""
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        wait_s = 0.0
        try:
            while True:
                with self._cond:
                    if self._cond.wait_for(lambda: self._free(ticket), wait_s):
                        self._line.pop(0)
                        self._running.add(ticket)
                        break
                    ahead = self._line.index(ticket) + len(self._running)
                yield Waiting(ahead, self.name)
                wait_s = poll_s
            work = start(self.nice)
            try:
                yield from work
            finally:
                work.close()
        finally:
            with self._cond:
                if ticket in self._line:
                    self._line.remove(ticket)
                self._running.discard(ticket)
                self._cond.notify_all()

    @property
    def busy(self) -> int:
        """Requests running or waiting in the lane."""
        with self._cond:
            return len(self._line) + len(self._running)

    @property
    def running(self) -> int:
        """Requests running in the lane."""
        return len(self._running)


QUICK, LONG, SCORING = Lane("quick", 1), Lane("long", 1, nice=10), Lane("scoring", 2, nice=1)
LANES = (QUICK, SCORING, LONG)


def wait_idle(timeout_s: float) -> bool:
    """Wait until no request runs or waits in any lane (before a server is closed with requests finishing);
    returns whether that happened within ``timeout_s``."""
    until = time.perf_counter() + timeout_s
    while any(lane.busy for lane in (QUICK, LONG, SCORING)):
        if time.perf_counter() > until:
            return False
        time.sleep(0.05)
    return True


class TooMany(Exception):
    """The visitor already has ``PER_VISITOR`` analyses, or one from the same endpoint, running or waiting."""


_held: Counter[str] = Counter()
_held_by_endpoint: set[tuple[str, str]] = set()
_held_lock = threading.Lock()


@contextmanager
def visitor_slot(visitor: str | None, endpoint: str, limit: int = PER_VISITOR):
    """Hold one of a visitor's ``limit`` places for the duration of a request (None: no visitor, no limit);
    raises ``TooMany`` when they are all taken, or when the visitor already has a request of ``endpoint`` in
    flight: Gradio cancels a visitor's requests by endpoint, so a Stop or a client's cancel of one would end the
    other too, leaving its caller waiting for an answer that never comes."""
    if visitor is None:
        yield
        return
    with _held_lock:
        if (visitor, endpoint) in _held_by_endpoint:
            raise TooMany(f"You already have a request to {endpoint} running or waiting; wait for it to finish or "
                          f"stop it first.")
        if _held[visitor] >= limit:
            raise TooMany(f"You already have {limit} analyses running or waiting; wait for one to finish or stop "
                          f"one.")
        _held[visitor] += 1
        _held_by_endpoint.add((visitor, endpoint))
    try:
        yield
    finally:
        with _held_lock:
            _held[visitor] -= 1
            _held_by_endpoint.discard((visitor, endpoint))
            if not _held[visitor]:
                del _held[visitor]


@dataclass(frozen=True)
class Estimate:
    """What a request will cost, known before it runs."""

    forward: int
    backward: int
    seconds: float          # the whole request: explanations, then scoring
    budget: float
    scoring: float = 0.0    # of which the metrics' passes
    memory_mb: float = 0.0  # peak memory of its largest step: one batched pass and what the method holds
    memory_budget: float = MAX_MEMORY_MB

    @property
    def explaining(self) -> float:
        return self.seconds - self.scoring

    @property
    def fits(self) -> bool:
        return self.seconds <= self.budget and self.memory_mb <= self.memory_budget

    @property
    def lane(self) -> Lane:
        """Where the explanations wait: ``QUICK`` or ``LONG`` by their estimate (scoring waits in ``SCORING``)."""
        return QUICK if self.explaining <= QUICK_S else LONG

    def describe(self) -> str:
        return (f"about {self.seconds:,.0f} s and {self.memory_mb:,.0f} MB of memory at its peak ({self.forward:,} "
                f"forward and {self.backward:,} backward passes of the model)")

    def over(self, hardware: str) -> str:
        """The budgets the request is over, for a person (only meaningful when it does not fit)."""
        over = ([f"the {self.budget:,.0f} s"] if self.seconds > self.budget else []) + (
            [f"the {self.memory_budget:,.0f} MB of memory"] if self.memory_mb > self.memory_budget else [])
        return f"more than {' and '.join(over)} one request may use on {hardware}"


@dataclass(frozen=True)
class PassTime:
    """Seconds per clip of a model's passes on one device."""

    forward: float      # a batched forward without gradients (perturbation methods, the metrics)
    backward: float     # what a backward adds, with the forward that records for it (gradient methods)

    def of(self, forward: int, backward: int) -> float:
        """Seconds of ``forward`` and ``backward`` clip passes."""
        return self.forward * forward + self.backward * backward


_pass_s: dict[str, PassTime] = {}       # card id -> seconds per clip pass, measured on this process's device
_pass_bytes: dict[str, float] = {}      # card id -> bytes one clip's forward + backward keeps, measured once
_slowdown: dict[tuple[str, str], float] = {}    # (card id, method) -> seconds taken / seconds its passes predict


def pass_seconds(card_id: str) -> PassTime:
    """Seconds per clip pass of a model: measured once on this device (batched, a forward alone and a forward +
    backward), or on ZeroGPU, where the main process has no GPU, the parameter-scaled prior until a run measures
    it."""
    if card_id not in _pass_s:
        model = analysis.get_model(card_id)
        if ON_ZERO_GPU:
            unit = GPU_UNIT_S * max(1.0, sum(p.numel() for p in model.parameters()) / GPU_UNIT_PARAMS)
            _pass_s[card_id] = PassTime(unit, 2 * unit)
        else:
            _pass_s[card_id] = _measure(model)
    return _pass_s[card_id]


def _measure(model) -> PassTime:
    """Seconds per clip at ``THREADS`` torch threads, the threads of work that has the machine to itself, whatever
    the calling thread's own setting (one, in a crowd)."""
    spec = model.input_spec
    batch = default_batch(analysis.DEVICE)
    x = torch.randn(batch, 3, spec.frames, *spec.size, device=analysis.DEVICE, requires_grad=True)
    own = torch.get_num_threads()

    def seconds(work: Callable[[], Any]) -> float:
        taken = []
        for _ in range(2):                   # the first pass also allocates; the second is the one that counts
            start = time.perf_counter()
            work()
            taken.append(time.perf_counter() - start)
        return taken[-1] / batch
    torch.set_num_threads(THREADS)
    try:
        with torch.no_grad():
            forward = seconds(lambda: model(x))
        both = seconds(lambda: model(x).sum().backward())
    finally:
        torch.set_num_threads(own)
    return PassTime(forward, max(both - forward, forward))


def pass_bytes(card_id: str) -> float:
    """Bytes one clip's forward + backward of a model keeps for the backward (its activations: what a batched pass
    adds per clip), counted once with autograd's saved-tensor hooks; on ZeroGPU the prior ``GPU_PASS_BYTES``."""
    if card_id not in _pass_bytes:
        if ON_ZERO_GPU:
            _pass_bytes[card_id] = GPU_PASS_BYTES
        else:
            _pass_bytes[card_id] = _saved_bytes(analysis.get_model(card_id))
    return _pass_bytes[card_id]


def _saved_bytes(model) -> float:
    spec = model.input_spec
    x = torch.zeros(1, 3, spec.frames, *spec.size, device=analysis.DEVICE, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t,
                                                  lambda t: t):
        model(x).sum().backward()
    return float(sum(saved))


def forget() -> None:
    """Drop every measured seconds-per-pass and slowdown (the next estimates start from measurement or prior)."""
    _pass_s.clear()
    _pass_bytes.clear()
    _slowdown.clear()


def learn(card_id: str, results: list[Analysis]) -> None:
    """Remember how long each method's runs (of 100+ pass units, where latency is small) and the metrics took
    against what their passes predict: the method's own work (masks, flow, supervoxels) and the metrics' (blurring,
    ranking) make them slower than their passes alone, and on ZeroGPU the prior per pass is only a guess until
    then. Only from steps that had the cores to themselves (``Analysis.timed_alone``): an estimate says what a
    request costs, and in a crowd (one thread each, waiting for a core) a map's scoring took 2–3.5× as long as
    alone (docs/performance.md, many visitors)."""
    passes = pass_seconds(card_id)
    for a in filter(lambda a: a.timed_alone, results):
        e = a.explanation
        if e.forward_passes + 2 * e.backward_passes >= 100:
            _slowdown[(card_id, e.method)] = e.seconds / passes.of(e.forward_passes, e.backward_passes)
        if a.scoring_s:
            _slowdown[(card_id, SCORING.name)] = a.scoring_s / passes.of(evaluation_forwards(), 0)


def _overhead(card_id: str, method: str) -> float:
    """A run's seconds per second of its passes: what the last run measured, else the registry's prior (measured
    on a CPU; on ZeroGPU 1, as the GPU's prior per pass comes from whole EP runs, their own work included)."""
    prior = EVALUATION_OVERHEAD if method == SCORING.name else REGISTRY[method].overhead
    return _slowdown.get((card_id, method), 1.0 if ON_ZERO_GPU else prior)


def scoring_seconds(card_id: str, count: int) -> float:
    """Seconds to score ``count`` maps of a model (the metrics' forwards; on ZeroGPU with a GPU window's setup)."""
    setup = SETUP_S if ON_ZERO_GPU else 0.0
    return setup + pass_seconds(card_id).of(evaluation_forwards() * count, 0) * _overhead(card_id, SCORING.name)


def estimate(card_id: str, jobs: list[Job]) -> Estimate:
    """Passes, seconds and peak memory of the explanations of one clip by model ``card_id`` and their metrics, from
    the registry's pass counts and held memory, this device's seconds per pass and bytes per clip, and what earlier
    runs of the method took."""
    given = analysis.get_model(card_id).input_spec
    shape = (given.frames, *given.size)
    passes = pass_seconds(card_id)
    forward = backward = 0
    seconds = SETUP_S if ON_ZERO_GPU else 0.0
    held = 0
    for job in jobs:
        spec = REGISTRY[job.method]
        params = spec.resolve(spec.preset_or_none(job.preset), job.params)
        f, b = spec.count(params, shape)
        forward, backward = forward + f + evaluation_forwards(), backward + b
        seconds += passes.of(f, b) * _overhead(card_id, job.method)
        held = max(held, spec.memory(params, shape))
    scoring = scoring_seconds(card_id, len(jobs))
    memory = default_batch(analysis.DEVICE) * pass_bytes(card_id) + held
    return Estimate(forward, backward, seconds + scoring, GPU_CAP_S if ON_ZERO_GPU else MAX_SECONDS, scoring,
                    memory / 2**20, GPU_MEMORY_MB if ON_ZERO_GPU else MAX_MEMORY_MB)


def time_limit(seconds: float, budget: float) -> float:
    """Wall-clock seconds a step estimated at ``seconds`` may run: ``OVERRUN`` times that plus ``OVERRUN_S``, never
    more than twice the budget."""
    return min(2 * budget, OVERRUN * seconds + OVERRUN_S)


def window(seconds: float) -> int:
    """The GPU window ZeroGPU reserves for a step estimated at ``seconds``: with a margin, never above the cap."""
    return int(min(GPU_CAP_S, 1.5 * seconds + 1))


def _explain_window(clip: ClipInput, jobs: list[Job], target: int | None, seed: int,
                    limit_s: float | None = None, nice: int = 0) -> int:
    return window(estimate(clip.model_id, jobs).explaining)


def _score_window(analyses: list[Analysis], limit_s: float | None = None, nice: int = 0) -> int:
    return window(scoring_seconds(analyses[0].clip.model_id, len(analyses)))


def _each(items: list, name: Callable[[Any], str], step: Callable[[Any, ProgressFn], Analysis],
          limit_s: float | None, nice: int = 0) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """``step`` on each item in turn in a cancellable worker thread (``run_cancellable``, at priority ``nice``):
    yields ``Progress`` (scaled to the items), then the analyses, or ``Failed`` when stopped, over time or refused
    by the method."""
    def work(report: ProgressFn) -> list[Analysis] | Failed:
        results = []
        for i, item in enumerate(items):
            prefix = f"[{i + 1}/{len(items)}] {name(item)}: " if len(items) > 1 else ""

            def scaled(fraction: float, message: str, i: int = i, prefix: str = prefix) -> bool:
                return report((i + fraction) / len(items), prefix + message)
            try:
                _step.shared = False
                if not scaled(0.0, "starting"):
                    raise Cancelled("stopped")
                done = _on_cpu(step(item, scaled))
                results.append(replace(done, timed_alone=not _step.shared))
            except Cancelled:
                return Failed("Stopped. Nothing was changed; run it again when you like.")
            except (ValueError, TypeError) as e:
                return Failed(f"{REGISTRY[name(item)].name}: {e}")
        return results
    for item in run_cancellable(work, limit_s=limit_s, nice=nice):
        if isinstance(item, TimedOut):
            yield Failed(f"Stopped after {item.seconds:.0f} s: the run took far longer than its estimate. Nothing "
                         f"was changed; choose a cheaper setting.")
        else:
            yield item


@spaces.GPU(duration=_explain_window)
def explain_on_gpu(clip: ClipInput, jobs: list[Job], target: int | None, seed: int, limit_s: float | None = None,
                   nice: int = 0) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """Explain ``clip`` with each job in turn; yields ``Progress``, then the analyses, not scored yet (or
    ``Failed``). ``limit_s``: wall-clock seconds after which the work is stopped (``Failed``); ``nice``: the work's
    CPU priority (its lane's)."""
    yield from _each(jobs, lambda job: job.method,
                     lambda job, report: analysis.run_method(clip, job.method, target, job.preset, job.params, seed,
                                                             report), limit_s, nice)


@spaces.GPU(duration=_score_window)
def score_on_gpu(analyses: list[Analysis], limit_s: float | None = None, nice: int = 0
                 ) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """Score each analysis (``analysis.score``: the metrics' forward passes); yields ``Progress``, then the scored
    analyses (or ``Failed``)."""
    yield from _each(analyses, lambda a: a.name, lambda a, report: analysis.score(a), limit_s, nice)


def _more_window(analyses: list[Analysis], limit_s: float | None = None, sensitivity: bool = False,
                 nice: int = 0) -> int:
    return window(more_estimate(analyses[0], sensitivity).seconds)


def more_estimate(a: Analysis, sensitivity: bool = False) -> Estimate:
    """What ``analysis.check_more`` of ``a`` costs, as that many jobs with their metrics: the two maps of the sanity
    checks (with ``sensitivity``, also max-sensitivity's ``SENSITIVITY_SAMPLES``), and ROAD's passes (as many as the
    metrics' insertion and deletion) within the metrics' share."""
    job = Job(a.explanation.method, None, a.explanation.params)
    return estimate(a.clip.model_id, [job] * (2 + SENSITIVITY_SAMPLES * sensitivity))


@spaces.GPU(duration=_more_window)
def more_on_gpu(analyses: list[Analysis], limit_s: float | None = None, sensitivity: bool = False, nice: int = 0
                ) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """``analysis.check_more`` of each analysis; yields ``Progress``, then the analyses with the sanity and ROAD
    values (or ``Failed``)."""
    yield from _each(analyses, lambda a: a.name, lambda a, report: analysis.check_more(a, sensitivity), limit_s,
                     nice)


def analyse(clip: ClipInput, jobs: list[Job], target: int | None, seed: int, nice: int = 0
            ) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """``explain_on_gpu``, then ``score_on_gpu``, with no lane between them (scripts, tests, the app's ``random``
    baseline): ``Progress``, then the scored analyses (or ``Failed``); ``nice`` as theirs."""
    for item in explain_on_gpu(clip, jobs, target, seed, nice=nice):
        if isinstance(item, list):
            yield from score_on_gpu(item, nice=nice)
        else:
            yield item


def _on_cpu(a: Analysis) -> Analysis:
    """The analysis with no tensor left on the GPU (the map and curves already are on the CPU; extras may not be),
    and without the per-channel attribution ``raw``, which the app neither shows nor saves (2.3 MB a clip: less to
    send back from ZeroGPU's worker and to keep for redraws and repeats)."""
    e = a.explanation
    e.extras = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in e.extras.items()}
    e.raw = None
    return a


@spaces.GPU(duration=10)
def top_k_on_gpu(clip: ClipInput, k: int = 5) -> list[tuple[str, float]]:
    """The model's k most probable classes for the clip (one forward: a short GPU window on ZeroGPU)."""
    return analysis.get_model(clip.model_id).top_k(clip.x.to(analysis.DEVICE), k)


def preload_models() -> list[str]:
    """Load the models ZeroGPU can serve now (see the module docstring); returns their card ids."""
    loaded = []
    for card_id in list_cards():
        card = load_card(card_id)
        pinned_hub = card.kind in ("hub", "transformers") and "revision" in card.source
        if (card.kind == "embedded" or pinned_hub) and len(loaded) < analysis.MODELS_KEPT:
            try:
                analysis.get_model(card_id)
                loaded.append(card_id)
            except ModelLoadError as e:
                log.warning("not preloading %s: %s", card_id, e)
    return loaded


SELECTABLE = preload_models() if ON_ZERO_GPU else list_cards()
