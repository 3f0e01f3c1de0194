"""Gradio app: upload a clip or pick an example, pick a model and an explainer, and see where and when the model
looked, and how faithful that is.

UI wiring only: decoding and models live in ``zoo``, the methods and metrics in ``explainers``, one clip's analysis
(explanation + metrics + files) in ``analysis``, pictures and figures in ``render``. Offline by default: no
analytics (``analytics_enabled=False``), no Hub downloads (``zoo.models.hub_online``: set ``HF_HUB_OFFLINE=0`` to
allow loading Hub models that are not cached yet).

    python app.py [--host 127.0.0.1] [--port 7860]

API endpoints (``gradio_client``): ``/classify``, ``/explain``, ``/compare``, ``/methods`` (see the README).
"""
from __future__ import annotations

import argparse
import atexit
import json
import logging
import math
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import spaces  # before torch (the first-party imports below): ZeroGPU patches CUDA at import

import analysis
import jobs
import render
from analysis import EXAMPLES_DIR, Analysis, ClipInput, load_clip
from explainers import FAMILIES, REGISTRY, methods_by_family
from explainers.device import configure_cpu, release_freed_memory
from explainers.metrics import METRICS, SENSITIVITY_SAMPLES
from explainers.registry import plain, preset_choices
from zoo import ASSETS
from zoo.cards import load_card
from zoo.hub import describe_revision
from zoo.models import ModelLoadError, unavailable
from zoo.video import VideoError, seen_size, write_mp4

log = logging.getLogger("videoxai.app")
DEFAULT_MODEL = "synth-r2plus1d-small"
DEFAULT_METHOD = "grad_cam"
DEFAULT_COMPARE = ["random", "gradient", "grad_cam", "swag_v_ig", "aosa_approx"]
ATTENTION_COMPARE = "attention_rollout"     # joins a comparison on a transformer (``on_model``)
TOP1 = "top-1 class"
WALKTHROUGH_CLIP = EXAMPLES_DIR / "synth_move_right_1000001.mp4"
WALKTHROUGH_METHODS = ["random", "grad_cam", "occlusion"]
LEARN = (ASSETS / "learn.md").read_text()
SKIP = gr.skip()            # "no output changes", yielded while the model works
RETENTION_S = int(os.environ.get("VIDEOXAI_RETENTION_S", 3600))    # results and uploads are deleted after this
MAX_UPLOAD_MB = int(os.environ.get("VIDEOXAI_MAX_UPLOAD_MB", 200))  # larger uploads are refused before stored
RESULTS = Path(tempfile.gettempdir()) / "videoxai-results"
PURGE_EVERY_S = max(60, RETENTION_S // 4)   # how often old results, uploads and Gradio's copies are looked for
KEPT_RESULTS = int(os.environ.get("VIDEOXAI_KEPT_RESULTS", 16))   # analyses kept in memory for redraws
ANSWERS_KEPT = int(os.environ.get("VIDEOXAI_ANSWERS", 40))        # requests whose answers are kept for repeats
# Explanations (Explain, Compare, Learn) share one group whose handlers wait in ``jobs``' lanes, which decide what
# runs (a waiting handler holds no thread between its yields); classifying runs beside them, two at a time.
MAX_QUEUE = 64                     # requests waiting for a handler beyond that; more get Gradio's "queue is full"
MODEL_WORK = {"concurrency_id": "model-work", "concurrency_limit": MAX_QUEUE}
CHEAP = {"concurrency_id": "classify", "concurrency_limit": 2}
UI = {"queue": False, "api_name": False, "show_progress": "hidden"}   # page-only events that need no worker
# Uploads are checked while they stream in (nothing larger is kept). Each request in flight holds one of Gradio's
# worker threads while its handler waits for a step (Gradio's default is 40 threads in all).
LAUNCH = {"max_file_size": f"{MAX_UPLOAD_MB}mb", "max_threads": 2 * MAX_QUEUE}
# Linked views, in the page: one frame position shared by the overlays, the importance plots and the frame strip.
LINK_FRAMES = (f"() => ({(ASSETS / 'frames.js').read_text()})"
               f"({analysis.VIDEO_FPS}, {analysis.STRIP_COLUMNS}, {analysis.STRIP_GAP})")
SWITCH_S = 0.0005   # Python's thread switch interval: the model's threads wait less for the lock between operations
HARDWARE = "a ZeroGPU GPU" if spaces.config.Config.zero_gpu else f"this machine's {analysis.DEVICE.upper()}"



def refuse(message: str) -> gr.Error:
    """An expected refusal (bad input, over budget, stopped): shown to the visitor, logged as one line, no
    traceback (unexpected errors keep Gradio's traceback)."""
    log.info("refused: %s", message)
    return gr.Error(message, print_exception=False)


class Recent:
    """At most ``size`` values by key, none older than ``ttl_s`` (``purge`` drops the older ones), the least recently
    used going first; ``pinned`` values stay besides them. Thread-safe: the store behind ``Kept`` and ``Answers``."""

    def __init__(self, size: int, ttl_s: float = float("inf")):
        self.size, self.ttl_s = size, ttl_s
        self._items: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._pinned: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def put(self, key: Hashable, value: Any, pinned: bool = False) -> None:
        with self._lock:
            if pinned:
                self._pinned[key] = value
                return
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key: Hashable) -> Any | None:
        """The value of ``key``, None if there is none or it is older than ``ttl_s``."""
        with self._lock:
            if key in self._pinned:
                return self._pinned[key]
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            put, value = self._items[key]
        return value if time.monotonic() - put <= self.ttl_s else None

    def forget(self, key: Hashable) -> None:
        """Drop ``key``, pinned or not."""
        with self._lock:
            self._pinned.pop(key, None)
            self._items.pop(key, None)

    def purge(self) -> int:
        """Drop what is older than ``ttl_s`` (pinned values stay); returns how many went."""
        cutoff = time.monotonic() - self.ttl_s
        with self._lock:
            old = [key for key, (put, _) in self._items.items() if put < cutoff]
            for key in old:
                del self._items[key]
        return len(old)


class Kept:
    """The latest analyses, kept for redraws and the step view, under a random key (``Recent``: at most ``size``,
    none older than ``ttl_s``). A session's ``gr.State`` holds only the key, so memory stays bounded however many
    visitors come and go (Gradio keeps a closed session's state for an hour)."""

    def __init__(self, size: int, ttl_s: float):
        self._recent = Recent(size, ttl_s)

    def put(self, results: list[Analysis]) -> str:
        key = secrets.token_hex(8)
        self._recent.put(key, results)
        return key

    def get(self, key: str | None) -> list[Analysis] | None:
        """The analyses of ``key``, None if there is none (no key yet); a refusal if they are no longer kept."""
        if not key:
            return None
        results = self._recent.get(key)
        if results is None:
            raise refuse(f"This result is no longer kept (the server keeps the latest {self._recent.size} for "
                         f"{self._recent.ttl_s / 60:.0f} min); explain again to change its display.")
        return results

    def purge(self) -> int:
        return self._recent.purge()


KEPT = Kept(KEPT_RESULTS, RETENTION_S)


