"""Does every metric separate a right map from a wrong one? On held-out SynthActions-10 clips, the oracle (the
actor's box volume inside the action window, ``explainers.metrics.box_volume``) must score better than ``random``
and ``centre`` on every metric by more than the standard error of the paired difference, and the inverted oracle
(1 − oracle) worse than the oracle by as much. A metric that fails says nothing about the explainers it ranks.

    python -m benchmarks.separation --clips 100 --models synth-r2plus1d-small synth-cnn-lstm [--split val]
        [--no-extra] [--deletion-end blur]

Prints one Markdown table per model (rows = metrics; the means of the four maps, the oracle's margin over each
floor ± its standard error, the verdict); ``--out FILE`` also writes them there.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from benchmarks.faithfulness import PERCENT, _synthetic
from explainers import explain
from explainers import metrics as M
from explainers.device import configure_cpu
from zoo import synthetic
from zoo.models import load_model

MAPS = ("oracle", "inverted", "random", "centre")
FLOORS = ("random", "centre")


def maps_of(model, x: torch.Tensor, truth: dict, seed: int) -> dict[str, torch.Tensor]:
    """The four maps of one clip: the ground truth, its inverse and the two baselines."""
    oracle = M.box_volume(tuple(x.shape[2:]), truth["bbox"], truth["visible"], truth["window"])
    out = {"oracle": oracle, "inverted": 1 - oracle}
    for floor in FLOORS:
        out[floor] = explain(model, x, floor, target=truth["label"], seed=seed).saliency
    return out


def scores(model_id: str, n_clips: int, split: str = "test", seed: int = 0, log=print,
           extra: tuple[str, ...] = M.EXTRA, deletion_end: str = "mean") -> dict[str, list[dict]]:
    """Every metric of every map on the first ``n_clips`` clips of ``split`` (of the extra ones, the groups in
    ``extra``; deletion into ``deletion_end``): {map: [metrics per clip]}."""
    model = load_model(model_id)
    out: dict[str, list[dict]] = {name: [] for name in MAPS}
    for i, clip_seed in enumerate(synthetic.split_seeds(split, n_clips)):
        x, truth = _synthetic(clip_seed, model.input_spec)
        for name, saliency in maps_of(model, x, truth, seed).items():
            metrics, _ = M.evaluate_map(model, x, saliency, truth["label"], truth, extra=extra,
                                        deletion_end=deletion_end)
            out[name].append(metrics)
        log(f"{model_id}: clip {i + 1}/{n_clips}")
    return out


def paired_margin(better: list[dict], worse: list[dict], key: str) -> tuple[float, float, int]:
    """Mean and standard error over clips of how much ``better`` beats ``worse`` on metric ``key`` (positive when
    it does, whatever the metric's direction), and the number of clips where both are defined."""
    sign = 1 if M.METRICS[key].higher_is_better else -1
    d = np.array([sign * (b[key] - w[key]) for b, w in zip(better, worse)
                  if key in b and key in w and not (math.isnan(b[key]) or math.isnan(w[key]))], np.float64)
    if len(d) < 2:
        return float("nan"), float("nan"), len(d)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))), len(d)


def separates(margin: float, se: float) -> bool:
    return margin > 0 and margin > se


def verdicts(values: dict[str, list[dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{metric: {comparison: (margin, standard error, clips)}} for oracle − random, oracle − centre and
    oracle − inverted, over the metrics that the clips have."""
    keys = [k for k in M.METRICS if any(k in row for row in values["oracle"])]
    return {k: {f"oracle − {other}": paired_margin(values["oracle"], values[other], k)
                for other in (*FLOORS, "inverted")} for k in keys}


def markdown(model_id: str, values: dict[str, list[dict]], deletion_end: str = "mean") -> str:
    n = len(values["oracle"])
    comparisons = verdicts(values)
    head = ["metric", *MAPS, *next(iter(comparisons.values())), "separates"]
    into = ", deletion into the blurred clip" if deletion_end == "blur" else ""
    lines = [f"### {model_id} — {n} clips{into}", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for key, margins in comparisons.items():
        scale = 100 if key.startswith(PERCENT) else 1
        means = [scale * np.nanmean([row.get(key, np.nan) for row in values[name]]) for name in MAPS]
        cells = [f"{scale * m:.3f} ± {scale * se:.3f}" for m, se, _ in margins.values()]
        ok = all(separates(m, se) for m, se, _ in margins.values())
        arrow = "↑" if M.METRICS[key].higher_is_better else "↓"
        lines.append(f"| {M.METRICS[key].name} {arrow} | " + " | ".join(f"{v:.3f}" for v in means) + " | "
                     + " | ".join(cells) + f" | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["synth-r2plus1d-small", "synth-cnn-lstm"])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-extra", action="store_true", help="leave out ROAD and infidelity")
    parser.add_argument("--deletion-end", choices=M.DELETION_ENDS, default="mean",
                        help="what deletion replaces voxels with: the mean colour (the papers') or the blurred clip")
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    extra = () if args.no_extra else M.EXTRA
    text = "\n".join(markdown(m, scores(m, args.clips, args.split, extra=extra, deletion_end=args.deletion_end),
                              args.deletion_end) for m in args.models)
    print(text)
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
