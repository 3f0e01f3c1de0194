"""The papers' tables, regenerated: methods × models × clips of the held-out SynthActions-10 split.

    videoxai benchmark --quick                     # a few minutes on 2 CPU cores
    videoxai benchmark --models synth-r2plus1d-small synth-cnn-lstm --clips 100 --out runs/full

Every (model, clip, method) gives one JSON line in ``<out>/results.jsonl`` (metrics, time, passes, curves), so an
interrupted run continues where it stopped. ``<out>/tables.md`` and ``<out>/results.csv`` are rewritten from all
lines after every run: one table per model with rows = methods and columns = CI ↑, CD ↓, S50 ↓, S75 ↓, S-PT ↑,
T-PT ↑, localisation IoU ↑ and error ↓ (Val / Mean / Energy), median seconds per map and passes, as in [S0]–[S4].
``<out>/report.html`` shows the mean insertion and deletion curves of every method and a gallery of the maps of
the first clip (plotly). ``--join DIR ...`` merges the rows of earlier runs (e.g. a slow method run on its own)
into ``--out`` and writes the reports from them, computing nothing. ``--params '{"ends": "virtual"}'`` sets
parameters of the methods (all of them must take them); its rows are labelled ``method ends=virtual``, so they
sit beside the default ones in a joined table. ``--against METHOD`` adds a table of every method against that one
clip by clip (clips better and worse per metric, two-sided sign test).

The explained class is the clip's ground-truth label (the papers' protocol). A folder of the user's own clips
(``--folder``, any format the zoo decodes) is explained for the label of the clip's ``<name>.json`` ground truth,
else the model's top-1 class. With that file's actor boxes (and action window) a clip also gets the pointing games
and localisation errors; its format is ``zoo.synthetic.ground_truth_for``'s. A file that cannot be decoded gets
rows that say why. ``--manifest`` lists clips and their ground-truth files in a CSV or JSON (``read_manifest``).
``--engine ray`` computes the same rows on a Ray cluster (``benchmarks.ray_engine``, docs/cluster.md).
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from explainers import REGISTRY, explain
from explainers import metrics as M
from explainers.device import configure_cpu
from zoo import synthetic
from zoo.cli import json_object
from zoo.models import load_model
from zoo.video import VideoError, prepare_clip, preprocess

COLUMNS = (("insertion", "CI ↑"), ("deletion", "CD ↓"), ("road_morf", "ROAD MoRF ↓"), ("road_lerf", "LeRF ↑"),
           ("infidelity", "INFD ↓"),
           ("s50", "S50 ↓"), ("s75", "S75 ↓"), ("pointing", "S-PT ↑"),
           ("temporal_pointing", "T-PT ↑"), ("loc_iou_val", "IoU Val ↑"), ("loc_iou_mean", "Mean ↑"),
           ("loc_iou_energy", "Energy ↑"), ("loc_error_val", "Loc. err. Val ↓"), ("loc_error_mean", "Mean ↓"),
           ("loc_error_energy", "Energy ↓"), ("sanity_model", "ρ random model ↓"), ("sanity_reversed", "ρ reversed ↓"),
           ("max_sensitivity", "max-sens. ↓"),
           ("seconds", "median s / map"), ("forwards", "fwd"), ("backwards", "bwd"))
PERCENT = ("loc_error", "pointing", "temporal")     # columns shown in %: shares of frames or clips
QUICK = {"clips": 3, "methods": ["random", "centre", "gradient", "guided_backprop", "grad_cam", "saliency_tubes",
                                 "occlusion", "aosa_approx", "swag_v_ig"]}


@dataclass(frozen=True)
class Clip:
    """A clip of a run, described by value so that a worker on another machine can load it: a synthetic clip's
    seed, or a file with (optionally) its ground-truth file; without one, a ``<name>.json`` beside the file."""
    id: str
    seed: int | None = None
    path: str | None = None
    truth: str | None = None

    def load(self, spec) -> tuple[torch.Tensor, dict | None]:
        """(x, ground truth or None), decoded or rendered now."""
        if self.seed is not None:
            return _synthetic(self.seed, spec)
        prepared = prepare_clip(Path(self.path), spec)
        info = prepared.clip.info
        return prepared.x, synthetic.ground_truth_for(self.path, prepared.clip.indices, info.display_size[::-1],
                                                      spec, truth_file=self.truth)


def clips(count: int, folder: Path | None = None, split: str = "test", manifest: Path | None = None) -> list[Clip]:
    """The first ``count`` clips of ``split`` (``val`` for choosing settings, ``test`` for reporting), then the
    folder's files, then the manifest's."""
    listed = [Clip(f"synth-{seed}", seed=seed) for seed in synthetic.split_seeds(split, count)]
    files = sorted(folder.iterdir()) if folder else []
    listed += [Clip(f"file-{f.name}", path=str(f)) for f in files
               if f.is_file() and not f.name.startswith(".") and f.suffix.lower() != ".json"]
    return listed + (read_manifest(manifest) if manifest else [])


def read_manifest(path: Path) -> list[Clip]:
    """The clips a manifest lists: a CSV with a ``path`` column and optionally a ``truth`` column (a ground-truth
    file, ``zoo.synthetic.ground_truth_for``'s format), or a JSON list of paths or of such objects. Relative paths
    are taken from the manifest's folder; a clip's id is ``file-`` and its path as written. Nothing is decoded
    here: a path that is missing or not a video gets rows that say so."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                entries = list(csv.DictReader(f))
        elif isinstance(data := json.loads(path.read_text()), list):
            entries = [e if isinstance(e, dict) else {"path": e} for e in data]
        else:
            raise TypeError(f"a JSON {type(data).__name__}, not a list")
        listed = [(str(e["path"]).strip(), str(e.get("truth") or "").strip() or None) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a manifest ({error!r}); expected a CSV with a 'path' column (and optionally "
                         f"'truth'), or a JSON list of paths or of {{\"path\": ..., \"truth\": ...}}") from None
    ids = [f"file-{clip}" for clip, _ in listed]
    if len(set(ids)) < len(ids) or "" in (clip for clip, _ in listed):
        raise ValueError(f"{path}: every clip must be listed once, with a path")
    here = path.parent
    return [Clip(i, path=str(here / clip), truth=str(here / truth) if truth else None)
            for i, (clip, truth) in zip(ids, listed)]


def _synthetic(seed: int, spec) -> tuple[torch.Tensor, dict]:
    clip = synthetic.make_clip(seed, "hard")
    truth = {"label": clip.label, "bbox": clip.bbox, "visible": clip.visible, "window": clip.window}
    return preprocess(clip.video, spec)[0], truth


GALLERY_FRAMES, GALLERY_SIZE = (2, 6, 10, 14), 28     # frames of the first clip kept for the report's gallery


def benchmark_row(model, x: torch.Tensor, method: str, truth: dict | None, preset: str, seed: int,
                  gallery: bool = False, params: dict | None = None, sanity: bool = False,
                  extra: bool = False, sensitivity: bool = False) -> dict:
    """One explanation (with ``params`` overriding the preset) and every metric that applies to it; with
    ``gallery``, also four frames of the map at 28×28 (and the actor's boxes on them) for the report; with
    ``sanity``, the two sanity checks (two more maps); ``extra``, ROAD's curves and infidelity; ``sensitivity``,
    max-sensitivity (10 more maps)."""
    target = truth["label"] if truth else None      # None: the model's top-1 class
    settings = {"preset": preset if preset in REGISTRY[method].presets else None, "seed": seed, **(params or {})}
    e = explain(model, x, method, target=target, **settings)
    row, curves = M.evaluate_map(model, x, e.saliency, e.target, truth, extra=extra)
    if sanity:
        row.update(M.sanity_checks(model, x, method, e.saliency, e.target, **settings))
    if sensitivity:
        row["max_sensitivity"] = M.max_sensitivity(model, x, method, e.saliency, e.target, **settings)
    row.update(seconds=e.seconds, forwards=e.forward_passes, backwards=e.backward_passes, target=e.target,
               insertion_curve=curves["insertion"].probs.round(4).tolist(),
               deletion_curve=curves["deletion"].probs.round(4).tolist())
    if gallery:
        frames = [min(f, e.saliency.shape[0] - 1) for f in GALLERY_FRAMES]
        small = torch.nn.functional.interpolate(e.saliency[frames][None], size=(GALLERY_SIZE, GALLERY_SIZE),
                                                mode="area")[0]
        row["gallery"] = small.round(decimals=3).tolist()
        if truth:
            scale = GALLERY_SIZE / np.array(e.saliency.shape[1:])[[1, 0, 1, 0]]
            row["gallery_boxes"] = (np.asarray(truth["bbox"])[frames] * scale).round(1).tolist()
    return row


def method_label(method: str, params: dict | None) -> str:
    """The name a method's rows carry: its id, followed by ``key=value`` for each parameter set by ``--params``."""
    return " ".join([method, *(f"{k}={v}" for k, v in sorted((params or {}).items()))])


@dataclass(frozen=True)
class Job:
    """One row to compute: ``method`` on ``clip`` for ``model``, its rows labelled ``label``; ``gallery`` on the
    first clip of a run."""
    model: str
    clip: Clip
    method: str
    label: str
    gallery: bool


def pending(models: list[str], methods: list[str], listed: list[Clip], out: Path,
            params: dict | None = None) -> tuple[list[dict], list[Job]]:
    """The rows already in ``out`` and the jobs still to do, model by model, clip by clip."""
    out.mkdir(parents=True, exist_ok=True)
    rows = _same_dataset(read_rows(out), out)
    done = {_key(r) for r in rows}
    todo = [Job(m, clip, k, method_label(k, params), index == 0) for m in models
            for index, clip in enumerate(listed) for k in methods
            if (m, clip.id, method_label(k, params)) not in done]
    return rows, todo


def loader(spec, device: str = "cpu"):
    """clip → (x on ``device``, ground truth), the last clip kept: the rows of one clip decode it once."""
    @functools.lru_cache(maxsize=1)
    def load(clip: Clip) -> tuple[torch.Tensor, dict | None]:
        x, truth = clip.load(spec)
        return x.to(device), truth
    return load


def compute_row(model, job: Job, load, preset: str = "fast", seed: int = 0, params: dict | None = None,
                sanity: bool = False, extra: bool = False, sensitivity: bool = False) -> dict:
    """``job``'s row, with ``load`` (``loader``) giving its clip: the metrics, or the reason there are none (a
    clip that cannot be decoded, a method that does not apply to the model, a bad ground-truth file)."""
    try:
        x, truth = load(job.clip)
        row = benchmark_row(model, x, job.method, truth, preset, seed, gallery=job.gallery, params=params,
                            sanity=sanity, extra=extra, sensitivity=sensitivity)
    except VideoError as error:
        row = {"error": str(error)}
    except ValueError as error:
        row = {"error": str(error).split(";")[0]}
    row.update(model=job.model, clip=job.clip.id, method=job.label, preset=preset, seed=seed)
    if params:
        row["params"] = params
    if job.clip.seed is not None:
        row["dataset"] = synthetic.DATASET
    return row


def progress(total: int, log=print):
    """A function to call with each finished row: logs it with the count and the time left."""
    start, count = time.time(), 0

    def report(row: dict) -> None:
        nonlocal count
        count += 1
        eta = (time.time() - start) / count * (total - count)
        log(f"[{count}/{total}] {row['model']} {row['clip']} {row['method']}: {row.get('seconds', 0):.1f} s "
            f"(about {eta / 60:.0f} min left)")
    return report


def run(models: list[str], methods: list[str], n_clips: int, out: Path, preset: str = "fast", seed: int = 0,
        folder: Path | None = None, log=print, device: str = "cpu", params: dict | None = None,
        split: str = "test", sanity: bool = False, extra: bool = False, manifest: Path | None = None,
        sensitivity: bool = False) -> list[dict]:
    """Compute every missing (model, clip, method) row, append it to ``out/results.jsonl``, return all rows.
    Models and clips go to ``device``; maps and metrics come back as on the CPU (seeded masks are drawn on the
    CPU in every method, so a GPU run explains the same perturbations). ``params`` go to every method; the
    rows' method is then ``method_label(method, params)``."""
    rows, todo = pending(models, methods, clips(n_clips, folder, split, manifest), out, params)
    log(f"{len(rows)} rows found in {results_file(out)}, {len(todo)} to compute")
    report = progress(len(todo), log)
    for model_id in dict.fromkeys(job.model for job in todo):
        model = load_model(model_id, device)
        load = loader(model.input_spec, device)
        for job in (j for j in todo if j.model == model_id):
            row = compute_row(model, job, load, preset, seed, params, sanity, extra, sensitivity)
            append_rows(out, [row])
            rows.append(row)
            report(row)
    return rows


def _key(row: dict) -> tuple[str, str, str]:
    return row["model"], row["clip"], row["method"]


def _same_dataset(rows: list[dict], source: Path) -> list[dict]:
    """``rows``, unless some synthetic clip in them was rendered by another version of the dataset (rows from
    before the field existed are v1): their maps and scores belong to other pixels, so they must not mix."""
    other = {r.get("dataset",
                   "SynthActions-10 v1") for r in rows if r["clip"].startswith("synth-")} - {synthetic.DATASET}
    if other:
        raise ValueError(f"{source} holds rows of {', '.join(sorted(other))}; this code renders {synthetic.DATASET}. "
                         f"Start a new --out, or rerun those clips there.")
    return rows


def results_file(out: Path) -> Path:
    return out / "results.jsonl"


def _complete(data: bytes) -> bytes:
    """``data`` up to its last newline: a last line without one is a row cut short by a killed run."""
    return data[:data.rfind(b"\n") + 1]


def read_rows(out: Path) -> list[dict]:
    """The complete rows of a run's ``results.jsonl`` (none if it has none yet)."""
    path = results_file(out)
    lines = _complete(path.read_bytes()).decode().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def append_rows(out: Path, rows: list[dict]) -> None:
    """Add rows to a run's ``results.jsonl``, one JSON line each, after dropping a row cut short."""
    with results_file(out).open("a+b") as f:
        f.seek(0)
        f.truncate(len(_complete(f.read())))
        f.write("".join(json.dumps(row) + "\n" for row in rows).encode())


def join(runs: list[Path], out: Path, n_clips: int | None = None, tags: list[str] | None = None,
         methods: list[str] | None = None) -> list[dict]:
    """Merge the rows of ``runs`` into ``out/results.jsonl``, one per (model, clip, method): rows already in
    ``out`` stay, and otherwise the first run that has a row gives it. With ``n_clips``, only the rows of the
    first ``n_clips`` test clips (and of folder clips) are taken, so that runs of different lengths give one
    table over the same clips. ``tags`` (one per run, "" for none) are added to the method labels of that run's
    rows, as ``--params`` labels them (``occlusion fill=zero``): rows of one method from runs made with different
    settings (a default since changed) then sit side by side and can be compared clip by clip. With ``methods``,
    only their rows are taken. Returns all rows of ``out``."""
    if tags is not None and len(tags) != len(runs):
        raise ValueError(f"{len(tags)} tags for {len(runs)} runs: give one per run ('' for none)")
    out.mkdir(parents=True, exist_ok=True)
    rows = _same_dataset(read_rows(out), out)
    done = {_key(r) for r in rows}
    first = None if n_clips is None else {f"synth-{s}" for s in synthetic.split_seeds("test", n_clips)}
    added = []
    for run_dir, tag in zip(runs, tags or [""] * len(runs)):
        if not results_file(run_dir).exists():
            raise FileNotFoundError(f"{run_dir} has no results.jsonl")
        for row in _same_dataset(read_rows(run_dir), run_dir):
            if first is not None and row["clip"].startswith("synth-") and row["clip"] not in first:
                continue
            if methods is not None and row["method"].split()[0] not in methods:
                continue
            if tag:
                row = {**row, "method": f"{row['method']} {tag}"}
            if _key(row) not in done:
                done.add(_key(row))
                added.append(row)
    append_rows(out, added)
    return rows + added


def summarise(rows: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean of every column per model and method (localisation as error %, pointing games as %); the median of the
    seconds, which are wall time and so take in any pause of the run or load on the machine."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        if "error" in r:
            continue
        cell = table.setdefault(r["model"], {}).setdefault(r["method"], {"n": 0})
        cell["n"] += 1
        for key, _ in COLUMNS:
            if key in r:
                cell.setdefault(key, []).append(r[key])
    for methods in table.values():
        for cell in methods.values():
            for key, _ in COLUMNS:
                if key in cell:
                    scale = 100 if key.startswith(PERCENT) else 1
                    average = np.median if key == "seconds" else np.mean
                    cell[key] = scale * float(average(cell[key]))
    return table


def _in_order(methods, order: list[str]) -> list[str]:
    """``methods`` sorted as in ``order`` (the registry's order), methods not in it last."""
    return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))


def markdown(table: dict, order: list[str]) -> str:
    lines = []
    for model, methods in table.items():
        n = max(c["n"] for c in methods.values())
        columns = [(k, h) for k, h in COLUMNS if any(k in c for c in methods.values())]     # what was measured
        lines += [f"### {model} — {n} clips", "", "| method | " + " | ".join(h for _, h in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for method in _in_order(methods, order):
            cell = methods[method]
            values = ["–" if k not in cell else f"{cell[k]:.0f}" if k in ("forwards", "backwards") else
                      f"{cell[k]:.1f}" if k.startswith(PERCENT) else f"{cell[k]:.2e}" if k == "infidelity" else
                      f"{cell[k]:.3f}" for k, _ in columns]
            name = method if cell["n"] == n else f"{method} ({cell['n']} clips)"    # fewer clips: say so
            lines.append(f"| {name} | " + " | ".join(values) + " |")
        lines.append("")
    return "\n".join(lines)


def paired(rows: list[dict], base: str, order: list[str]) -> str:
    """Each method against ``base`` clip by clip, per model: for every metric, the clips on which the method does
    better and worse than ``base`` (ties left out) and the two-sided sign test's p-value, so a difference of the
    means can be told from one or two clips' worth of chance."""
    from scipy.stats import binomtest

    by_model: dict[str, dict[str, dict[str, dict]]] = {}          # model → method → clip → row
    for r in rows:
        if "error" not in r:
            by_model.setdefault(r["model"], {}).setdefault(r["method"], {})[r["clip"]] = r
    lines = []
    for model, by_method in by_model.items():
        if base not in by_method:
            continue
        reference = by_method[base]
        keys = [k for k in M.METRICS if any(k in r for r in reference.values())]
        lines += [f"### {model} — against {base}: clips better–worse (two-sided sign test p)", "",
                  "| method | clips | " + " | ".join(dict(COLUMNS)[k] for k in keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for method in _in_order(set(by_method) - {base}, order):
            clips = sorted(set(by_method[method]) & set(reference))
            cells = []
            for k in keys:
                sign = 1 if M.METRICS[k].higher_is_better else -1
                diffs = [sign * (by_method[method][c][k] - reference[c][k]) for c in clips
                         if k in by_method[method][c] and k in reference[c]]
                better, worse = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
                p = binomtest(better, better + worse).pvalue if better + worse else 1.0
                cells.append(f"{better}–{worse} ({'<0.001' if p < 0.001 else f'{p:.2g}'})")
            lines.append(f"| {method} | {len(clips)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_reports(rows: list[dict], out: Path, against: list[str] | None = None) -> str:
    """tables.md, results.csv and report.html from all rows; returns the Markdown. With ``against``, the tables
    end with every method compared with each of those clip by clip (``paired``)."""
    table = summarise(rows)
    text = markdown(table, list(REGISTRY))
    for base in against or []:
        text += "\n" + paired(rows, base, list(REGISTRY))
    (out / "tables.md").write_text(text + "\n")
    keys = ["model", "clip", "method", "preset", "seed", "target", *[k for k, _ in COLUMNS], "error"]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    _html(rows, out / "report.html")
    return text


def _html(rows: list[dict], path: Path) -> None:
    """Mean insertion/deletion curves per model and method, then a gallery of the first clip's maps."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [r for r in rows if "error" not in r]
    models = sorted({r["model"] for r in rows})
    fig = make_subplots(rows=max(1, len(models)), cols=2, subplot_titles=[f"{m}: {k}" for m in models
                                                                         for k in ("insertion ↑", "deletion ↓")])
    palette = plotly.colors.qualitative.Dark24
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, model in enumerate(models, 1):
        for method in dict.fromkeys(r["method"] for r in rows if r["model"] == model):
            chosen = [r for r in rows if r["model"] == model and r["method"] == method]
            for j, kind in enumerate(("insertion", "deletion"), 1):
                curve = np.mean([r[f"{kind}_curve"] for r in chosen], 0)
                fig.add_trace(go.Scatter(x=np.linspace(0, 1, len(curve)), y=curve, name=method, legendgroup=method,
                                         line_color=palette[methods.index(method) % len(palette)],
                                         showlegend=(i, j) == (1, 1)), row=i, col=j)
    fig.update_layout(height=400 * max(1, len(models)), title="Mean insertion / deletion curves per method")
    parts = [fig.to_html(full_html=False, include_plotlyjs=True)]
    for model in models:
        shown = [r for r in rows if r["model"] == model and "gallery" in r]
        if shown:
            parts.append(_gallery(shown, model).to_html(full_html=False, include_plotlyjs=False))
    path.write_text("<html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>")


def _gallery(rows: list[dict], model: str):
    """Rows = methods, columns = frames ``GALLERY_FRAMES`` of the first clip: the maps, with the actor's box."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = len(GALLERY_FRAMES)
    fig = make_subplots(rows=len(rows), cols=cols, horizontal_spacing=0.01, vertical_spacing=0.01,
                        row_titles=[r["method"] for r in rows], column_titles=[f"frame {f}" for f in GALLERY_FRAMES])
    for i, r in enumerate(rows, 1):
        for j, frame in enumerate(r["gallery"], 1):
            fig.add_trace(go.Heatmap(z=frame, zmin=0, zmax=1, colorscale="Jet", showscale=False,
                                     hovertemplate=r["method"] + ": %{z:.2f}<extra></extra>"), row=i, col=j)
            for x0, y0, x1, y1 in r.get("gallery_boxes", [])[j - 1:j]:
                fig.add_shape(type="rect", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 - 0.5, y1=y1 - 0.5,
                              line=dict(color="yellow", width=1), row=i, col=j)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_layout(height=130 * len(rows) + 80, width=130 * cols + 200, margin=dict(l=10, r=160, t=60, b=10),
                      title=f"{model}: maps of {rows[0]['clip']} (yellow: the actor's box)")
    return fig


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["synth-r2plus1d-small", "synth-cnn-lstm"])
    parser.add_argument("--methods", nargs="+", choices=list(REGISTRY), default=None,
                        help="default: every method except ep_unsync (T times the cost of EP-3D)")
    parser.add_argument("--clips", type=int, default=None,
                        help="clips per model (default 100; --quick: 3); with --join, the first this many test clips")
    parser.add_argument("--split", default="test", choices=("test", "val"),
                        help="SynthActions-10 clips to explain: test (report) or val (choose settings)")
    parser.add_argument("--sanity", action="store_true",
                        help="also each map's sanity checks (two more maps: with the model re-initialised and with "
                             "the frames reversed); rows already in --out are not recomputed")
    parser.add_argument("--sensitivity", action="store_true",
                        help="also each map's max-sensitivity (10 more maps, of the clip with faint noise)")
    parser.add_argument("--extra-metrics", action="store_true",
                        help="also ROAD (MoRF, LeRF) and infidelity: 123 more forwards per map")
    parser.add_argument("--folder", type=Path, help="also explain every clip in this folder (top-1 class)")
    parser.add_argument("--manifest", type=Path,
                        help="also explain the clips this CSV ('path' and optionally 'truth' columns) or JSON list "
                             "names; relative paths are taken from its folder")
    parser.add_argument("--engine", choices=("serial", "ray"), default="serial",
                        help="ray: the rows on a Ray cluster, one actor per worker (pip install -r "
                             "requirements-ray.txt)")
    parser.add_argument("--address", help="--engine ray: the cluster to join (auto: the one `ray start` made "
                                          "here); default a local one")
    parser.add_argument("--workers", type=int, help="--engine ray: actors per model (default: one per GPU, else "
                                                    "one per --threads cores)")
    parser.add_argument("--preset", default="fast", help="parameter preset where a method has it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['clips']} clips, methods {QUICK['methods']}")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark"))
    parser.add_argument("--device", default="cpu",
                        help="torch device for the models, e.g. cuda (--engine ray: each worker's GPU, if any)")
    parser.add_argument("--params", type=json_object, default={},
                        help="JSON object of parameters for every method given, e.g. '{\"ends\": \"virtual\"}'")
    parser.add_argument("--join", nargs="+", type=Path, metavar="RUN",
                        help="merge these runs' rows into --out and write its tables; compute nothing (with "
                             "--methods, only their rows)")
    parser.add_argument("--tags", nargs="+", metavar="TAG",
                        help="--join: a tag per run added to its method labels ('' for none), e.g. fill=zero for a "
                             "run made while that was the default")
    parser.add_argument("--against", nargs="+", metavar="METHOD",
                        help="also compare every method with each of these clip by clip (wins, losses, sign test); "
                             "a tagged method by its label, e.g. 'occlusion fill=zero'")
    args = parser.parse_args(argv)
    if args.join:
        try:
            rows = join(args.join, args.out, args.clips, args.tags, args.methods)
        except ValueError as error:
            parser.error(str(error))
        print(write_reports(rows, args.out, args.against))
        return 0
    if args.tags:
        parser.error("--tags labels the rows of --join runs")
    methods = args.methods or (QUICK["methods"] if args.quick else [m for m in REGISTRY if m != "ep_unsync"])
    n_clips = args.clips if args.clips is not None else (QUICK["clips"] if args.quick else 100)
    for method in methods:
        try:
            REGISTRY[method].resolve(None, args.params)
        except (TypeError, ValueError) as error:
            parser.error(f"--params: {error}")
    try:
        read_manifest(args.manifest) if args.manifest else None
    except ValueError as error:
        parser.error(f"--manifest: {error}")
    options = dict(preset=args.preset, seed=args.seed, folder=args.folder, params=args.params, split=args.split,
                   sanity=args.sanity, extra=args.extra_metrics, manifest=args.manifest, sensitivity=args.sensitivity)
    started = time.time()
    if args.engine == "ray":
        try:
            from benchmarks import ray_engine
        except ImportError:
            parser.error("--engine ray needs Ray: pip install -r requirements-ray.txt")
        rows = ray_engine.run(args.models, methods, n_clips, args.out, address=args.address, workers=args.workers,
                              threads=args.threads or 1, **options)
    else:
        configure_cpu(args.threads)
        rows = run(args.models, methods, n_clips, args.out, device=args.device, **options)
    print(write_reports(rows, args.out, args.against))
    print(f"finished in {(time.time() - started) / 60:.1f} min; results in {args.out}")
    return 0