class Answers:
    """The maps and scores of recent requests, by what was asked (``request_key``): the same request again — the
    same clip's bytes under any name, model, segment, methods with their resolved parameters, target and seed — is
    answered without model passes, since every method gives the same map for the same seed (``Recent``: at most
    ``size``, none older than ``ttl_s``, besides the ``pinned`` examples' answers computed at start, with their
    overlays as first displayed). The clip itself is not kept (a repeat brings its own)."""

    def __init__(self, size: int, ttl_s: float = float("inf")):
        self._recent = Recent(size, ttl_s)

    def put(self, key: tuple, results: list[Analysis], pinned: bool = False, overlay: Path | None = None) -> None:
        self._recent.put(key, ([(a.explanation, a.metrics, a.curves) for a in results], overlay), pinned)

    def get(self, key: tuple, clip: ClipInput) -> list[Analysis] | None:
        """The analyses of ``key`` for ``clip`` (the request's own clip, same content), None if not kept."""
        kept = self._recent.get(key)
        return None if kept is None else [Analysis(clip, *a) for a in kept[0]]

    def overlay(self, key: tuple) -> Path | None:
        """The overlay video of ``key``'s answer in the page's first display settings (``DISPLAY``), if one was
        made when it was kept."""
        kept = self._recent.get(key)
        return None if kept is None else kept[1]

    def forget(self, key: tuple) -> None:
        """Drop the answer to ``key``, pinned or not (a benchmark that wants the model to run again)."""
        self._recent.forget(key)

    def purge(self) -> int:
        return self._recent.purge()


ANSWERS = Answers(ANSWERS_KEPT, RETENTION_S)
RANDOM = jobs.Job("random", None, {})   # the baseline a single map is judged against (``verdict``)
WHERE: dict[tuple, str] = {}    # (visitor, endpoint) -> how far their running request got, for Stop's confirmation


def request_key(clip: ClipInput, todo: list[jobs.Job], target: int | None, seed: int) -> tuple:
    """What a request asks, whatever way its parameters were given (a preset or its values spelled out)."""
    methods = []
    for job in todo:
        spec = REGISTRY[job.method]
        values = spec.resolve(spec.preset_or_none(job.preset), job.params)
        methods.append((job.method, json.dumps(values, sort_keys=True, default=str)))
    return clip.digest, clip.model_id, clip.start_s, clip.end_s, tuple(methods), target, seed


DISPLAY = ("jet", 0.5, True, True)     # the page's first display settings: colour map, opacity, truth, structure


