"""The CUDA path: every method and the faithfulness metrics give the CPU's answer on a GPU.

Skipped where no GPU is present (CI); run on a lent GPU machine with ``pytest tests/test_cuda.py``. Random draws
come from CPU generators in every method, so the same seed gives the same masks on both devices and the maps may
differ only by floating-point order (cuDNN picks other kernels, and TF32 is off here to keep that small).
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import faithfulness as benchmark
from explainers import REGISTRY, explain
from explainers.metrics import evaluate_map, spearman
from tests.tiny import TINY
from zoo.models import load_model
from zoo.synthetic import make_clip
from zoo.video import preprocess

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

MODELS = ["synth-r2plus1d-small", "synth-cnn-lstm", "synth-videomae-small"]


@pytest.fixture(scope="module", autouse=True)
def exact_float32():
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@pytest.fixture(scope="module", params=MODELS)
def models(request):
    return load_model(request.param), load_model(request.param, "cuda")


def _clip(model) -> torch.Tensor:
    return preprocess(make_clip(1_000_004).video, model.input_spec)[0]


@pytest.mark.parametrize("method", list(REGISTRY))
def test_every_method_matches_the_cpu(models, method):
    cpu, gpu = models
    x = _clip(cpu)
    params = TINY.get(method, {})
    try:
        ref = explain(cpu, x, method, seed=3, **params)
    except ValueError:  # not applicable to this model on any device (e.g. Saliency Tubes on a CNN-RNN)
        with pytest.raises(ValueError):
            explain(gpu, x.cuda(), method, seed=3, **params)
        return
    out = explain(gpu, x.cuda(), method, seed=3, **params)
    assert out.saliency.device.type == "cpu" and out.saliency.shape == ref.saliency.shape
    assert (out.target, out.forward_passes, out.backward_passes) == (ref.target, ref.forward_passes,
                                                                     ref.backward_passes)
    assert out.target_prob == pytest.approx(ref.target_prob, rel=1e-3, abs=1e-4)
    # Optimised masks (EP, STEP, AOSA) follow thresholds and sorted areas, so tiny differences may move a few voxels.
    tolerance = 0.2 if method.startswith(("ep", "step", "aosa")) else 0.02
    assert (out.saliency - ref.saliency).abs().mean() < tolerance, method
    if ref.saliency.std() > 0:
        assert spearman(out.saliency, ref.saliency) > 0.95, method


def test_metrics_match_the_cpu(models):
    cpu, gpu = models
    x = _clip(cpu)
    saliency = explain(cpu, x, "grad_cam" if "r2plus1d" in cpu.card.id else "gradient").saliency
    target = int(cpu(x).argmax())
    ref, ref_curves = evaluate_map(cpu, x, saliency, target, steps=8, max_batch=4)
    out, out_curves = evaluate_map(gpu, x.cuda(), saliency, target, steps=8, max_batch=4)
    assert out.keys() == ref.keys()
    for key in ref:
        assert out[key] == pytest.approx(ref[key], abs=1e-3), key
    for key in ref_curves:
        torch.testing.assert_close(torch.as_tensor(out_curves[key].probs), torch.as_tensor(ref_curves[key].probs),
                                   atol=1e-3, rtol=0)


def test_benchmark_rows_on_the_gpu_match_the_cpu(tmp_path):
    args = (["synth-r2plus1d-small"], ["gradient"], 1)
    ref = benchmark.run(*args, tmp_path / "cpu", log=lambda _: None)
    out = benchmark.run(*args, tmp_path / "cuda", log=lambda _: None, device="cuda")
    for key in ("insertion", "deletion", "pointing", "target"):
        assert out[0][key] == pytest.approx(ref[0][key], abs=1e-3), key
