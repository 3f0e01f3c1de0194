"""Explainers I: known answers (not snapshots), hooks, invariance, seeds and batching."""
from __future__ import annotations

import threading
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explainers import FAMILIES, REGISTRY, Cancelled, explain, get_method, methods_by_family
from explainers.device import bf16_is_native, default_batch
from explainers.maps import upsample
from explainers.metrics import insertion_deletion
from tests.tiny import TINY

SHAPE = (1, 3, 4, 8, 8)


class Linear(nn.Module):
    """logit_k = <w_k, x> + b_k on the whole clip."""

    def __init__(self, classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(int(torch.tensor(SHAPE[1:]).prod()), classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Cuboid(nn.Module):
    """Class 0's logit grows with the energy inside one known cuboid; nothing else matters."""

    box = (slice(4, 8), slice(16, 32), slice(40, 56))

    def forward(self, x):
        energy = x[:, :, self.box[0], self.box[1], self.box[2]].pow(2).mean((1, 2, 3, 4))
        return torch.stack([4 * energy, torch.ones_like(energy)], 1)


def _inside(saliency: torch.Tensor, box) -> bool:
    """The map's maximum is reached inside the box (occlusion ties the border frames never hidden without it)."""
    return bool(saliency[box].max() == saliency.max())


# The papers' methods and the baselines: a method may be added without touching this, never removed unnoticed.
REQUIRED = {"random", "centre", "gradient", "input_x_gradient", "guided_backprop", "integrated_gradients", "smoothgrad",
            "grad_cam", "grad_cam_pp", "saliency_tubes", "occlusion", "rise", "aosa", "aosa_approx", "swag_v_i",
            "swag_v_g", "swag_v_ig", "ep3d", "ep3d_evenly", "ep_unsync", "ep3d_temporal_gauss", "step",
            "attention", "attention_rollout", "grad_rollout", "chefer"}


def test_registry_holds_the_papers_methods_grouped_by_family_with_complete_specs():
    assert REQUIRED <= set(REGISTRY), f"missing: {sorted(REQUIRED - set(REGISTRY))}"
    assert {spec.family for spec in REGISTRY.values()} <= set(FAMILIES)
    for spec in REGISTRY.values():
        assert spec.name and spec.paper and spec.cost and len(spec.description) > 40
        assert spec.needs in ("nothing", "forward", "gradients", "target_layer", "attention")
        assert spec.score == ("prob" if spec.family == "perturbation" else "logit")
        for p in spec.params:
            assert p.help
    assert set(methods_by_family()) == {"baseline", "gradient", "cam", "perturbation", "attention"}
    with pytest.raises(TypeError, match="no parameter"):
        get_method("rise").resolve(None, {"stepz": 3})
    with pytest.raises(ValueError, match="outside"):
        get_method("rise").resolve(None, {"masks": 1})


def test_linear_model_gradient_family_exact():
    model = Linear()
    x = torch.randn(SHAPE)
    w = model.fc.weight[1].view(SHAPE[1:])
    g = explain(model, x, "gradient", target=1)
    assert torch.allclose(g.raw, w, atol=1e-6)
    ixg = explain(model, x, "input_x_gradient", target=1)
    assert torch.allclose(ixg.raw, w * x[0], atol=1e-6)
    for rule in ("gausslegendre", "riemann_middle", "riemann_trapezoid"):
        ig = explain(model, x, "integrated_gradients", target=1, steps=7, rule=rule)
        assert torch.allclose(ig.raw, w * x[0], atol=1e-5)
        with torch.no_grad():
            gap = model(x)[0, 1] - model(torch.zeros_like(x))[0, 1]
        assert ig.raw.sum().item() == pytest.approx(gap.item(), abs=1e-4)  # completeness
    sg = explain(model, x, "smoothgrad", target=1, samples=5)
    assert torch.allclose(sg.raw, w, atol=1e-6)
    var = explain(model, x, "smoothgrad", target=1, samples=5, variant="vargrad")
    assert var.raw.abs().max() < 1e-6
    assert g.forward_passes == 1 and g.backward_passes == 1         # the gradient pass also gives the target
    assert ig.forward_passes == 8 and ig.backward_passes == 7


def test_integrated_gradients_matches_captum():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 8 * 8, 3)).eval()
    x = torch.randn(SHAPE)
    ig = captum.IntegratedGradients(model)
    for rule in ("gausslegendre", "riemann_middle", "riemann_left", "riemann_right"):
        ours = explain(model, x, "integrated_gradients", target=2, steps=20, rule=rule)
        ref = ig.attribute(x, target=2, n_steps=20, method=rule)
        assert torch.allclose(ours.raw, ref[0], atol=1e-5), rule
    # Captum's trapezoid weights sum to (n-1)/n (step 1/n over n points spanning [0, 1]); ours to 1, so ours is
    # Captum's times n/(n-1) and keeps completeness (checked on the linear model above).
    ours = explain(model, x, "integrated_gradients", target=2, steps=20, rule="riemann_trapezoid")
    ref = ig.attribute(x, target=2, n_steps=20, method="riemann_trapezoid")
    assert torch.allclose(ours.raw, ref[0] * 20 / 19, atol=1e-5)