def answer_examples(card_id: str = DEFAULT_MODEL, method: str = DEFAULT_METHOD) -> int:
    """Compute and keep the answer to ``method`` (its default parameters, top-1 class, seed 0), its overlay as first
    displayed, and the ``random`` baseline it is judged against for every bundled example, so that a visitor's
    first click on one is answered at once; returns how many examples."""
    examples = sorted(EXAMPLES_DIR.glob("*.mp4"))
    folder = Path(tempfile.mkdtemp(prefix="videoxai-examples-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for i, path in enumerate(examples):
        clip = load_clip(path, card_id)
        for todo in ([jobs.Job(method, None, {})], [RANDOM]):
            *_, results = jobs.analyse(clip, todo, None, 0)
            if not isinstance(results, list):
                continue
            jobs.learn(card_id, results)
            video = None if todo[0] is RANDOM else write_mp4(folder / f"{i}.mp4", analysis.view(results, *DISPLAY),
                                                             fps=analysis.VIDEO_FPS)
            ANSWERS.put(request_key(clip, todo, None, 0), results, pinned=True, overlay=video)
    return len(examples)


def _overlay(analyses: list[Analysis], folder: Path, display: tuple, made: Path | None = None) -> str:
    """The overlay video of ``analyses`` in ``folder``: a copy of ``made`` (rendered at start in the ``DISPLAY``
    settings) when the display is those, rendered otherwise."""
    video = folder / analysis.OVERLAY
    if made is not None and display == DISPLAY:
        shutil.copyfile(made, video)
    else:
        write_mp4(video, analysis.view(analyses, *display), fps=analysis.VIDEO_FPS, preset="ultrafast")
    return str(video)


def checked_number(control: gr.Number, payload: float | str | None) -> float | None:
    """What a client sent to a number field, as a float, or a refusal that names the field: an API caller can send
    text or a value out of range, which Gradio would answer with a generic error or without the field's name."""
    if payload is None or payload == "":
        return None
    try:
        value = float(payload)
    except (TypeError, ValueError):
        raise refuse(f"{control.label}: {payload!r} is not a number.") from None
    if not math.isfinite(value) or (control.minimum is not None and value < control.minimum) or (
            control.maximum is not None and value > control.maximum):
        bounds = [f"{word} {bound:g}" for word, bound in (("at least", control.minimum), ("at most", control.maximum))
                  if bound is not None]
        wanted = " and ".join(bounds) or "that is finite"
        raise refuse(f"{control.label}: {payload!r} is out of range (a number {wanted}).")
    return value


def number_input(**kwargs) -> gr.Number:
    """``gr.Number`` whose input is first checked by ``checked_number`` (not a subclass: Gradio writes a stub file
    next to the module of every component class)."""
    control = gr.Number(**kwargs)
    plain = control.preprocess
    control.preprocess = lambda payload: plain(checked_number(control, payload))
    return control


# ------------------------------------------------------------------------------------------- text
def card_markdown(card_id: str) -> str:
    card = load_card(card_id)
    lines = [f"**{card.name}** — {card.family.replace('_', ' ')}, input {card.input.frames}×"
             f"{card.input.size[0]}×{card.input.size[1]}", "", card.description, "",
             f"Dataset: {card.dataset or 'n/a'} · Licence: {card.license}", ""]
    if card.kind in ("hub", "transformers"):
        lines += [f"Source: {describe_revision(card)}.", ""]
    if card.held_out:
        h, t = card.held_out, card.training
        lines.append(f"Held-out accuracy {h['top1']:.1%} ({h['dataset']} test, {h['clips']} clips); with frames "
                     f"shuffled {h['top1_shuffled_frames']:.1%}. {t['parameters']:,} parameters, "
                     f"{t['file_bytes'] / 1e6:.1f} MB.")
    return "\n".join(lines)


def model_choices() -> list[tuple[str, str]]:
    """The models offered, those that cannot load here (``zoo.models.unavailable``) marked as such."""
    return [(load_card(i).name + (" · not available here" if unavailable(i) else ""), i) for i in jobs.SELECTABLE]


def method_markdown(method: str) -> str:
    spec = REGISTRY[method]
    needs = {"nothing": "nothing from the model", "forward": "only forward passes",
             "gradients": "gradients", "target_layer": "a target layer and its gradients",
             "attention": "a transformer's attention"}[spec.needs]
    return (f"**{spec.name}** · {FAMILIES[spec.family]} · {spec.paper}\n\n{spec.description}\n\n"
            f"Needs {needs}. Cost: {spec.cost}.")


def duration(seconds: float) -> str:
    """A wait, as a person says it."""
    if seconds < 1:
        return "under 1 s"
    return f"about {seconds:,.0f} s" if seconds < 90 else f"about {seconds / 60:,.0f} min"


def method_choices(card_id: str, every: bool = False) -> list[tuple[str, str]]:
    """The methods that can explain ``card_id`` by family, each with how long its fast preset (or its defaults)
    takes here, metrics included (``jobs.estimate``); every method, without times, where the model cannot load.
    ``every``: also those that cannot explain it, without times: what the pickers start with and so what the API
    accepts, since a request may name any model (one a method cannot explain is refused with the reason); the page
    narrows them to the chosen model's as it loads (``on_model``)."""
    try:
        jobs.pass_seconds(card_id)
        model = analysis.get_model(card_id)
        known = True
    except ModelLoadError:
        known = False

    def cost(spec) -> str:
        if not known or spec.not_applicable(model) is not None:
            return ""
        estimate = jobs.estimate(card_id, [jobs.Job(spec.id, spec.preset_or_none("fast"), {})])
        return f" · {duration(estimate.seconds) if estimate.fits else 'too long here'}"
    return [(f"{FAMILIES[family]} · {spec.name}{cost(spec)}", spec.id)
            for family, specs in methods_by_family().items() for spec in specs
            if every or not known or spec.not_applicable(model) is None]


def default_preset(method: str) -> str:
    return "fast" if "fast" in REGISTRY[method].presets else "default"


def resolved_params(method: str, preset: str | None) -> dict:
    """The parameter values a preset gives (JSON-friendly: tuples as lists)."""
    values = REGISTRY[method].resolve(None if preset == "default" else preset, {})
    return {k: plain(v) for k, v in values.items()}


def describe_methods(card_id: str = DEFAULT_MODEL) -> dict:
    """What the API's ``method``, ``preset``, ``params`` and ``target`` take for model ``card_id``: the model (id,
    name, classes) and every method (``MethodSpec.summary``) with ``applies`` (false with ``why_not`` where it
    cannot explain this model; null, with the reason, where the model cannot load here) and, where it applies,
    ``estimate``: seconds, passes and peak memory of one request at its ``fast`` preset (or its defaults), metrics
    included, and whether that fits this machine's budget."""
    if card_id not in jobs.SELECTABLE:
        raise refuse(f"Unknown model {card_id!r}; the models offered here: {', '.join(jobs.SELECTABLE)}.")
    card = load_card(card_id)
    try:
        model = analysis.get_model(card_id)
    except ModelLoadError as e:
        model, why = None, str(e)
    out = []
    for spec in REGISTRY.values():
        entry = spec.summary()
        reason = why if model is None else spec.not_applicable(model)
        entry["applies"] = None if model is None else reason is None
        if reason is not None:
            entry["why_not"] = reason
        elif model is not None:
            cost = jobs.estimate(card_id, [jobs.Job(spec.id, spec.preset_or_none("fast"), {})])
            entry["estimate"] = {"preset": spec.preset_or_none("fast") or "default",
                                 "seconds": round(cost.seconds, 2), "forward": cost.forward, "backward": cost.backward,
                                 "memory_mb": round(cost.memory_mb), "fits": cost.fits}
        out.append(entry)
    return {"model": {"id": card_id, "name": card.name, "classes": list(card.labels)}, "methods": out}


def target_choices(card_id: str) -> list[str]:
    return [TOP1, *[f"{i}: {name}" for i, name in enumerate(load_card(card_id).labels)]]


def parse_target(target: str | int | None, card_id: str) -> int | None:
    """None for the top-1 class, else the class index of "3: move_down", "3", 3 or "move_down" for model
    ``card_id``; a name that is not that class of this model is refused (a choice kept from another model's list
    would otherwise explain whatever class has its number here)."""
    if target in (None, "", TOP1):
        return None
    labels = load_card(card_id).labels
    number, _, name = str(target).partition(":")
    name = name.strip()
    if not name and number.strip() in labels:
        return labels.index(number.strip())
    try:
        index = int(number)
    except ValueError:
        index = None
    if index is None or (name and 0 <= index < len(labels) and labels[index] != name):   # past the end: said later
        raise refuse(f"Class to explain: {target!r} is not a class of this model; pick one from the list.")
    return index


def parse_seed(seed: float | str | None) -> int:
    """The seed as a whole number in [0, 2^32); a clear error otherwise."""
    try:
        value = float(seed or 0)
    except (TypeError, ValueError):
        value = -1.0
    if not value.is_integer() or not 0 <= value < 2**32:
        raise refuse(f"Seed: {seed!r} is not a whole number from 0 to 4294967295.")
    return int(value)


def parse_params(params) -> dict:
    """The parameter overrides: a JSON object of name: value (None or empty for the preset's values)."""
    if params in (None, ""):
        return {}
    if not isinstance(params, dict):
        raise refuse('Parameters must be a JSON object of name: value, e.g. {"steps": 16}.')
    return params


def domain_notice(clip: ClipInput) -> str | None:
    """A notice when the clip is plainly outside what the model was trained on: a model whose card names a narrow
    ``domain`` shown a clip that is not a bundled example and not at the model's frame size."""
    card = load_card(clip.model_id)
    size = tuple(clip.prepared.clip.info.display_size)
    if not card.domain or clip.truth is not None or size == card.input.size[::-1]:
        return None
    return (f"⚠️ **Outside what this model knows.** {card.name} was trained only on {card.domain}. This "
            f"{size[0]}×{size[1]} clip is not one, so the predictions say what the model does with it, not what "
            f"happens in it.")


def input_note(clip: ClipInput) -> str:
    """What of each frame the model sees: the whole frame resized (squeezed when the shapes differ), or its
    centre, cropped after resizing."""
    spec = load_card(clip.model_id).input
    width, height = clip.prepared.clip.info.display_size
    seen_h, seen_w = seen_size((height, width), spec)
    to = f"{spec.size[1]}×{spec.size[0]}"
    if (seen_h, seen_w) != (height, width):
        return f"The model sees the centre {seen_w}×{seen_h} of each frame (the rest is cropped), resized to {to}."
    if (height, width) == tuple(spec.size):
        return "The model sees each whole frame at its own size."
    squeezed = " (squeezed: the aspect ratio is not kept)" if width * spec.size[0] != height * spec.size[1] else ""
    return f"The model sees each whole frame resized to {to}{squeezed}."


def clip_notes(clip: ClipInput) -> str:
    notes = [notice] if (notice := domain_notice(clip)) else []
    notes += [f"⚠️ {w}" for w in clip.prepared.clip.warnings]
    if clip.truth is not None:
        window = clip.truth["window"]
        span = f"sampled frames {window[0]}–{window[1]}" if window else "none of the sampled frames"
        name = f"**{clip.truth['class_name']}**, " if clip.truth["class_name"] else ""
        notes.append(f"Ground truth: {name}action in {span} (yellow boxes: the actor).")
    info = clip.prepared.clip.info
    width, height = info.display_size
    rate = f"about {info.fps:.2f} fps (variable frame rate)" if info.variable_rate else f"{info.fps:.2f} fps"
    turned = f", turned {info.rotation}° as its metadata asks" if info.rotation else ""
    notes.append(f"{Path(clip.path).name}: {width}×{height}{turned}, {rate}, {info.frames} frames; "
                 f"sampled frames {clip.prepared.clip.indices.tolist()}. {input_note(clip)}")
    return "\n\n".join(notes)


SATURATED = 0.9     # a curve's end at or above this probability: the metric cannot tell maps apart on that clip
SAME = 0.01         # AUCs closer than this are "about the same"


def verdict(analyses: list[Analysis], random: Analysis | None = None) -> list[str]:
    """Plain-language lines on scored analyses: whether insertion and deletion can separate maps on this clip (the
    blurred clip alone, or the clip with everything deleted, already scores high), and each method against the
    ``random`` baseline (given, or among them)."""
    first = analyses[0]
    lines = []
    start, end = first.curves["insertion"].probs[0], first.curves["deletion"].probs[-1]
    if start >= SATURATED:
        lines.append(f"Insertion cannot separate methods on this clip: the blurred clip alone already scores "
                     f"p = {start:.2f}.")
    if end >= SATURATED:
        lines.append(f"Deletion cannot separate methods on this clip: with every voxel deleted it still scores "
                     f"p = {end:.2f}.")
    baseline = random or next((a for a in analyses if a.name == "random"), None)
    for a in analyses if baseline is not None else []:
        if a is baseline:
            continue
        said = []
        for key in ("deletion", "insertion"):
            gain = a.metrics[key] - baseline.metrics[key]
            gain = gain if METRICS[key].higher_is_better else -gain
            said.append(f"{key} about the same as random" if abs(gain) < SAME else
                        f"{key} {abs(gain):.2f} {'better' if gain > 0 else 'worse'} than random")
        lines.append(f"{REGISTRY[a.name].name}: {', '.join(said)} (AUC).")
    return lines


def result_markdown(analyses: list[Analysis], random: Analysis | None = None) -> str:
    lines = []
    for a in analyses:
        e = a.explanation
        scores = (f" Insertion AUC {a.metrics['insertion']:.3f} (higher is better), deletion AUC "
                  f"{a.metrics['deletion']:.3f} (lower is better)." if a.is_scored else "")
        lines.append(f"**{REGISTRY[e.method].name}** explained **{e.target_label}** (p = {e.target_prob:.3f}) in "
                     f"{e.seconds:.2f} s with {e.forward_passes} forward and {e.backward_passes} backward passes "
                     f"(seed {e.seed}).{scores}")
    if analyses[0].is_scored:
        lines += verdict(analyses, random)
    else:
        lines.append("*Scoring how faithful the map is (insertion, deletion, S50/S75)…*")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------------------------- handlers
def _load(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None,
          progress: gr.Progress | None = None) -> ClipInput:
    if not video_path:
        raise refuse("Upload a clip or pick an example first.")
    if card_id not in jobs.SELECTABLE:
        raise refuse(f"Model {card_id!r} is not offered here; pick one of the list.")
    if progress is not None:
        progress(0.0, desc=f"Loading {load_card(card_id).name} and decoding the clip")
    try:
        return load_clip(video_path, card_id, start_s, end_s)
    except (VideoError, ModelLoadError) as e:
        raise refuse(str(e)) from None


def classify(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None,
             progress: gr.Progress = gr.Progress()):
    """Top-5 predictions, the sampled frames as a strip, and notes (warnings, ground truth) for one clip."""
    clip = _load(video_path, card_id, start_s, end_s, progress)
    top = dict(jobs.top_k_on_gpu(clip, 5))
    return top, analysis.seen_strip(clip, load_card(card_id).input), clip_notes(clip)


def preview(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None):
    """``classify`` as soon as a clip or model is chosen; nothing while no clip is loaded."""
    return classify(video_path, card_id, start_s, end_s) if video_path else (None, None, "")


@dataclass(frozen=True)
class Step:
    """What ``_analyse`` has to show at one point: the analyses (explained, or scored), the scored ``random`` map of
    the same clip and class to judge them against (once known), and their overlay made at start (an example's
    answer: ``Answers.overlay``)."""

    analyses: list[Analysis]
    random: Analysis | None = None
    overlay: Path | None = None


def _analyse(clip: ClipInput, todo: list[jobs.Job], target, seed, endpoint: str, progress: gr.Progress,
             request: gr.Request | None = None) -> Generator:
    """Run the model work in two steps, each in its lane (``jobs.explain_on_gpu``, then ``jobs.score_on_gpu``),
    showing the place in line and the progress of each. Yields nothing-changed updates meanwhile (each a point
    where a Stop, a cancel or a dropped connection closes this generator and so stops the work), then a ``Step``
    with the analyses once explained (not scored), and one once scored (a request answered before, ``ANSWERS``:
    the same two at once); for one method other than ``random``, the scored ones with the random map to judge
    them."""
    unknown = [job.method for job in todo if job.method not in REGISTRY]
    if unknown:
        raise refuse(f"Unknown method {unknown[0]!r}.")
    try:
        cost = jobs.estimate(clip.model_id, todo)
    except (ValueError, TypeError) as e:
        raise refuse(f"{REGISTRY[todo[0].method].name}: {e}") from None
    if not cost.fits:
        raise refuse(f"This request needs {cost.describe()}: {cost.over(HARDWARE)}. Choose the fast preset, fewer "
                     f"steps, masks or iterations, a coarser grid, larger strides, or a one-pass method (gradient, "
                     f"Grad-CAM).")
    target, seed = parse_target(target, clip.model_id), parse_seed(seed)
    key = request_key(clip, todo, target, seed)
    limit = lambda seconds: jobs.time_limit(seconds, cost.budget)
    visitor = request.session_hash if request else None
    where = (visitor, endpoint)
    try:
        with jobs.visitor_slot(visitor, endpoint):
            scored = ANSWERS.get(key, clip)
            if scored is not None:
                progress(None, desc="Answered before: shown again without running the model")
                yield Step([Analysis(a.clip, a.explanation) for a in scored], overlay=ANSWERS.overlay(key))
            else:
                explained = yield from _in_lane(cost.lane, "Explaining", cost.explaining, progress, where,
                                                lambda nice: jobs.explain_on_gpu(clip, todo, target, seed,
                                                                                 limit(cost.explaining), nice))
                jobs.learn(clip.model_id, explained)
                scoring = _in_lane(jobs.SCORING, "Scoring", cost.scoring, progress, where,
                                   lambda nice: jobs.score_on_gpu(explained, limit(cost.scoring), nice))
                try:
                    if not jobs.ON_ZERO_GPU:    # scoring starts (or takes its place in line) while the overlay
                        next(scoring)           # is rendered and sent; on ZeroGPU a start waits for a GPU
                    progress(None, desc="Rendering the overlay")
                    yield Step(explained)
                    scored = yield from scoring
                finally:
                    scoring.close()
                jobs.learn(clip.model_id, scored)
                ANSWERS.put(key, scored)
                progress(None, desc="Rendering the curves, the table and the downloads")
            random = None
            if len(todo) == 1 and todo[0].method != "random":
                random = _kept(clip, [RANDOM], target, 0)
                if random is None:
                    yield Step(scored)
                    random = yield from _random_baseline(clip, target, progress, where)
                    if random is None:
                        return
            yield Step(scored, None if random is None else random[0])
    except jobs.TooMany as e:
        raise refuse(str(e)) from None
    finally:
        WHERE.pop(where, None)


def _kept(clip: ClipInput, todo: list[jobs.Job], target: int | None, seed: int) -> list[Analysis] | None:
    return ANSWERS.get(request_key(clip, todo, target, seed), clip)


def _random_baseline(clip: ClipInput, target: int | None, progress: gr.Progress, where: tuple) -> Generator:
    """The scored ``random`` map of the clip and class (seed 0), computed in the scoring lane and kept in
    ``ANSWERS`` like any answer; None if it could not be had."""
    try:
        kept = yield from _in_lane(jobs.SCORING, "Scoring the random baseline to compare with",
                                   jobs.scoring_seconds(clip.model_id, 1), progress, where,
                                   lambda nice: jobs.analyse(clip, [RANDOM], target, 0, nice))
    except gr.Error:
        return None
    ANSWERS.put(request_key(clip, [RANDOM], target, 0), kept)
    return kept


def remaining(seconds: float, elapsed: float, fraction: float) -> float:
    """Seconds left of a step estimated at ``seconds`` that is ``fraction`` done after ``elapsed``: from its own pace
    once a tenth is done, from the estimate before."""
    if fraction >= 0.1:
        return elapsed / fraction * (1 - fraction)
    return max(seconds - elapsed, 0.0)


def _in_lane(lane: jobs.Lane, stage: str, seconds: float, progress: gr.Progress, where: tuple, start) -> Generator:
    """The items of ``start(nice)`` (a ``jobs`` step, at the lane's priority) once its turn comes in ``lane``, shown
    as ``stage`` with its progress and the time left; yields ``SKIP`` meanwhile and returns the step's analyses.
    ``WHERE[where]`` says how far it got (for the Stop button's confirmation)."""
    work, began = lane.run(start), None
    try:
        for item in work:
            if isinstance(item, jobs.Waiting):
                WHERE[where] = f"while waiting to start {stage.lower()}"
                progress(0.0, desc=f"{stage}: waiting for {item.ahead} "
                                   f"{'request' if item.ahead == 1 else 'requests'} ahead ({item.lane} lane; about "
                                   f"{seconds:,.0f} s once it starts)")
                yield SKIP
            elif isinstance(item, jobs.Progress):
                began = began or time.perf_counter()
                elapsed = time.perf_counter() - began
                done = f"{item.message}, " if item.message else ""
                WHERE[where] = f"{stage.lower()} ({done}{item.fraction:.0%} done after {elapsed:.0f} s)"
                progress(item.fraction, desc=f"{stage}: {done}{duration(remaining(seconds, elapsed, item.fraction))} "
                                             "left")
                yield SKIP
            elif isinstance(item, jobs.Failed):
                raise refuse(item.message)
            else:
                return item
    finally:
        work.close()


def stop_confirmation(endpoint: str) -> Callable:
    """The Stop button's handler for the requests of ``endpoint`` (the run itself is cancelled by the click): how
    far it got, and the run button usable again."""
    def stopped(request: gr.Request = None) -> tuple:
        where = WHERE.pop((request.session_hash, endpoint), None) if request is not None else None
        return gr.update(interactive=True), f"**Stopped** {where or 'before it started'}. Nothing was changed."
    return stopped


_WRITING: set[Path] = set()     # result folders of requests still running, which a purge leaves however old


@contextmanager
def writing_to(folder: Path) -> Iterator[Path]:
    """``folder`` kept from ``purge_results`` while the request that writes to it runs: made at its start, it can
    be older than ``RETENTION_S`` by the time a long run's files are written."""
    resolved = folder.resolve()
    _WRITING.add(resolved)
    try:
        yield folder
    finally:
        _WRITING.discard(resolved)


def purge_results(cache: Path | None = None, keep: frozenset[Path] = frozenset()) -> None:
    """Remove what is older than ``RETENTION_S``: result folders (but those of running requests, ``writing_to``),
    and in Gradio's cache folder ``cache`` the uploads and the copies of outputs, but for ``keep`` (the examples).
    Gradio's own ``delete_cache`` (same clock) misses the copies it makes for a session whose outputs were updated
    (a handler's skip yields), so those go by age."""
    cutoff, spared = time.time() - RETENTION_S, keep | _WRITING
    for old in [*RESULTS.glob("*/*"), *(cache.glob("*/*") if cache else [])]:
        try:
            if old.stat().st_mtime >= cutoff or old.resolve() in spared:
                continue
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
                if not any(old.parent.iterdir()):
                    old.parent.rmdir()
        except OSError:           # removed meanwhile (its visitor left), or its folder refilled
            continue


def keep_purging(demo: gr.Blocks | None = None, every_s: float = PURGE_EVERY_S) -> threading.Event:
    """``purge_results`` every ``every_s`` seconds in a daemon thread (with ``demo``'s cache folder, keeping the
    files its components keep), and the kept analyses and answers older than ``RETENTION_S`` dropped, so disk and
    memory go back down when visitors stop; setting the returned event ends it."""
    stop = threading.Event()
    cache = Path(demo.GRADIO_CACHE) if demo is not None else None
    keep = frozenset(Path(f).resolve() for block in (demo.blocks.values() if demo is not None else [])
                     for f in getattr(block, "keep_in_cache", ()))

    def loop() -> None:
        while not stop.wait(every_s):
            purge_results(cache, keep)
            if KEPT.purge() + ANSWERS.purge():
                release_freed_memory()
    threading.Thread(target=loop, name="videoxai-purge", daemon=True).start()
    return stop


def results_folder(prefix: str, request: gr.Request | None = None) -> Path:
    """A new folder for one request's files, in its visitor's folder (removed when they leave: ``forget_visitor``),
    after ``purge_results``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    purge_results()
    visitor = RESULTS / (request.session_hash if request and request.session_hash else "api")
    visitor.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=visitor))


def forget_visitor(request: gr.Request) -> None:
    """When a visitor closes or reloads the page: remove their result files (Gradio has its own copies)."""
    if request.session_hash:
        shutil.rmtree(RESULTS / request.session_hash, ignore_errors=True)


def _outputs(step: Step, folder: Path, cmap: str, alpha: float, show_truth: bool, show_structure: bool,
             shown: tuple | None = None):
    """Overlay video, importance and curve figures, metrics table, text (judged against the step's ``random`` if
    known) and downloads of a step's analyses. Before they are scored: the overlay (written to ``folder``, or copied
    from the step's), the importance figure and the text, the rest empty; once scored: all of them, the overlay and
    importance reused from ``shown`` (the outputs before scoring) when given. The GIF is made only when asked for
    (``gif_download``)."""
    analyses = step.analyses
    clip = analyses[0].clip
    if shown:
        video, importance = shown[:2]
    else:
        importance = render.frame_importance_figure(
            {a.name: a.explanation.frame_importance.numpy() for a in analyses},
            clip.truth["window"] if clip.truth else None, clip.prepared.clip.indices)
        video = _overlay(analyses, folder, (cmap, alpha, show_truth, show_structure), step.overlay)
    if not analyses[0].is_scored:
        return video, importance, None, None, result_markdown(analyses), None
    files = analysis.save(analyses, folder, cmap, alpha, show_truth, show_structure, gif=False)
    curves = render.curves_figure({a.name: a.curves for a in analyses})
    header, rows = analysis.metrics_table(analyses)
    return (video, importance, curves, pd.DataFrame(rows, columns=header), result_markdown(analyses, step.random),
            [str(p) for p in files.values()])


def metric_widths(methods: int) -> list[str]:
    """Column widths of a metrics table of ``methods`` methods (metric, better, each method, what it measures): wide
    enough that a method's name breaks between words, never inside one (Gradio's own widths broke "salienc|y"); the
    table scrolls sideways where the page is narrower."""
    return ["180px", "70px", *["124px"] * methods, "420px"]


def compare_widths(methods: list[str]):
    """The Compare table's column widths for the methods ticked (a page update, not part of the API's answer)."""
    return gr.update(column_widths=metric_widths(len(methods or [])))


def _explained(steps: Generator, folder: Path, cmap: str, alpha: float, show_truth: bool, show_structure: bool):
    """The outputs of ``_analyse``'s steps: unchanged while it works, the overlay once explained, everything once
    scored (then with the key of the analyses in ``KEPT``), with a verdict against ``random`` once it is known."""
    shown = None
    with writing_to(folder):
        for item in steps:
            if item is SKIP:
                yield SKIP
                continue
            if item.random is not None and shown is not None and shown[-1] is not SKIP:   # scored: the verdict
                shown = (*shown[:4], result_markdown(item.analyses, item.random), *shown[5:])
            elif not item.analyses[0].is_scored:
                shown = (*_outputs(item, folder, cmap, alpha, show_truth, show_structure), SKIP)
            else:
                shown = (*_outputs(item, folder, cmap, alpha, show_truth, show_structure, shown),
                         KEPT.put(item.analyses))
            yield shown


def explain_clip(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None, method: str,
                 preset: str, target: str, seed: float, params: dict | None, cmap: str = "jet", alpha: float = 0.5,
                 show_truth: bool = True, show_structure: bool = True, progress: gr.Progress = gr.Progress(),
                 request: gr.Request = None):
    """Explain one clip with one method: overlay video, per-frame importance, insertion/deletion curves, metrics,
    a summary, downloads (saliency .npy, overlay MP4/GIF, results.json) and the key of the analysis in ``KEPT``.
    A generator: it yields unchanged outputs while the model works, the overlay and importance as soon as the map
    exists, then everything once the metrics are computed."""
    clip = _load(video_path, card_id, start_s, end_s, progress)
    job = jobs.Job(method, None if preset == "default" else preset, parse_params(params))
    steps = _analyse(clip, [job], target, seed, "/explain", progress, request)
    yield from _explained(steps, results_folder("explain-", request), cmap, alpha, show_truth, show_structure)


def compare_clips(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None,
                  methods: list[str], target: str, seed: float, cmap: str = "jet", alpha: float = 0.5,
                  show_truth: bool = True, progress: gr.Progress = gr.Progress(), request: gr.Request = None,
                  endpoint: str = "/compare"):
    """Several methods (each at its ``fast`` preset, each once) on the same clip: a grid of overlays, one metrics
    table, all curves in one figure. A generator, as ``explain_clip``."""
    if not methods:
        raise refuse("Tick at least one method to compare.")
    clip = _load(video_path, card_id, start_s, end_s, progress)
    todo = [jobs.Job(m, default_preset(m) if m in REGISTRY else None, {}) for m in dict.fromkeys(methods)]
    steps = _analyse(clip, todo, target, seed, endpoint, progress, request)
    yield from _explained(steps, results_folder("compare-", request), cmap, alpha, show_truth, False)


def walkthrough(progress: gr.Progress = gr.Progress(), request: gr.Request = None):
    """The Learn tab's guided example: a clip whose answer is known, explained by a baseline and two methods."""
    for outputs in compare_clips(str(WALKTHROUGH_CLIP), DEFAULT_MODEL, None, None, WALKTHROUGH_METHODS, TOP1, 0,
                                 progress=progress, request=request, endpoint="the walk-through"):
        yield outputs if outputs is SKIP else outputs[:-1]


