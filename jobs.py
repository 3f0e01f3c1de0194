"""The app's model work, shaped for ZeroGPU and for cancellation.

A request is decoded on the CPU (``analysis.load_clip``), its model work (explanation and metric passes) runs in
``analyse_on_gpu`` — the only function that holds a GPU on ZeroGPU — and its pictures and files are made on the CPU
afterwards. ``analyse_on_gpu`` is a generator: it yields progress while the work runs in a thread and then the
result, so closing it (Gradio does on Stop, on a client's cancel; ZeroGPU forwards that to its worker) stops the
work at its next progress report. Its arguments and results are plain data (picklable: ZeroGPU sends them to a
forked worker).

On ZeroGPU (``SPACES_ZERO_GPU`` set) the selectable models are loaded at import onto ``cuda``, as ZeroGPU requires:
the embedded ones and the Hub models that the Space preloads (cards pinned to a commit, found in the cache), at
most ``analysis.get_model``'s cache size, so none is ever evicted. Elsewhere every card is selectable and models
load on first use.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import spaces  # before torch: ZeroGPU patches CUDA at import
import torch

import analysis
from analysis import Analysis, ClipInput
from explainers import REGISTRY, Cancelled, ProgressFn
from explainers.device import default_batch
from explainers.metrics import evaluation_forwards
from zoo.cards import list_cards, load_card
from zoo.models import ModelLoadError

log = logging.getLogger(__name__)

ON_ZERO_GPU = spaces.config.Config.zero_gpu
POLL_S = 0.25            # the longest a cancel waits for the generator to be at a yield
GPU_CAP_S = 60           # one request's GPU window; ZeroGPU may scale it 1.5x, below a signed-out visitor's 2 min
MAX_SECONDS = float(os.environ.get("VIDEOXAI_MAX_SECONDS", 300))   # one request's budget off ZeroGPU
SETUP_S = 5.0            # a request's fixed cost on ZeroGPU: worker start, moving the clip
OVERRUN_S = 15.0         # slack on top of twice the estimate before a run is stopped
QUICK_S = float(os.environ.get("VIDEOXAI_QUICK_S", 5))      # requests estimated under this take the quick lane
PER_VISITOR = int(os.environ.get("VIDEOXAI_PER_VISITOR", 2))  # analyses one visitor may have running or waiting
# Seconds per pass unit (a forward; a backward counts two) of a 787,242-parameter model on a 16×112×112 clip on a
# GPU, from the H100 figure of docs/performance.md (EP-3D fast: 903 forwards + 900 backwards in about 7 s). On
# ZeroGPU it is the prior, scaled by the model's parameter count, until a run of that model measures its own.
GPU_UNIT_S, GPU_UNIT_PARAMS = 0.0026, 787_242


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


def run_cancellable(work: Callable[[ProgressFn], Any], poll_s: float = POLL_S,
                    limit_s: float | None = None) -> Generator[Any, None, None]:
    """Run ``work(report)`` in a thread; yield ``Progress`` at least every ``poll_s`` while it runs, then its result
    (``TimedOut`` instead, if it ran past ``limit_s`` and was stopped).

    Closing the generator makes ``report`` return False, so explainers stop with ``Cancelled`` at their next
    progress report; the thread is not waited for (a close may come from the server's event loop). Passing the
    time limit does the same, and the generator waits for the work to end."""
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()
    last = Progress(0.0, "starting")
    deadline = None if limit_s is None else time.perf_counter() + limit_s

    def report(fraction: float, message: str) -> bool:
        updates.put(Progress(fraction, message))
        return not stop.is_set()

    def target() -> None:
        try:
            updates.put(("done", work(report)))
        except BaseException as e:   # handed to the generator, which re-raises it in the caller's thread
            updates.put(("raised", e))

    thread = threading.Thread(target=target, name="videoxai-job", daemon=True)
    thread.start()
    try:
        while True:
            if deadline is not None and time.perf_counter() > deadline:
                stop.set()
            try:
                item = updates.get(timeout=poll_s)
            except queue.Empty:
                yield last
                continue
            if isinstance(item, Progress):
                last = item
                yield item
            elif item[0] == "done":
                yield TimedOut(limit_s) if stop.is_set() else item[1]
                return
            else:
                raise item[1]
    finally:
        stop.set()


class Lane:
    """A first-come, first-served line in which at most ``slots`` requests run at once.

    The app has two (``QUICK``, ``LONG``): a request's lane follows from its estimate, so a one-pass explanation is
    served while an EP or occlusion run goes on, and long runs take turns. Written here rather than as two Gradio
    concurrency groups because one endpoint (``/explain``) serves both kinds."""

    def __init__(self, name: str, slots: int):
        self.name, self.slots = name, slots
        self._cond = threading.Condition()
        self._line: list[object] = []
        self._running: set[object] = set()

    def _free(self, ticket: object) -> bool:
        return len(self._running) < self.slots and self._line[0] is ticket

    def run(self, start: Callable[[], Iterator], poll_s: float = POLL_S) -> Generator:
        """Yield ``Waiting`` (at least every ``poll_s``) until it is this request's turn, then the items of
        ``start()``; the lane is left when that ends or the generator is closed (waiting or running)."""
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        try:
            while True:
                with self._cond:
                    if self._cond.wait_for(lambda: self._free(ticket), poll_s):
                        self._line.pop(0)
                        self._running.add(ticket)
                        break
                    ahead = self._line.index(ticket) + len(self._running)
                yield Waiting(ahead, self.name)
            work = start()
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


QUICK, LONG = Lane("quick", 1), Lane("long", 1)


class TooMany(Exception):
    """The visitor already has ``PER_VISITOR`` analyses running or waiting."""


_held: Counter[str] = Counter()
_held_lock = threading.Lock()


@contextmanager
def visitor_slot(visitor: str | None, limit: int = PER_VISITOR):
    """Hold one of a visitor's ``limit`` places for the duration of a request (None: no visitor, no limit);
    raises ``TooMany`` when they are all taken."""
    if visitor is None:
        yield
        return
    with _held_lock:
        if _held[visitor] >= limit:
            raise TooMany(f"You already have {limit} analyses running or waiting; wait for one to finish or stop "
                          f"one.")
        _held[visitor] += 1
    try:
        yield
    finally:
        with _held_lock:
            _held[visitor] -= 1
            if not _held[visitor]:
                del _held[visitor]


@dataclass(frozen=True)
class Estimate:
    """What a request will cost, known before it runs."""

    forward: int
    backward: int
    seconds: float
    budget: float

    @property
    def fits(self) -> bool:
        return self.seconds <= self.budget

    @property
    def lane(self) -> Lane:
        return QUICK if self.seconds <= QUICK_S else LONG

    def describe(self) -> str:
        return (f"about {self.seconds:,.0f} s ({self.forward:,} forward and {self.backward:,} backward passes "
                f"of the model)")


_unit_s: dict[str, float] = {}          # card id -> seconds per pass unit, measured on this process's device
_slowdown: dict[tuple[str, str], float] = {}    # (card id, method) -> seconds taken / seconds its passes predict


def _units(forward: int, backward: int) -> int:
    return forward + 2 * backward


def unit_seconds(card_id: str) -> float:
    """Seconds per pass unit of a model: measured once on this device (a batched forward + backward), or on
    ZeroGPU, where the main process has no GPU, the parameter-scaled prior until a run measures it."""
    if card_id not in _unit_s:
        model = analysis.get_model(card_id)
        if ON_ZERO_GPU:
            params = sum(p.numel() for p in model.parameters())
            _unit_s[card_id] = GPU_UNIT_S * max(1.0, params / GPU_UNIT_PARAMS)
        else:
            _unit_s[card_id] = _measure(model)
    return _unit_s[card_id]


def _measure(model) -> float:
    spec = model.input_spec
    batch = default_batch(analysis.DEVICE)
    x = torch.randn(batch, 3, spec.frames, *spec.size, device=analysis.DEVICE, requires_grad=True)
    seconds = []
    for _ in range(2):                       # the first pass also allocates; the second is the one that counts
        start = time.perf_counter()
        model(x).sum().backward()
        seconds.append(time.perf_counter() - start)
    return seconds[-1] / (batch * _units(1, 1))


def forget() -> None:
    """Drop every measured seconds-per-pass and slowdown (the next estimates start from measurement or prior)."""
    _unit_s.clear()
    _slowdown.clear()


def learn(card_id: str, results: list[Analysis]) -> None:
    """Remember how long each method's runs took against their pass-count estimate (runs of 100+ units, where
    latency is small): a method's own work (masks, flow, supervoxels) makes it slower per pass than one batched
    forward + backward, and on ZeroGPU the prior per unit is only a guess until then."""
    for a in results:
        e = a.explanation
        units = _units(e.forward_passes, e.backward_passes)
        if units >= 100:
            _slowdown[(card_id, e.method)] = e.seconds / (units * unit_seconds(card_id))


def estimate(clip: ClipInput, jobs: list[Job]) -> Estimate:
    """Passes and seconds of the explanations and their metrics, from the registry's pass counts, this device's
    seconds per pass and what earlier runs of the method took."""
    shape = tuple(clip.x.shape[-3:])
    unit = unit_seconds(clip.model_id)
    forward = backward = 0
    seconds = 0.0
    for job in jobs:
        spec = REGISTRY[job.method]
        f, b = spec.count(spec.resolve(spec.preset_or_none(job.preset), job.params), shape)
        forward, backward = forward + f + evaluation_forwards(), backward + b
        slowdown = _slowdown.get((clip.model_id, job.method), 1.0)
        seconds += unit * (_units(f, b) * slowdown + evaluation_forwards())
    if ON_ZERO_GPU:
        return Estimate(forward, backward, SETUP_S + seconds, GPU_CAP_S)
    return Estimate(forward, backward, seconds, MAX_SECONDS)


def _duration(clip: ClipInput, jobs: list[Job], target: int | None, seed: int, limit_s: float | None = None) -> int:
    """The GPU window ZeroGPU reserves: the estimate with a margin, never above the cap."""
    return int(min(GPU_CAP_S, 1.5 * estimate(clip, jobs).seconds + 1))


@spaces.GPU(duration=_duration)
def analyse_on_gpu(clip: ClipInput, jobs: list[Job], target: int | None, seed: int,
                   limit_s: float | None = None) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """Explain and score ``clip`` with each job in turn; yields ``Progress``, then the analyses (or ``Failed``).
    ``limit_s``: wall-clock seconds after which the work is stopped (``Failed``)."""
    def work(report: ProgressFn) -> list[Analysis] | Failed:
        results = []
        for i, job in enumerate(jobs):
            prefix = f"[{i + 1}/{len(jobs)}] {job.method}: " if len(jobs) > 1 else ""

            def scaled(fraction: float, message: str, i: int = i, prefix: str = prefix) -> bool:
                return report((i + fraction) / len(jobs), prefix + message)
            try:
                results.append(_on_cpu(analysis.analyse(clip, job.method, target, job.preset, job.params, seed,
                                                        scaled)))
            except Cancelled:
                return Failed("Stopped. Nothing was changed; run it again when you like.")
            except (ValueError, TypeError) as e:
                return Failed(f"{REGISTRY[job.method].name}: {e}")
        return results
    for item in run_cancellable(work, limit_s=limit_s):
        if isinstance(item, TimedOut):
            yield Failed(f"Stopped after {item.seconds:.0f} s: the run took far longer than its estimate. Nothing "
                         f"was changed; choose a cheaper setting.")
        else:
            yield item


def time_limit(cost: Estimate) -> float:
    """Wall-clock seconds a request may run: twice its estimate plus ``OVERRUN_S``, never more than twice the
    budget."""
    return min(2 * cost.budget, 2 * cost.seconds + OVERRUN_S)


def _on_cpu(a: Analysis) -> Analysis:
    """The analysis with no tensor left on the GPU (the map and curves already are on the CPU; extras may not be)."""
    e = a.explanation
    e.extras = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in e.extras.items()}
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
