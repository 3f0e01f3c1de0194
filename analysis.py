"""One clip, one model, one or more explainers: the explanation, every metric that applies, and the pictures and
files a person keeps (overlay MP4/GIF, saliency .npy, a JSON that reproduces the run).

The app and the command line share this module:

    videoxai explain clip.mp4 --method grad_cam occlusion --out runs/grow
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np
import torch

import render
from explainers import REGISTRY, Explanation, ProgressFn, explain
from explainers.device import configure_cpu
from explainers.metrics import (
    METRICS,
    Curve,
    Ends,
    curve_ends,
    evaluate_map,
    infidelity,
    max_sensitivity,
    perturbed_clip,
    road,
    sanity_checks,
)
from explainers.registry import preset_choices
from zoo import ASSETS
from zoo.architectures import batchnorms_folded
from zoo.cards import InputSpec
from zoo.cli import json_object
from zoo.models import ModelLoadError, VideoClassifier, load_model
from zoo.synthetic import file_digest, ground_truth_for
from zoo.video import PreparedClip, VideoError, destandardise, prepare_clip, seen_size, write_mp4

EXAMPLES_DIR = ASSETS / "examples"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VIDEO_FPS = 4.0          # 16 sampled frames play for 4 s
VIDEO_SCALE = 3          # 112 px model frames are shown at 336 px
STRIP_COLUMNS = 4        # frames per row of the numbered strip (16 frames: 4 rows, numbers readable in the side column)
STRIP_GAP = 2            # white pixels between the strip's frames
OVERLAY = "overlay.mp4"


MODELS_KEPT = 4                 # the three embedded models and the Space's preloaded one (ZeroGPU keeps exactly these)


@lru_cache(maxsize=MODELS_KEPT)
def get_model(card_id: str) -> VideoClassifier:
    """The zoo model on the default device, loaded once per process (the last ``MODELS_KEPT`` used are kept)."""
    return load_model(card_id, DEVICE)


_FOLDED: WeakKeyDictionary[VideoClassifier, VideoClassifier] = WeakKeyDictionary()


def scoring_model(card_id: str) -> VideoClassifier:
    """``get_model``'s model with its batch norms folded into the convolutions before them
    (``zoo.architectures.batchnorms_folded``; kept while that model is): the same outputs to float rounding, with
    faster forwards (docs/performance.md, folded batch norms). The metrics' passes use it; methods, whose hooks
    name the model's layers, use ``get_model``'s."""
    model = get_model(card_id)
    if model not in _FOLDED:
        _FOLDED[model] = batchnorms_folded(model)
    return _FOLDED[model]


@dataclass
class ClipInput:
    """A file made ready for one model, with its ground truth when it is one of the synthetic examples."""

    path: str
    model_id: str
    start_s: float | None
    end_s: float | None
    prepared: PreparedClip
    truth: dict | None
    digest: str = ""          # SHA-256 of the file's bytes: the same clip under any name

    @property
    def x(self) -> torch.Tensor:
        return self.prepared.x

    @property
    def display(self) -> np.ndarray:
        return self.prepared.display


def load_clip(path: str | Path, model_id: str, start_s: float | None = None, end_s: float | None = None) -> ClipInput:
    """Decode and preprocess ``path`` for ``model_id``; raises ``zoo.video.VideoError`` / ``ModelLoadError``."""
    model = get_model(model_id)
    prepared = prepare_clip(path, model.input_spec, start_s or None, end_s or None)
    info = prepared.clip.info
    truth = ground_truth_for(path, prepared.clip.indices, info.display_size[::-1], model.input_spec, (EXAMPLES_DIR,))
    return ClipInput(str(path), model_id, start_s or None, end_s or None, prepared, truth, file_digest(Path(path)))


@dataclass
class Analysis:
    """One method's map of a clip and, once scored, its metrics and insertion/deletion curves (empty until then)."""

    clip: ClipInput
    explanation: Explanation
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, Curve] = field(default_factory=dict)
    scoring_s: float = 0.0      # seconds the metrics took
    timed_alone: bool = True    # whether the step that took the seconds above had the cores to itself

    @property
    def name(self) -> str:
        return self.explanation.method

    @property
    def is_scored(self) -> bool:
        return bool(self.curves)

    def summary(self) -> dict:
        """Everything needed to read and reproduce this run, JSON-serialisable."""
        e, c = self.explanation, self.clip
        command = ["videoxai", "explain", Path(c.path).name, "--model", c.model_id, "--method", e.method,
                   "--target", str(e.target), "--seed", str(e.seed), "--params", json.dumps(e.params)]
        if c.start_s or c.end_s:
            command += ["--start", str(c.start_s or 0), "--end", str(c.end_s or 0)]
        return {"clip": Path(c.path).name, "model": c.model_id, "start_s": c.start_s, "end_s": c.end_s,
                "sampled_frames": c.prepared.clip.indices.tolist(), "explanation": e.summary(),
                "metrics": {k: round(v, 4) for k, v in self.metrics.items()},
                "curves": {k: {"fractions": v.fractions.round(4).tolist(), "probs": v.probs.round(4).tolist()}
                           for k, v in self.curves.items()},
                "command": shlex.join(command)}