def redraw(key: str | None, cmap: str, alpha: float, show_truth: bool, show_structure: bool,
           request: gr.Request = None):
    """The overlay video again with other display settings (no model passes)."""
    results = KEPT.get(key)
    if not results:
        return None
    frames = analysis.view(results, cmap, alpha, show_truth, show_structure)
    return str(write_mp4(results_folder("view-", request) / "view.mp4", frames, fps=analysis.VIDEO_FPS))


def gif_download(key: str | None, cmap: str, alpha: float, show_truth: bool, show_structure: bool,
                 request: gr.Request = None) -> list[str] | None:
    """Every download of the kept analyses ``key`` with the overlay as a GIF too (made now, as displayed)."""
    results = KEPT.get(key)
    if not results:
        raise refuse("Explain a clip first; the GIF is made from its overlay.")
    files = analysis.save(results, results_folder("files-", request), cmap, alpha, show_truth, show_structure)
    return [str(p) for p in files.values()]


SANE_RHO, ORDER_RHO = 0.5, 0.9     # ρ below which a map depends on the weights; above which it ignores the order


def more_checks(key: str | None, progress: gr.Progress = gr.Progress(), request: gr.Request = None) -> Generator:
    """The checks run only when asked (``analysis.check_more``), in a lane like any model work: the sanity checks'
    two Spearman ρ, ROAD's two AUCs, infidelity and max-sensitivity (left out, saying why, where its maps would not
    fit the budget), in a table that says what each means."""
    results = KEPT.get(key)
    if not results:
        raise refuse("Explain a clip first; these checks test that explanation.")
    a = results[0]
    with_sensitivity = jobs.more_estimate(a, sensitivity=True)
    sensitivity = with_sensitivity.fits
    cost = with_sensitivity if sensitivity else jobs.more_estimate(a)
    if not cost.fits:
        raise refuse(f"These checks of this map need {cost.describe()}: {cost.over(HARDWARE)}. Try them on a "
                     f"cheaper preset or method.")
    visitor = request.session_hash if request else None
    where = (visitor, "/checks")
    try:
        with jobs.visitor_slot(visitor, "/checks"):
            (checked,) = yield from _in_lane(cost.lane, "Checking", cost.seconds, progress, where,
                                             lambda nice: jobs.more_on_gpu([a], jobs.time_limit(cost.seconds,
                                                                                               cost.budget),
                                                                           sensitivity, nice))
    except jobs.TooMany as e:
        raise refuse(str(e)) from None
    finally:
        WHERE.pop(where, None)
    m = checked.metrics
    model, order = m["sanity_model"], m["sanity_reversed"]
    rows = [
        ("ρ with the map of the same model, every layer re-initialised", f"{model:.2f}",
         "the map depends on what the model learnt" if model < SANE_RHO else
         "**the map barely changes when the model is destroyed: it does not explain this model**"),
        ("ρ with the map of the clip played backwards (frames put back in order)", f"{order:.2f}",
         "the map ignores the order of the frames, which tells moving left from moving right"
         if order >= ORDER_RHO else "the map changes with the order of the frames, as the action does"),
        ("ROAD, most relevant first (lower is better)", f"{m['road_morf']:.3f}", METRICS["road_morf"].help),
        ("ROAD, least relevant first (higher is better)", f"{m['road_lerf']:.3f}",
         "the map ranks what the model needs above what it does not" if m["road_lerf"] > m["road_morf"] else
         "**removing the least salient voxels first hurts as much: the ranking is not the model's**"),
        ("Infidelity (lower is better)", f"{m['infidelity']:.2e}", METRICS["infidelity"].help),
        ("Max-sensitivity (lower is better)", f"{m['max_sensitivity']:.3f}", METRICS["max_sensitivity"].help)
        if sensitivity else ("Max-sensitivity", "–", f"not run: its {SENSITIVITY_SAMPLES} more maps would need "
                                                     f"{with_sensitivity.describe()}: "
                                                     f"{with_sensitivity.over(HARDWARE)}")]
    whole = '<span style="white-space:nowrap">{}</span>'.format    # a narrow column broke "-0.07" after "-0.0"
    yield "\n".join([f"**Checks of {REGISTRY[a.name].name}**", "", f"| check | {whole('value')} | what it says |",
                     "|---|---|---|", *(f"| {check} | {whole(value)} | {says} |" for check, value, says in rows)])


