"""The embedded architectures: the CNN-LSTM's optical flow input on motions with a known answer (a translation
and a rotation) and its cuDNN fallback, and the layer rewrites for CPU speed against the layers they replace."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from zoo.architectures import (
    AFFINE_BATCHNORMS,
    FrameEncoder,
    LucasKanadeFlow,
    TemporalConv,
    batchnorms_as_affine,
    batchnorms_folded,
    build,
    temporal_convs_as_2d,
)


def _texture(size: int = 160) -> torch.Tensor:
    """A smooth random texture (blobs of about 10 px, the scale of an actor's parts), 1×1×size×size."""
    gen = torch.Generator().manual_seed(0)
    return F.interpolate(torch.randn(1, 1, size // 16, size // 16, generator=gen), size=(size, size), mode="bicubic",
                         align_corners=False)


def _warp(image: torch.Tensor, frames: int, angle_deg: float, shift: tuple[float, float]) -> torch.Tensor:
    """``frames`` views of ``image``, each rotated by ``angle_deg`` (clockwise on screen) and moved by ``shift``
    pixels (x right, y down) from the previous one, cropped to 112×112 and as a 1×3×T×112×112 clip."""
    size = image.shape[-1]
    views = []
    for t in range(frames):
        a = math.radians(angle_deg * t)
        dx, dy = (2 * s * t / size for s in shift)
        # affine_grid maps output to input coordinates: the inverse motion.
        theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]])
        theta[:, 2] = -theta[:, :2] @ torch.tensor([dx, dy])
        grid = F.affine_grid(theta[None], [1, 1, size, size], align_corners=False)
        views.append(F.grid_sample(image, grid, mode="bicubic", align_corners=False))
    crop = (size - 112) // 2
    clip = torch.cat(views)[:, 0, crop:crop + 112, crop:crop + 112]
    return clip[None, None].expand(1, 3, -1, -1, -1)


def test_flow_of_a_translation_is_the_shift():
    flow = LucasKanadeFlow()(_warp(_texture(), 4, 0.0, (2.0, -1.0)))
    assert flow.shape == (1, 2, 4, 112, 112)
    assert flow[:, :, 0].abs().max() == 0, "no flow into the first frame"
    inner = flow[0, :, 1:, 16:-16, 16:-16].flatten(1).median(1).values
    assert inner.tolist() == pytest.approx([2.0, -1.0], abs=0.3)


@pytest.mark.parametrize("angle", [6.0, -6.0])
def test_flow_of_a_rotation_has_the_curl_of_its_sense(angle):
    flow = LucasKanadeFlow()(_warp(_texture(), 3, angle, (0.0, 0.0)))[0, :, 1:]
    u, v = flow[0], flow[1]
    curl = (v[:, 8:-8, 10:-6] - v[:, 8:-8, 6:-10]) / 4 - (u[:, 10:-6, 8:-8] - u[:, 6:-10, 8:-8]) / 4
    # A rotation by ω rad/frame has curl 2ω (positive for clockwise on screen, where y points down).
    assert curl.median().item() == pytest.approx(2 * math.radians(angle), rel=0.25)


def test_flow_is_differentiable_and_finite_on_flat_frames():
    x = torch.zeros(1, 3, 4, 112, 112, requires_grad=True)
    flow = LucasKanadeFlow()(x + torch.linspace(0, 1, 4).view(1, 1, 4, 1, 1))
    assert torch.isfinite(flow).all() and flow.abs().max() < 1e-3
    flow.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_frame_encoder_in_channels_last_computes_what_the_cnn_computes_frame_by_frame():
    torch.manual_seed(0)
    encoder = FrameEncoder(in_channels=8).eval()
    x = torch.randn(2, 8, 5, 48, 64)
    with torch.no_grad():
        out = encoder(x)
        frames = torch.stack([encoder.cnn(x[:, :, t].contiguous()) for t in range(x.shape[2])], 2)
    assert out.shape == (2, 64, 5, 3, 4)
    torch.testing.assert_close(out, frames, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_temporal_conv_equals_the_3d_convolution_it_stands_for(stride, layout):
    torch.manual_seed(0)
    conv = TemporalConv(6, 5, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=True)
    x = torch.randn(2, 6, 7, 5, 4).contiguous(memory_format=layout).requires_grad_()
    out = conv(x)
    expected = F.conv3d(x, conv.weight, conv.bias, stride=(stride, 1, 1), padding=(1, 0, 0))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(expected, x, grad)[0],
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("affine", [True, False])
def test_affine_batch_norm_computes_eval_batch_norm_and_its_input_gradient(dims, affine):
    torch.manual_seed(0)
    bn = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)[dims - 1](6, affine=affine)
    bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2)
    if affine:
        torch.nn.init.normal_(bn.weight), torch.nn.init.normal_(bn.bias)
    ref = copy.deepcopy(bn).eval()
    fast = batchnorms_as_affine(bn).eval()
    assert type(fast) is AFFINE_BATCHNORMS[type(ref)] and isinstance(fast, type(ref))
    x = torch.randn(3, 6, *(4,) * dims, requires_grad=True)
    out, expected = fast(x), ref(x)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(expected, x, grad)[0])
    with torch.autocast("cpu", torch.bfloat16):
        assert fast(x.bfloat16()).dtype == torch.bfloat16
    fast.train(), ref.train()                              # training: batch statistics, as PyTorch's
    torch.testing.assert_close(fast(x), ref(x))
    torch.testing.assert_close(fast.running_mean, ref.running_mean)