@pytest.mark.parametrize("method, params", [("occlusion", {"strides": (2, 8, 8)}), ("rise", {"masks": 400})])
def test_perturbation_maximum_inside_the_cuboid(method, params):
    x = torch.randn(1, 3, 16, 64, 64)
    e = explain(Cuboid(), x, method, target=0, **params)
    assert _inside(e.saliency, Cuboid.box)
    inside = e.saliency[Cuboid.box].mean()
    assert inside > 2 * e.saliency.mean()



class Uniform(nn.Module):
    """Every voxel matters equally: class 0's logit is the mean of x² over the whole clip."""

    def forward(self, x):
        energy = x.pow(2).mean((1, 2, 3, 4))
        return torch.stack([energy, torch.zeros_like(energy)], 1)


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_occlusion_hides_every_voxel_equally_at_every_preset(preset):
    """On a model where every voxel matters equally, every voxel gets the same score: windows reach the last rows,
    columns and frames (`fast` once left rows and columns 104–111 at 0) and no border is counted twice."""
    e = explain(Uniform(), torch.ones(1, 3, 16, 112, 112), "occlusion", target=0, preset=preset, max_batch=64,
                fill="zero")                        # a grey cuboid (the still background of ones is ones)
    assert e.raw.min() > 0 and (e.raw.max() - e.raw.min()) / e.raw.max() < 1e-5
    window, strides = e.params["window"], e.params["strides"]
    assert e.forward_passes == REGISTRY["occlusion"].passes(e.params, (16, 112, 112))[0]
    assert e.extras["positions"] == {"fast": 3 * 7 * 7, "paper": 5 * 13 * 13}[preset], (window, strides)


def test_guided_backprop_equals_captum():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(4, 4, 3, padding=1),
                          nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 4 * 8 * 8, 3)).eval()
    x = torch.randn(SHAPE)
    ours = explain(model, x, "guided_backprop", target=1).raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # Captum's note on the in-place ReLUs it hooks
        ref = captum.GuidedBackprop(model).attribute(x.clone(), target=1)[0]
    assert torch.allclose(ours, ref, atol=1e-7) and ours.abs().max() > 0


def test_occlusion_equals_captum():
    """The mean probability drop over the windows hiding a voxel, as Captum's Occlusion computes it."""
    captum = pytest.importorskip("captum.attr")
    model, x = Linear(), torch.randn(*SHAPE)
    for fill in ("zero", "clip_mean"):
        ours = explain(model, x, "occlusion", target=1, window=(2, 4, 4), strides=(1, 2, 2), fill=fill)
        base = 0.0 if fill == "zero" else x.mean((2, 3, 4), keepdim=True)
        ref = captum.Occlusion(lambda v: model(v).softmax(-1)).attribute(
            x, sliding_window_shapes=(3, 2, 4, 4), strides=(3, 1, 2, 2), baselines=base, target=1)
        assert torch.allclose(ours.raw, ref[0, 0], atol=1e-6) and torch.allclose(ref[0, 0], ref[0, 2])