def redraw_compared(key: str | None, cmap: str, alpha: float, show_truth: bool, request: gr.Request = None):
    """``redraw`` for Compare (its grid has no tracks or supervoxels)."""
    return redraw(key, cmap, alpha, show_truth, False, request)


def show_step(key: str | None, kind: str, step: int):
    """The perturbed clip at one step of the insertion or deletion curve, and the curves with that step marked."""
    results = KEPT.get(key)
    if not results:
        return None, None
    a = results[0]
    fraction = float(a.curves[kind].fractions[int(step)])
    figure = render.curves_figure({r.name: r.curves for r in results}, fraction)
    p = a.curves[kind].probs[int(step)]
    return (gr.update(value=analysis.perturbed_strip(a, kind, fraction),
                      label=f"{kind} after {fraction:.0%} of the voxels: p({a.explanation.target_label}) = {p:.3f}"),
            figure)


def cost_line(card_id: str, method: str, preset: str, params: dict | None) -> str:
    """What the chosen settings will cost here, shown before the visitor clicks (``jobs.estimate``)."""
    try:
        job = jobs.Job(method, None if preset == "default" else preset, parse_params(params))
        cost = jobs.estimate(card_id, [job])
    except (ValueError, TypeError, ModelLoadError, gr.Error) as e:
        return f"⚠️ {e}"
    if not cost.fits:
        return f"⚠️ Needs {cost.describe()}: {cost.over(HARDWARE)}."
    return (f"{duration(cost.seconds).capitalize()} on {HARDWARE}, metrics included ({cost.forward:,} forward and "
            f"{cost.backward:,} backward passes).")