def run_method(clip: ClipInput, method: str, target: int | None = None, preset: str | None = "fast",
               params: dict | None = None, seed: int = 0, progress: ProgressFn | None = None,
               max_batch: int | None = None) -> Analysis:
    """The map of the clip by ``method`` (preset, then ``params``), not scored yet (``score``).
    ``max_batch``: clips per batched pass (default by device: 4 on a CPU, 32 on a GPU)."""
    model = get_model(clip.model_id)
    preset = REGISTRY[method].preset_or_none(preset) if method in REGISTRY else None
    return Analysis(clip, explain(model, clip.x, method, target=target, seed=seed, preset=preset,
                                  max_batch=max_batch, progress=progress, **(params or {})))


ENDS_KEPT = 256                 # clips and classes whose curve ends (``curve_ends``) are kept for their next maps
_ends: dict[tuple, Ends] = {}
_ends_lock = threading.Lock()


def score(a: Analysis, max_batch: int | None = None) -> Analysis:
    """The analysis with every metric that applies (insertion/deletion and the saliency metric always; pointing
    games and localisation with ground truth): ``evaluation_forwards()`` forwards, 4 fewer for a clip and class
    scored before (the curves' ends that no map changes, kept for the latest ``ENDS_KEPT``)."""
    e, c, start = a.explanation, a.clip, time.perf_counter()
    key = (c.digest, c.model_id, c.start_s, c.end_s, e.target)
    metrics, curves = evaluate_map(scoring_model(c.model_id), c.x.to(DEVICE), e.saliency, e.target, c.truth,
                                   max_batch=max_batch, ends=_ends.get(key))
    with _ends_lock:
        _ends[key] = curve_ends(curves)
        if len(_ends) > ENDS_KEPT:
            del _ends[next(iter(_ends))]
    return Analysis(c, e, metrics, curves, time.perf_counter() - start)


def check_more(a: Analysis, sensitivity: bool = False) -> Analysis:
    """The analysis with the metrics the app runs only when asked: the two sanity values of
    ``explainers.metrics.sanity_checks`` (two more maps), ROAD's two curves and infidelity (``evaluate_map``'s
    ``extra`` metrics); with ``sensitivity``, max-sensitivity (``SENSITIVITY_SAMPLES`` more maps)."""
    e, model, x = a.explanation, get_model(a.clip.model_id), a.clip.x.to(DEVICE)
    values = sanity_checks(model, x, e.method, e.saliency, e.target, seed=e.seed, **e.params)
    if sensitivity:
        values["max_sensitivity"] = max_sensitivity(model, x, e.method, e.saliency, e.target, seed=e.seed,
                                                    **e.params)
    folded = scoring_model(a.clip.model_id)
    curves = road(folded, x, e.saliency, e.target)
    values.update({k: c.auc for k, c in curves.items()}, infidelity=infidelity(folded, x, e.saliency, e.target))
    return Analysis(a.clip, e, {**a.metrics, **values}, {**a.curves, **curves}, a.scoring_s)


def analyse(clip: ClipInput, method: str, target: int | None = None, preset: str | None = "fast",
            params: dict | None = None, seed: int = 0, progress: ProgressFn | None = None,
            max_batch: int | None = None) -> Analysis:
    """``run_method``, then ``score``: the map and its metrics."""
    return score(run_method(clip, method, target, preset, params, seed, progress, max_batch), max_batch)