def test_occlusion_strides_past_the_window_still_hide_every_voxel():
    e = explain(Uniform(), torch.ones(1, 3, 8, 32, 32), "occlusion", target=0, window=(2, 8, 8), strides=(5, 20, 20),
                fill="zero")
    assert e.raw.min() > 0 and e.extras["positions"] == 4 * 4 * 4


def test_the_default_fill_hides_a_still_object_that_the_still_background_cannot():
    """Why `blur` and not `time_median` is the default (docs/methods.md §13.5): where nothing moves, each pixel's
    median over time is the clip itself, so hiding with it changes nothing and a still object scores 0."""
    x = torch.randn(1, 3, 1, 64, 64).expand(1, 3, 16, 64, 64).contiguous()          # a still, textured clip
    default = explain(Cuboid(), x, "occlusion", target=0, strides=(2, 8, 8))
    still = explain(Cuboid(), x, "occlusion", target=0, strides=(2, 8, 8), fill="time_median")
    assert default.params["fill"] == "blur" and default.saliency[Cuboid.box].mean() > 2 * default.saliency.mean()
    assert still.raw.abs().max() < 1e-6


@pytest.mark.parametrize("method", ["occlusion", "aosa"])
@pytest.mark.parametrize("fill", ["zero", "clip_mean", "blur", "time_median", "conditional"])
def test_every_fill_hides_the_cuboid(method, fill):
    x = torch.randn(1, 3, 16, 64, 64)
    params = {"strides": (2, 8, 8)} if method == "occlusion" else {"stride": 8}
    e = explain(Cuboid(), x, method, target=0, fill=fill, **params)
    assert e.params["fill"] == fill and e.saliency[Cuboid.box].mean() > 2 * e.saliency.mean()


@pytest.mark.parametrize("method, params", [("occlusion", {"strides": (2, 8, 8)}), ("rise", {"masks": 400})])
def test_bf16_forwards_keep_the_answer(method, params):
    """The precision switch changes the arithmetic of the perturbed passes, not the map's answer."""
    x = torch.randn(1, 3, 16, 64, 64)
    fp32 = explain(Cuboid(), x, method, target=0, **params)
    bf16 = explain(Cuboid(), x, method, target=0, precision="bf16", **params)
    assert bf16.params["precision"] == "bf16" and fp32.params["precision"] == "fp32"
    assert _inside(bf16.saliency, Cuboid.box)
    assert (bf16.saliency - fp32.saliency).abs().max() < 0.05
    assert bf16.forward_passes == fp32.forward_passes + 1  # p0 is measured again at bf16
    with pytest.raises(ValueError, match="precision"):
        explain(Cuboid(), x, method, target=0, precision="fp16", **params)


def test_bf16_is_native_only_on_cuda_and_cpus_with_bf16_units_and_emulated_bf16_warns(monkeypatch):
    """Emulated bf16 made forwards 12–19× slower than fp32 on an AVX2-only CPU: training uses it only where it is
    native, and asking an explainer for it elsewhere says so."""
    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        assert bf16_is_native("cpu") == (avx512_bf16 or amx)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            explain(Cuboid(), torch.randn(1, 3, 16, 64, 64), "rise", target=0, masks=10, precision="bf16")
        assert any("emulated" in str(w.message) for w in caught) == (not (avx512_bf16 or amx))
    assert bf16_is_native("cuda")


def test_precision_is_only_offered_to_forward_only_methods_and_the_ep_family():
    ep_family = {"ep3d", "ep3d_evenly", "ep_unsync", "ep3d_temporal_gauss", "step"}
    for spec in REGISTRY.values():
        takes_precision = "precision" in {p.name for p in spec.params}
        assert takes_precision == (spec.needs == "forward" or spec.id in ep_family), spec.id
    with pytest.raises(TypeError, match="precision"):
        explain(Cuboid(), torch.randn(1, 3, 16, 64, 64), "gradient", target=0, precision="bf16")