def busy() -> dict:
    """A run button while its request is under way (the Stop button and the end of the request enable it)."""
    return gr.update(interactive=False)


def idle() -> dict:
    return gr.update(interactive=True)


def on_method(method: str):
    preset = default_preset(method)
    return (method_markdown(method), gr.update(choices=preset_choices(method), value=preset),
            resolved_params(method, preset))


def on_model(card_id: str, method: str, methods: list[str]):
    """The card, classes and method estimates of a newly picked model (or of the default, at page load); a chosen
    method that cannot explain it gives way to Grad-CAM, and a comparison without the attention family gets
    attention rollout where the model has attention."""
    choices = method_choices(card_id)
    offered = [m for _, m in choices]
    compared = [m for m in methods or [] if m in offered]
    if ATTENTION_COMPARE in offered and not any(REGISTRY[m].family == "attention" for m in compared):
        compared.append(ATTENTION_COMPARE)
    return (card_markdown(card_id), gr.update(choices=target_choices(card_id), value=TOP1),
            gr.update(choices=choices, value=method if method in offered else DEFAULT_METHOD),
            gr.update(choices=choices, value=compared))


# ------------------------------------------------------------------------------------------- layout
def parameter_controls(method: str, preset: str, params: gr.JSON) -> None:
    """One control per registry parameter of ``method`` (values from ``preset``); each edit updates ``params``."""
    values = resolved_params(method, preset if preset in preset_choices(method) else default_preset(method))
    for p in REGISTRY[method].params:
        value, text = values[p.name], {"label": p.name, "info": p.help}
        if p.kind == "choice":
            control = gr.Dropdown(list(p.choices), value=value, **text)
        elif p.kind == "bool":
            control = gr.Checkbox(value=value, **text)
        elif p.kind in ("int", "float"):
            control = number_input(value=value, minimum=p.minimum, maximum=p.maximum,
                                precision=0 if p.kind == "int" else None, **text)
        else:
            control = gr.Textbox(value=", ".join(map(str, value)) if isinstance(value, list) else value, **text)

        def update(v, current, name=p.name, kind=p.kind):
            if kind in ("ints", "floats"):
                v = [float(s) if kind == "floats" else int(s) for s in str(v).replace(",", " ").split()]
            return {**(current or {}), name: v}
        control.change(update, [control, params], params, api_name=False, queue=False)