def metrics_table(analyses: list[Analysis]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table a person reads down: one row per metric that any analysis has (its name, which
    way is better, each method's value, ★ on the best where there are several methods, what it measures), then the
    time and passes. Columns are the methods (by name). Rates over many clips are left out: one clip's is 0 or 1."""
    keys = [k for k in METRICS if not METRICS[k].over_clips and any(k in a.metrics for a in analyses)]
    header = ["metric", "better", *[REGISTRY[a.name].name for a in analyses], "what it measures"]
    rows = []
    for k in keys:
        spec, values = METRICS[k], [a.metrics.get(k) for a in analyses]
        known = [v for v in values if v is not None]
        best = (max if spec.higher_is_better else min)(known) if len(analyses) > 1 and known else None
        rows.append([spec.name, "higher" if spec.higher_is_better else "lower",
                     *["–" if v is None else f"{v:.3f}{' ★' if v == best else ''}" for v in values], spec.help])
    rows.append(["time", "", *[f"{a.explanation.seconds:.2f} s" for a in analyses], "to compute the map"])
    rows.append(["passes", "", *[f"{a.explanation.forward_passes:,} + {a.explanation.backward_passes:,}"
                                 for a in analyses], "forward + backward passes of the model"])
    return header, rows


# ------------------------------------------------------------------------------------------- pictures
def marked_frames(clip: ClipInput, show_truth: bool = True, scale: int = VIDEO_SCALE) -> np.ndarray:
    """The model's frames enlarged ``scale`` times, with the actor's ground-truth boxes if known and ``show_truth``."""
    frames = render.enlarge(clip.display, scale)
    if show_truth and clip.truth is not None:
        frames = render.draw_boxes(frames, clip.truth["bbox"] * scale, clip.truth["visible"], thickness=2)
    return frames


def seen_strip(clip: ClipInput, spec: InputSpec) -> np.ndarray:
    """The sampled frames, numbered, in rows of ``STRIP_COLUMNS``: as the model sees them, or, where the model
    (input ``spec``) crops them, as decoded with the part it sees outlined in green."""
    frames = clip.prepared.clip.frames
    h, w = frames.shape[1:3]
    seen_h, seen_w = seen_size((h, w), spec)
    strip = partial(render.frame_strip, count=len(frames), gap=STRIP_GAP, columns=STRIP_COLUMNS, numbered=True)
    if (seen_h, seen_w) == (h, w):
        return strip(marked_frames(clip, scale=1))
    top, left = (h - seen_h) // 2, (w - seen_w) // 2
    box = np.tile([left, top, left + seen_w, top + seen_h], (len(frames), 1))
    return strip(render.draw_boxes(frames, box, colour=render.SEEN_COLOUR, thickness=max(2, h // 60)),
                 height=spec.size[0])


def overlay_frames(a: Analysis, cmap: str = "jet", alpha: float = 0.5, show_truth: bool = True,
                   show_structure: bool = True, side_by_side: bool = True, scale: int = VIDEO_SCALE) -> np.ndarray:
    """The heatmap over the model's frames (enlarged ``scale`` times), captioned with the method, optionally next to
    the original; AOSA's tracks and SWAG-V's supervoxel outlines are drawn when ``show_structure`` and the method
    has them."""
    extras = a.explanation.extras
    frames = render.overlay(render.enlarge(a.clip.display, scale), a.explanation.saliency.numpy(), cmap, alpha)
    if show_structure and "supervoxels" in extras:
        frames = render.draw_outlines(frames, render.enlarge(np.asarray(extras["supervoxels"])[..., None],
                                                             scale)[..., 0])
    if show_structure and "tracks" in extras:
        centres = np.asarray(extras["tracks"]) * scale + scale // 2
        frames = render.draw_tracks(frames, centres, np.asarray(extras["tracked"]))
    if show_truth and a.clip.truth is not None:
        frames = render.draw_boxes(frames, a.clip.truth["bbox"] * scale, a.clip.truth["visible"], thickness=2)
    frames = render.caption(frames, f"{a.name} -> {a.explanation.target_label}")
    if not side_by_side:
        return frames
    sources = a.clip.prepared.clip.indices
    counter = [f"what the model sees: frame {t} of {len(sources)} (source {i})" for t, i in enumerate(sources)]
    return render.beside(render.caption(marked_frames(a.clip, show_truth, scale), counter),
                         render.colour_bar(frames, cmap))


def perturbed_strip(a: Analysis, kind: str, fraction: float, count: int = 8) -> np.ndarray:
    """``count`` frames of the insertion or deletion clip after ``fraction`` of the voxels (what the curve scored),
    numbered as in the clip's strip, in rows of 4: one row of 8 was 40 px tall beside the curves."""
    spec = get_model(a.clip.model_id).input_spec
    clip = perturbed_clip(a.clip.x, a.explanation.saliency, fraction, kind)
    return render.frame_strip(render.enlarge(destandardise(clip, spec), 2), count=count, columns=4, numbered=True)


def view(analyses: list[Analysis], cmap: str = "jet", alpha: float = 0.5, show_truth: bool = True,
         show_structure: bool = True) -> np.ndarray:
    """The frames to watch: one method next to the input, or the input and several methods' overlays in a grid
    (3 wide)."""
    if len(analyses) == 1:
        return overlay_frames(analyses[0], cmap, alpha, show_truth, show_structure)
    seen = render.caption(marked_frames(analyses[0].clip, show_truth), "what the model sees")
    return render.tile([seen, *[overlay_frames(a, cmap, alpha, show_truth, show_structure, side_by_side=False)
                                for a in analyses]], columns=3)


def save(analyses: list[Analysis], folder: str | Path, cmap: str = "jet", alpha: float = 0.5, show_truth: bool = True,
         show_structure: bool = True, gif: bool = True) -> dict[str, Path]:
    """Write saliency volumes (.npy), the ``view`` as MP4 (unless ``folder`` already holds it: the app writes it
    before the metrics exist) and, with ``gif``, as GIF, and results.json (metrics, curves, parameters and the
    command that reproduces each run)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for a in analyses:
        files[f"{a.name}.npy"] = folder / f"saliency_{a.name}.npy"
        np.save(files[f"{a.name}.npy"], a.explanation.saliency.numpy())
    video = folder / OVERLAY
    frames = view(analyses, cmap, alpha, show_truth, show_structure) if gif or not video.exists() else None
    files[OVERLAY] = video if video.exists() else write_mp4(video, frames, fps=VIDEO_FPS)
    if gif:
        files["overlay.gif"] = render.write_gif(folder / "overlay.gif", frames, fps=VIDEO_FPS)
    files["results.json"] = folder / "results.json"
    files["results.json"].write_text(json.dumps([a.summary() for a in analyses], indent=1))
    return files


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Explain one clip with one or more methods; write "
                                                            "overlays, maps and metrics.")
    parser.add_argument("clip", type=Path)
    parser.add_argument("--model", default="synth-r2plus1d-small")
    parser.add_argument("--method", nargs="+", default=["grad_cam"], choices=list(REGISTRY))
    parser.add_argument("--target", type=int, default=None, help="class index (default: the top-1 class)")
    parser.add_argument("--preset", default="fast", choices=preset_choices(),
                        help="parameter preset where a method has it ('default': none)")
    parser.add_argument("--params", type=json_object, default={}, help="JSON object of parameter overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=float, default=None, help="segment start (s)")
    parser.add_argument("--end", type=float, default=None, help="segment end (s)")
    parser.add_argument("--cmap", default="jet", choices=render.COLOUR_MAPS)
    parser.add_argument("--out", type=Path, default=Path("runs/analysis"))
    args = parser.parse_args(argv)
    if args.params and len(args.method) > 1:
        parser.error("--params applies to one --method")
    configure_cpu()
    analyses = []
    try:
        clip = load_clip(args.clip, args.model, args.start, args.end)
        for method in args.method:
            analyses.append(a := analyse(clip, method, args.target, args.preset, args.params, args.seed))
            scores = ", ".join(f"{k} {v:.3f}" for k, v in a.metrics.items())
            print(f"{method}: target {a.explanation.target_label}, {a.explanation.seconds:.2f} s, "
                  f"{a.explanation.forward_passes} fwd / {a.explanation.backward_passes} bwd; {scores}")
    except (VideoError, ModelLoadError, ValueError, TypeError) as error:   # a bad file, model, target or parameter
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in save(analyses, args.out, args.cmap).values():
        print(path)
    return 0
