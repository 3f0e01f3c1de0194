"""Every method on every embedded model, and on random-weight instances of the zoo's architectures."""
from __future__ import annotations

import json

import pytest
import torch

from explainers import REGISTRY, explain
from tests.hubfiles import tiny_classifier
from tests.tiny import TINY
from zoo.cards import CARDS_DIR, card_from_dict
from zoo.models import VideoClassifier, load_model
from zoo.synthetic import make_clip
from zoo.video import preprocess

ATTENTION = {m for m, spec in REGISTRY.items() if spec.family == "attention"}


def _run_all(model: VideoClassifier, x: torch.Tensor) -> dict[str, object]:
    results = {}
    for method in REGISTRY:
        try:
            e = explain(model, x, method, **TINY.get(method, {}))
        except ValueError as error:  # a method that does not apply must say so
            results[method] = error
            continue
        assert e.saliency.shape == x.shape[2:], method
        assert torch.isfinite(e.saliency).all() and 0 <= e.saliency.min() <= e.saliency.max() <= 1, method
        assert e.forward_passes >= 1, method
        results[method] = e
    return results


def _not_applicable(results) -> set[str]:
    return {m for m, r in results.items() if isinstance(r, ValueError)}


@pytest.mark.integration
@pytest.mark.parametrize("card_id, inapplicable", [
    ("synth-r2plus1d-small", ATTENTION),
    ("synth-cnn-lstm", {"saliency_tubes", *ATTENTION}),    # as in [S0], Saliency Tubes is for 3-D CNNs only
    ("synth-videomae-small", {"saliency_tubes"})])
def test_every_method_on_the_embedded_models(card_id, inapplicable):
    model = load_model(card_id)
    x, _ = preprocess(make_clip(1_000_004).video, model.input_spec)  # a real clip (grow), not noise
    results = _run_all(model, x)
    assert _not_applicable(results) == inapplicable
    if "saliency_tubes" in inapplicable:
        assert "3-D CNNs" in str(results["saliency_tubes"])
    if "chefer" in inapplicable:
        assert "no attention layers" in str(results["chefer"])
    assert results["grad_cam"].saliency.max() > 0


def _tv_model(card_id: str, size: int) -> VideoClassifier:
    raw = json.loads((CARDS_DIR / f"{card_id}.json").read_text())
    raw["source"]["weights"] = None
    raw["input"]["size"] = [size, size]
    return load_model(card_from_dict(raw))


@pytest.mark.architectures
@pytest.mark.parametrize("card_id, size, inapplicable", [
    ("tv-r2plus1d-18", 112, ATTENTION), ("tv-r3d-18", 112, ATTENTION), ("tv-mc3-18", 112, ATTENTION),
    ("tv-s3d", 224, ATTENTION), ("tv-mvit-v2-s", 224, {"saliency_tubes", *ATTENTION}),
    ("tv-swin3d-t", 112, {"saliency_tubes", *ATTENTION})])
def test_every_method_on_torchvision_architectures(card_id, size, inapplicable):
    model = _tv_model(card_id, size)
    results = _run_all(model, torch.randn(1, 3, 16, size, size))
    assert _not_applicable(results) == inapplicable
    assert results["grad_cam"].raw.abs().sum() > 0 or results["grad_cam_pp"].raw.abs().sum() > 0


@pytest.mark.parametrize("kind", ["videomae", "timesformer"])
def test_every_method_on_tiny_video_transformers(kind):
    torch.manual_seed(0)
    model, frames = tiny_classifier(kind, blocks=3)
    results = _run_all(model, torch.randn(1, 3, frames, 112, 112))
    assert _not_applicable(results) == {"saliency_tubes"}
    cam_gradient = results["grad_cam_pp"].raw
    assert cam_gradient.shape == model.token_grid.grid
    assert results["guided_backprop"].extras["guided_relus"] == 0  # GELU networks: guided = vanilla gradient
    assert torch.allclose(results["guided_backprop"].raw, results["gradient"].raw)


@pytest.mark.parametrize("kind", ["synth-r2plus1d-small", "synth-cnn-lstm", "synth-videomae-small", "videomae",
                                  "timesformer"])
def test_bf16_forwards_on_every_model_family(kind):
    """bf16 autocast with channels-last clips runs on 3-D CNNs, the CNN-LSTM and transformers, and the perturbed
    clips' probabilities stay within 0.02 of fp32."""
    torch.manual_seed(0)
    if kind.startswith("synth"):
        model = load_model(kind)
        x, _ = preprocess(make_clip(1_000_004).video, model.input_spec)
    else:
        model, frames = tiny_classifier(kind, blocks=3)
        x = torch.randn(1, 3, frames, 112, 112)
    fp32, bf16 = (explain(model, x, "rise", masks=24, precision=p) for p in ("fp32", "bf16"))
    assert (fp32.extras["scores"] - bf16.extras["scores"]).abs().max() < 0.02
    assert torch.isfinite(bf16.saliency).all()
