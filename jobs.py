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
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import spaces  # before torch (the first-party imports below): ZeroGPU patches CUDA at import

import analysis
from analysis import Analysis, ClipInput
from explainers import REGISTRY, Cancelled, ProgressFn
from zoo.cards import list_cards, load_card
from zoo.models import ModelLoadError

log = logging.getLogger(__name__)

ON_ZERO_GPU = spaces.config.Config.zero_gpu
POLL_S = 0.25            # the longest a cancel waits for the generator to be at a yield
GPU_CAP_S = 60           # one request's GPU window; ZeroGPU may scale it 1.5x, below a signed-out visitor's 2 min


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


def run_cancellable(work: Callable[[ProgressFn], Any], poll_s: float = POLL_S) -> Generator[Any, None, None]:
    """Run ``work(report)`` in a thread; yield ``Progress`` at least every ``poll_s`` while it runs, then its result.

    Closing the generator makes ``report`` return False, so explainers stop with ``Cancelled`` at their next
    progress report; the thread is not waited for (a close may come from the server's event loop)."""
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()
    last = Progress(0.0, "starting")

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
            try:
                item = updates.get(timeout=poll_s)
            except queue.Empty:
                yield last
                continue
            if isinstance(item, Progress):
                last = item
                yield item
            elif item[0] == "done":
                yield item[1]
                return
            else:
                raise item[1]
    finally:
        stop.set()


def _duration(clip: ClipInput, jobs: list[Job], target: int | None, seed: int) -> int:
    return GPU_CAP_S


@spaces.GPU(duration=_duration)
def analyse_on_gpu(clip: ClipInput, jobs: list[Job], target: int | None,
                   seed: int) -> Generator[Progress | Failed | list[Analysis], None, None]:
    """Explain and score ``clip`` with each job in turn; yields ``Progress``, then the analyses (or ``Failed``)."""
    def work(report: ProgressFn) -> list[Analysis] | Failed:
        results = []
        for i, job in enumerate(jobs):
            prefix = f"[{i + 1}/{len(jobs)}] {job.method}: " if len(jobs) > 1 else ""

            def scaled(fraction: float, message: str, i: int = i, prefix: str = prefix) -> bool:
                return report((i + fraction) / len(jobs), prefix + message)
            try:
                results.append(analysis.analyse(clip, job.method, target, job.preset, job.params, seed, scaled))
            except Cancelled:
                return Failed("Stopped. Nothing was changed; run it again when you like.")
            except (ValueError, TypeError) as e:
                return Failed(f"{REGISTRY[job.method].name}: {e}")
        return results
    yield from run_cancellable(work)


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