def display_controls():
    with gr.Row():
        cmap = gr.Dropdown(list(render.COLOUR_MAPS), value=DISPLAY[0], label="Colour map", scale=1)
        alpha = gr.Slider(0, 1, value=DISPLAY[1], step=0.05, label="Heatmap opacity", scale=2)
        truth = gr.Checkbox(value=DISPLAY[2], label="Ground-truth boxes (examples)")
    return cmap, alpha, truth


def result_panel(prefix: str, methods: int, status: gr.Markdown | None = None,
                 under_curves: Callable[[], Any] | None = None) -> tuple[tuple, Any]:
    """The outputs of an analysis of ``methods`` methods, the overlay first; ``status`` (the summary) when the caller
    placed it already; ``under_curves`` builds controls right under the insertion/deletion curves. Returns the
    outputs and what ``under_curves`` returned (None without it)."""
    video = gr.Video(label="Where the model looked", show_label=False, autoplay=True, loop=True, height=300,
                     elem_id=f"{prefix}-overlay")
    summary = status or gr.Markdown(elem_id=f"{prefix}-summary")
    with gr.Row():
        importance = gr.Plot(label="Per-frame importance", elem_id=f"{prefix}-importance", min_width=320)
        with gr.Column(min_width=320):
            curves = gr.Plot(label="Insertion / deletion", elem_id=f"{prefix}-curves")
            beside = under_curves() if under_curves is not None else None
    table = gr.Dataframe(label="Metrics", interactive=False, wrap=True, column_widths=metric_widths(methods))
    files = gr.File(label="Downloads: saliency volume (.npy), overlay (MP4), results.json", file_count="multiple",
                    elem_id=f"{prefix}-files")
    return (video, importance, curves, table, summary, files), beside


def gif_button(prefix: str) -> gr.Button:
    return gr.Button("Add the overlay as a GIF to the downloads", size="sm", elem_id=f"{prefix}-gif")