def test_gradient_zero_outside_the_cuboid():
    x = torch.randn(1, 3, 16, 64, 64)
    e = explain(Cuboid(), x, "gradient", target=0)
    outside = e.raw.clone()
    outside[(slice(None), *Cuboid.box)] = 0
    assert outside.abs().max() == 0 and e.raw.abs().max() > 0


class RedDetector(nn.Module):
    """conv (hand-set: channel 0 = red, channel 1 = green) → ReLU → global average pool → identity linear."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, 2, 1, bias=False), nn.ReLU(inplace=True),
                                      nn.AvgPool3d((2, 4, 4)))
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[0, 0] = 1.0
            self.features[0].weight[1, 1] = 1.0
            self.fc.weight.copy_(torch.eye(2))
        self.target_layers = ("features",)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3, 4)))


@pytest.mark.parametrize("lead, coarse, size", [((), (4, 7, 7), (16, 112, 112)), ((3,), (5, 3, 9), (13, 50, 71)),
                                                ((2, 1), (8, 14, 14), (16, 224, 224)), ((), (1, 1, 1), (2, 3, 4))])
def test_separable_upsampling_equals_torchs_trilinear_interpolation(lead, coarse, size):
    v = torch.rand(*lead, *coarse, generator=torch.Generator().manual_seed(0))
    reference = F.interpolate(v.reshape(-1, 1, *coarse), size=size, mode="trilinear", align_corners=False)
    assert torch.allclose(upsample(v, size), reference.reshape(*lead, *size), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_pp", "saliency_tubes"])
def test_cam_lights_the_cells_of_the_evidence(method):
    x = torch.zeros(1, 3, 8, 32, 32)
    x[:, 0, 2:4, 8:12, 20:24] = 5.0      # red blob: cell (t=1, h=2, w=5) of the 4×8×8 feature grid
    x[:, 1, 6:8, 24:28, 0:4] = 5.0       # green blob elsewhere
    e = explain(RedDetector(), x, method, target=0, upsample="nearest")
    cam = e.raw
    assert cam.shape == (4, 8, 8)
    assert int(cam.argmax()) == 1 * 64 + 2 * 8 + 5
    assert cam[3, 6, 0] <= cam.max() * 1e-6, "the green blob is not evidence for class 0"


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_grad_cam_pp_follows_the_paper_at_any_gradient_scale(scale):
    """a = g² / (2g² + ΣA·g³) with ε only where the denominator is 0 (docs/methods.md §20.3): layer gradients of
    1e-5 (g² ≪ ε = 1e-6) keep the paper's weights; an ε in every denominator would weight channels by g³."""
    model = RedDetector()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 0.5], [0.0, 1.0]]) * scale)
    x = torch.zeros(1, 3, 8, 32, 32)
    x[:, 0, 2:4, 8:12, 20:24] = 5.0
    x[:, 1, 6:8, 24:28, 0:4] = 5.0
    e = explain(model, x, "grad_cam_pp", target=0, upsample="nearest")
    with torch.no_grad():
        a = model.features(x)[0].double()                                 # 2×4×8×8
        g = (model.fc.weight[0].double() / a[0].numel())[:, None, None, None].expand_as(a)
        alpha = g ** 2 / (2 * g ** 2 + a.sum((1, 2, 3), keepdim=True) * g ** 3)
        weights = (alpha * g.clamp(min=0)).sum((1, 2, 3), keepdim=True)
        expected = torch.relu((weights * a).sum(0))
    assert torch.allclose(e.raw.double() / e.raw.max(), expected / expected.max(), atol=1e-6)
    assert expected[3, 6, 0] / expected.max() == pytest.approx(0.5, abs=0.01)   # green blob: half weight, not 1/8