@pytest.mark.parametrize("arch", ["r2plus1d_small", "r2plus1d_18"])
def test_temporal_convs_as_2d_keeps_names_parameters_and_logits(arch):
    import torchvision.models.video as tvv

    torch.manual_seed(0)
    model = (build(arch, 10) if arch == "r2plus1d_small" else tvv.r2plus1d_18(num_classes=10)).eval()
    state = model.state_dict()
    time_only = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Conv3d)
                 and m.kernel_size[1:] == (1, 1) and m.stride[1:] == (1, 1)]
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        converted = temporal_convs_as_2d(model)
        out = converted(x)
    assert [name for name, m in converted.named_modules() if isinstance(m, TemporalConv)] == time_only
    assert len(time_only) >= 9                           # the stem's and every block's temporal convolutions
    assert converted.state_dict().keys() == state.keys()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def _randomised_norms(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with running statistics and affine parameters far from the identity, so that a fold is seen."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
            if m.affine:
                torch.nn.init.normal_(m.weight, 1.0, 0.3), torch.nn.init.normal_(m.bias)
    return model.eval()


@pytest.mark.parametrize("arch", ["r2plus1d_small", "cnn_lstm", "r2plus1d_18"])
def test_folded_batchnorms_give_the_same_logits_and_leave_the_model_alone(arch):
    import torchvision.models.video as tvv

    torch.manual_seed(0)
    net = build(arch, 10) if arch != "r2plus1d_18" else tvv.r2plus1d_18(num_classes=10)
    model = _randomised_norms(batchnorms_as_affine(temporal_convs_as_2d(net)))
    before = copy.deepcopy(model.state_dict())
    norms = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    folded = batchnorms_folded(model)
    assert folded is not model
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.Identity) for m in folded.modules()) >= norms
    x = torch.randn(2, 3, 8, 112 if arch == "cnn_lstm" else 32, 112 if arch == "cnn_lstm" else 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_only_a_batch_norm_right_after_a_convolution_in_a_plain_sequential_is_folded():
    class Reordered(torch.nn.Sequential):            # its own forward: the order of its modules says nothing
        def forward(self, x):
            return self[1](self[0](x).flip(-1))

    torch.manual_seed(0)
    model = _randomised_norms(torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4),       # a ReLU between: kept
        Reordered(torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4)),             # not a plain Sequential: kept
        torch.nn.Sequential(torch.nn.Conv2d(4, 5, 3), torch.nn.ReLU(), torch.nn.Conv2d(5, 5, 1)),
        torch.nn.BatchNorm2d(5)))                                                  # after a nested conv: folded
    folded = batchnorms_folded(model)
    assert [type(m).__name__ for m in folded] == ["Conv2d", "ReLU", "BatchNorm2d", "Reordered", "Sequential",
                                                  "Identity"]
    assert isinstance(folded[3][1], torch.nn.BatchNorm2d)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    assert batchnorms_folded(plain) is plain                 # nothing to fold: no copy


def test_cnn_lstm_turns_cudnn_off_only_for_eval_mode_gradients():
    """cuDNN's LSTM has no backward in eval mode, which every gradient explainer runs in; the CNN-LSTM falls back
    to PyTorch's kernel exactly then and leaves cuDNN on for training and for forward-only passes (the flag is
    what a CUDA run reads; ``tests/test_cuda.py`` runs the real kernels on a GPU)."""
    model = build("cnn_lstm", 10)
    seen = []
    model.lstm.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
    x = torch.rand(1, 3, 4, 112, 112)
    assert torch.backends.cudnn.enabled
    model.eval()
    model(x)
    with torch.inference_mode():
        model(x)
    model.train()
    model(x)
    assert seen == [False, True, True]
    assert torch.backends.cudnn.enabled
