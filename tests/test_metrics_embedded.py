"""On the trained embedded model, a ground-truth oracle map beats the baselines on every metric."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers import explain
from explainers.metrics import METRICS, evaluate_map
from zoo.models import load_model
from zoo.synthetic import make_clip, split_seeds
from zoo.video import preprocess

pytestmark = pytest.mark.integration


def oracle_map(clip) -> torch.Tensor:
    """The ground-truth box volume: 1 inside the actor's box during the action window, 0.8 inside it in the other
    frames (above both S50/S75 thresholds: blurring the actor's start and end states destroys the class), 0 outside."""
    s = torch.zeros(clip.video.shape[:3])
    for t, (x0, y0, x1, y1) in enumerate(np.round(clip.bbox).astype(int)):
        if clip.visible[t]:
            s[t, y0:y1, x0:x1] = 1.0 if clip.window[0] <= t <= clip.window[1] else 0.8
    return s


def scores(model, clip, x, saliency) -> dict[str, float]:
    truth = {"bbox": clip.bbox, "visible": clip.visible, "window": clip.window}
    values, _ = evaluate_map(model, x, saliency, clip.label, truth)
    return {k: 100.0 * v if k.startswith("loc_error") else v for k, v in values.items()}


@pytest.fixture(scope="module")
def table():
    model = load_model("synth-r2plus1d-small")
    rows = {"oracle": [], "inverted": [], "random": [], "centre": []}
    for seed in split_seeds("test", 8):
        clip = make_clip(seed)
        x, _ = preprocess(clip.video, model.input_spec)
        oracle = oracle_map(clip)
        maps = {"oracle": oracle, "inverted": 1 - oracle,
                "random": explain(model, x, "random", seed=seed).saliency,
                "centre": explain(model, x, "centre").saliency}
        for name, saliency in maps.items():
            rows[name].append(scores(model, clip, x, saliency))
    return {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for name, rs in rows.items()}


@pytest.mark.parametrize("metric", list(METRICS))
def test_oracle_beats_baselines_and_inverted_oracle_is_worse(table, metric):
    better = (lambda a, b: a > b) if METRICS[metric].higher_is_better else (lambda a, b: a < b)
    oracle = table["oracle"][metric]
    for baseline in ("random", "centre"):
        assert better(oracle, table[baseline][metric]) or oracle == table[baseline][metric] == 0.0, \
            (metric, table)
    if metric != "temporal_pointing":  # the inverted oracle's frame sums say little about the window
        assert better(oracle, table["inverted"][metric]), (metric, table)


@pytest.mark.parametrize("card_id", ["synth-r2plus1d-small", "synth-cnn-lstm"])
def test_bf16_metric_passes_agree_with_fp32(card_id):
    """The precision switch of the metrics: the same curves to within 0.02 at every step."""
    model = load_model(card_id)
    clip = make_clip(1_000_004)
    x, _ = preprocess(clip.video, model.input_spec)
    saliency = oracle_map(clip)
    fp32, curves32 = evaluate_map(model, x, saliency, clip.label)
    bf16, curves16 = evaluate_map(model, x, saliency, clip.label, precision="bf16")
    for kind in ("insertion", "deletion"):
        assert np.abs(curves32[kind].probs - curves16[kind].probs).max() < 0.02
    assert abs(fp32["s50"] - bf16["s50"]) < 0.1