def test_guided_backprop_differs_from_gradient_exactly_where_gates_close():
    torch.manual_seed(3)
    lin1, lin2 = nn.Linear(12, 16), nn.Linear(16, 2)
    model = nn.Sequential(nn.Flatten(), lin1, nn.ReLU(inplace=True), lin2).eval()
    x = torch.randn(1, 3, 1, 2, 2)
    vanilla = explain(model, x, "gradient", target=0).raw.flatten()
    guided = explain(model, x, "guided_backprop", target=0).raw.flatten()
    with torch.no_grad():
        gate = (lin1(x.flatten(1))[0] > 0).float()
        upstream = lin2.weight[0]
        expected_vanilla = lin1.weight.T @ (gate * upstream)
        expected_guided = lin1.weight.T @ (gate * upstream.clamp(min=0))
    assert torch.allclose(vanilla, expected_vanilla, atol=1e-6)
    assert torch.allclose(guided, expected_guided, atol=1e-6)
    assert not torch.allclose(vanilla, guided)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU)), "inplace flags restored"


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("method", ["grad_cam", "guided_backprop", "saliency_tubes", "occlusion"])
def test_hooks_removed_and_model_restored_after_cancel(method):
    model = RedDetector()
    x = torch.rand(1, 3, 8, 32, 32)
    with pytest.raises(Cancelled):
        explain(model, x, method, progress=lambda fraction, message: False)
    assert _hook_count(model) == 0
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    assert all("forward" not in vars(m) for m in model.modules()), "patched forwards removed"
    explain(model, x, method)  # still usable


def test_a_methods_hooks_reach_only_its_own_threads_passes():
    """One model object may serve several threads at once (the app's lanes run requests side by side on one cached
    model): while another thread runs guided backprop and Grad-CAM on it over and over, this thread's gradient and
    Grad-CAM maps stay exactly those computed alone."""
    model = RedDetector()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))   # negative upstream: guided ≠ vanilla
    x = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.1
    alone = {method: explain(model, x, method, target=0).raw for method in ("gradient", "grad_cam")}
    assert not torch.equal(explain(model, x, "guided_backprop", target=0).raw, alone["gradient"])
    stop = threading.Event()

    def other_request() -> None:
        while not stop.is_set():
            explain(model, 2 * x, "guided_backprop", target=1)
            explain(model, 2 * x, "grad_cam", target=1)
    other = threading.Thread(target=other_request)
    other.start()
    try:
        for _ in range(50):
            for method, expected in alone.items():
                assert torch.equal(explain(model, x, method, target=0).raw, expected), method
    finally:
        stop.set()
        other.join()


# every method but the attention family (tests/test_attention.py runs these checks on transformers)
ON_CNNS = [m for m, spec in REGISTRY.items() if spec.family != "attention"]


def test_model_parameters_and_mode_unchanged_by_every_method():
    model = RedDetector()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 8, 32, 32)
    for method in ON_CNNS:
        explain(model, x, method, **TINY.get(method, {}))
        assert model.training and all(m.training for m in model.modules())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())


def test_target_defaults_to_top1_and_is_checked():
    model = Linear()
    x = torch.randn(SHAPE)
    e = explain(model, x, "gradient")
    assert e.target == int(model(x).argmax())
    for target in (3, -1):
        with pytest.raises(ValueError, match=f"target class {target} does not exist: the model has 3 classes"):
            explain(model, x, "gradient", target=target)
    with pytest.raises(ValueError, match="1×C×T×H×W"):
        explain(model, x[0], "gradient")
    with pytest.raises(KeyError, match="unknown method"):
        explain(model, x, "nope")


@pytest.mark.parametrize("method", ON_CNNS)
def test_every_method_reports_the_clean_clips_top1_and_checks_the_target(method):
    """The target and its score come from the clean clip's fp32 logits, whether the method's own first pass
    (a gradient pass of the clip) supplied them or a separate forward did."""
    model = RedDetector()
    x = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        logits = model(x)[0]
    e = explain(model, x, method, **TINY.get(method, {}))
    assert e.target == int(logits.argmax())
    assert e.target_logit == pytest.approx(float(logits[e.target]), abs=1e-5)
    with pytest.raises(ValueError, match="target class 2 does not exist"):
        explain(model, x, method, target=2, **TINY.get(method, {}))
    assert _hook_count(model) == 0 and all("forward" not in vars(m) for m in model.modules())