def run_panel(label: str, prefix: str, methods: int, under_curves: Callable[[], Any] | None = None
              ) -> tuple[gr.Button, gr.Button, tuple, gr.Button, Any]:
    """The run and Stop buttons, the summary right under them (where the progress shows), the result panel and
    the GIF button of a tab that runs analyses."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=f"{prefix}-button", scale=2)
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop", scale=1)
    out, beside = result_panel(prefix, methods, gr.Markdown(elem_id=f"{prefix}-summary", min_height=40),
                               under_curves)
    return run, stop, out, gif_button(prefix), beside


def clip_column(examples: list[str]):
    """The clip, its examples, the model and what the model predicts (the left column; first on a phone)."""
    video = gr.Video(label="Clip", sources=["upload"], height=220, elem_id="clip")
    model = gr.Dropdown(model_choices(), value=DEFAULT_MODEL, label="Model", elem_id="model")
    gr.Examples(examples, inputs=[video], label="Examples (SynthActions-10 test clips with ground truth)",
                examples_per_page=12)
    gr.Examples(sorted(str(p) for p in (EXAMPLES_DIR / "real").glob("*.mp4")), inputs=[video],
                label="Real clips (no ground truth; see assets/examples/real/README.md)")
    label = gr.Label(num_top_classes=5, label="Top-5 predictions")
    notes = gr.Markdown(elem_id="clip-notes")
    gr.Markdown("The model's frames, numbered as in the overlay (click one to show it there; green: the part "
                "the model sees):", elem_id="clip-strip-title")
    strip = gr.Image(show_label=False, type="numpy", elem_id="clip-strip")
    with gr.Accordion("Segment, class to explain, seed", open=False):
        with gr.Row():
            start = number_input(label="Segment start (s)", value=0, minimum=0)
            end = number_input(label="Segment end (s), 0 = end of clip", value=0, minimum=0)
        run_classify = gr.Button("Classify this segment", size="sm")
        target = gr.Dropdown(target_choices(DEFAULT_MODEL), value=TOP1, label="Class to explain",
                             allow_custom_value=True)
        seed = number_input(value=0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed (stochastic methods)")
    with gr.Accordion("Model card", open=False):
        card = gr.Markdown(card_markdown(DEFAULT_MODEL))
    return video, model, label, strip, notes, start, end, run_classify, target, seed, card


def build_demo() -> gr.Blocks:
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.mp4"))
    with gr.Blocks(title="Where did the video model look?", analytics_enabled=False,
                   delete_cache=(PURGE_EVERY_S, RETENTION_S)) as demo:
        gr.Markdown("## Where did the video model look?\nPick an example or upload a clip, then **Explain** its "
                    "prediction with one method or **Compare** several. New here? Open **Learn**. Models run on "
                    f"{HARDWARE}.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=340):
                video, model, label, strip, notes, start, end, run_classify, target, seed, card = clip_column(
                    examples)
            with gr.Column(scale=2, min_width=340), gr.Tabs():
                with gr.Tab("Explain"):
                    with gr.Row():
                        method = gr.Dropdown(method_choices(DEFAULT_MODEL, every=True), value=DEFAULT_METHOD,
                                             label="Explainer", scale=3, elem_id="method")
                        preset = gr.Radio(preset_choices(), value=default_preset(DEFAULT_METHOD), label="Preset",
                                          scale=1)
                    cost = gr.Markdown(cost_line(DEFAULT_MODEL, DEFAULT_METHOD, default_preset(DEFAULT_METHOD),
                                                 None), elem_id="explain-cost")
                    def step_controls() -> tuple:     # the perturbed clip at a step, beside the curves it marks
                        with gr.Row():
                            kind = gr.Radio(["insertion", "deletion"], value="deletion", label="Show the clip of")
                            step = gr.Slider(0, 28, value=0, step=1, label="at step (of 28)")
                        return kind, step, gr.Image(label="Perturbed clip", type="numpy", elem_id="explain-perturbed")
                    run_explain, stop_explain, out, make_gif, (kind, step, perturbed) = run_panel(
                        "Explain", "explain", 1, step_controls)
                    with gr.Accordion("More checks: sanity (does the map depend on the model and the frames' "
                                      "order?), ROAD, infidelity and max-sensitivity", open=False):
                        run_checks = gr.Button(f"Run the checks ({2 + SENSITIVITY_SAMPLES} more maps, 123 more "
                                               f"forward passes)", size="sm", elem_id="checks-button")
                        checks_out = gr.Markdown(elem_id="checks-result")
                    with gr.Accordion("Display", open=False):
                        cmap, alpha, truth = display_controls()
                        structure = gr.Checkbox(value=DISPLAY[3], label="AOSA tracks / SWAG-V supervoxels")
                    with gr.Accordion("About this method", open=False):
                        about = gr.Markdown(method_markdown(DEFAULT_METHOD))
                    with gr.Accordion("Advanced settings", open=False):
                        params = gr.JSON(resolved_params(DEFAULT_METHOD, default_preset(DEFAULT_METHOD)),
                                         label="Parameters in effect", render=False)
                        gr.render(inputs=[method, preset])(lambda m, p: parameter_controls(m, p, params))
                        params.render()
                    explained = gr.State()

                with gr.Tab("Compare"):
                    methods = gr.CheckboxGroup(method_choices(DEFAULT_MODEL, every=True), value=DEFAULT_COMPARE,
                                               label="Methods (each at its fast preset)")
                    run_compare, stop_compare, c_out, c_make_gif, _ = run_panel("Compare", "compare",
                                                                                len(DEFAULT_COMPARE))
                    with gr.Accordion("Display", open=False):
                        c_cmap, c_alpha, c_truth = display_controls()
                    compared = gr.State()

                with gr.Tab("Learn"):
                    gr.Markdown(LEARN)
                    run_walk = gr.Button("Run the walk-through", variant="primary")
                    w_out, _ = result_panel("learn", len(WALKTHROUGH_METHODS))

        inputs = [video, model, start, end]
        off_main = jobs.off_main     # handlers that run torch ops, kept out of Gradio's long-lived threads
        model.change(off_main(on_model), [model, method, methods], [card, target, method, methods], api_name=False)
        demo.load(off_main(on_model), [model, method, methods], [card, target, method, methods], api_name=False)
        run_classify.click(off_main(classify), inputs, [label, strip, notes], api_name="classify", **CHEAP)
        gr.api(off_main(describe_methods), api_name="methods", **CHEAP)
        for trigger in (video.change, model.change):
            trigger(off_main(preview), inputs, [label, strip, notes], api_name=False, **CHEAP)
        method.change(on_method, method, [about, preset, params], api_name=False)
        demo.load(on_method, method, [about, preset, params], api_name=False)
        preset.change(lambda m, p: resolved_params(m, p), [method, preset], params, api_name=False)
        params.change(cost_line, [model, method, preset, params], cost, **UI)
        ev = run_explain.click(busy, None, run_explain, **UI).then(
            off_main(explain_clip), [*inputs, method, preset, target, seed, params, cmap, alpha, truth, structure],
            [*out, explained], api_name="explain", show_progress_on=out[4], **MODEL_WORK)
        ev.failure(idle, None, run_explain, **UI)
        ev.then(idle, None, run_explain, **UI).then(off_main(show_step), [explained, kind, step], [perturbed, out[2]],
                                                    api_name=False)
        stop_explain.click(stop_confirmation("/explain"), None, [run_explain, out[4]], cancels=[ev], **UI)
        for control in (cmap, alpha, truth, structure):
            control.change(off_main(redraw), [explained, cmap, alpha, truth, structure], out[0], api_name=False)
        make_gif.click(off_main(gif_download), [explained, cmap, alpha, truth, structure], out[5], api_name=False)
        run_checks.click(off_main(more_checks), explained, checks_out, api_name=False, show_progress_on=checks_out,
                         **MODEL_WORK)
        for control in (kind, step):
            control.change(off_main(show_step), [explained, kind, step], [perturbed, out[2]], api_name=False)

        run_compare.click(compare_widths, methods, c_out[3], **UI)
        ev = run_compare.click(busy, None, run_compare, **UI).then(
            off_main(compare_clips), [*inputs, methods, target, seed, c_cmap, c_alpha, c_truth], [*c_out, compared],
            api_name="compare", show_progress_on=c_out[4], **MODEL_WORK)
        ev.failure(idle, None, run_compare, **UI)
        ev.then(idle, None, run_compare, **UI)
        stop_compare.click(stop_confirmation("/compare"), None, [run_compare, c_out[4]], cancels=[ev], **UI)
        c_make_gif.click(off_main(gif_download), [compared, c_cmap, c_alpha, c_truth, gr.State(False)], c_out[5],
                         api_name=False)
        for control in (c_cmap, c_alpha, c_truth):
            control.change(off_main(redraw_compared), [compared, c_cmap, c_alpha, c_truth], c_out[0], api_name=False)

        run_walk.click(off_main(walkthrough), None, list(w_out), api_name=False, **MODEL_WORK)
        demo.load(None, js=LINK_FRAMES)
        demo.unload(forget_visitor)
    return demo


def configure_server(threads: int | None = None) -> None:
    """The process settings the server runs with (``main``, and benchmarks that start the app in their own
    process): torch's threads (when given), two glibc heaps (each request works in a new thread: a quick and a long
    lane) and a short thread switch interval."""
    configure_cpu(arenas=2)
    if threads:
        jobs.configure_threads(threads)
    sys.setswitchinterval(SWITCH_S)


def main() -> None:
    parser = argparse.ArgumentParser(description="Explain video classifiers in the browser.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_server()
    demo = jobs.in_own_thread(build_demo)     # its estimates run the model: not in the main thread (jobs.off_main)
    keep_purging(demo)
    if not jobs.ON_ZERO_GPU:          # ZeroGPU runs model work only inside a visitor's request
        threading.Thread(target=answer_examples, name="videoxai-examples", daemon=True).start()
    demo.queue(default_concurrency_limit=1, max_size=MAX_QUEUE).launch(
        server_name=args.host, server_port=args.port, **LAUNCH)


if __name__ == "__main__":
    main()