ADAPTIVE = {"aosa", "aosa_approx"}     # their counts are upper bounds: letter-box rows, re-expansions


@pytest.mark.parametrize("method", ON_CNNS)
def test_pass_counts_are_known_before_the_run(method):
    model = RedDetector()
    x = torch.rand(1, 3, 8, 32, 32)
    spec = REGISTRY[method]
    for params in (TINY.get(method, {}), VARIED.get(method, {})):
        e = explain(model, x, method, **params)
        forward, backward = spec.count(e.params, (8, 32, 32))
        if method in ADAPTIVE:
            assert e.forward_passes <= forward and e.backward_passes <= backward
        else:
            assert (e.forward_passes, e.backward_passes) == (forward, backward), params


VARIED = {"integrated_gradients": {"steps": 3}, "smoothgrad": {"samples": 3}, "rise": {"masks": 12},
          "occlusion": {"window": (4, 8, 8), "strides": (3, 5, 7)}, "aosa": {"stride": 8}, "aosa_approx": {"stride": 8},
          **{m: {"iterations": 3, "areas": (0.1, 0.3)} for m in ("ep3d", "ep3d_evenly", "ep3d_temporal_gauss", "step")},
          "ep_unsync": {"iterations": 2, "areas": (0.1, 0.2)}}


def test_a_gradient_pass_of_the_clip_replaces_the_separate_clean_forward():
    model, x = RedDetector(), torch.rand(1, 3, 8, 32, 32)
    expected = {"random": ({}, 1, 0), "gradient": ({}, 1, 1), "guided_backprop": ({}, 1, 1), "grad_cam": ({}, 1, 1),
                "saliency_tubes": ({}, 1, 0), "integrated_gradients": ({"steps": 4}, 1 + 4, 4),
                "swag_v_g": ({}, 1, 1), "aosa_approx": ({"adjust": False}, 1, 1)}
    for method, (params, forwards, backwards) in expected.items():
        e = explain(model, x, method, **params)
        assert (e.forward_passes, e.backward_passes) == (forwards, backwards), method


@pytest.mark.parametrize("method, params", [("random", {}), ("smoothgrad", {"samples": 4}), ("rise", {"masks": 30})])
def test_same_seed_same_map(method, params):
    model, x = RedDetector(), torch.rand(1, 3, 8, 32, 32)
    a = explain(model, x, method, seed=7, **params)
    b = explain(model, x, method, seed=7, **params)
    c = explain(model, x, method, seed=8, **params)
    assert torch.equal(a.saliency, b.saliency) and not torch.equal(a.saliency, c.saliency)


@pytest.mark.parametrize("method, params", [("occlusion", {"strides": (4, 8, 8)}), ("rise", {"masks": 30}),
                                            ("smoothgrad", {"samples": 5}), ("integrated_gradients", {"steps": 6})])
def test_batched_equals_unbatched(method, params):
    model, x = RedDetector(), torch.rand(1, 3, 8, 32, 32)
    one = explain(model, x, method, max_batch=1, **params)
    many = explain(model, x, method, max_batch=64, **params)
    assert torch.allclose(one.saliency, many.saliency, atol=1e-5)
    assert one.forward_passes == many.forward_passes


def test_default_batch_follows_the_device():
    sizes = []
    model = RedDetector()
    model.register_forward_pre_hook(lambda _m, inputs: sizes.append(len(inputs[0])))
    x = torch.rand(1, 3, 8, 32, 32)
    explain(model, x, "rise", masks=30)
    insertion_deletion(model, x, torch.rand(8, 32, 32), 0)
    assert max(sizes) == 4 == default_batch("cpu") and default_batch("cuda") == 32


def test_progress_is_reported_and_monotone():
    seen = []
    explain(RedDetector(), torch.rand(1, 3, 8, 32, 32), "occlusion", max_batch=8, window=(4, 16, 16),
            progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 3
