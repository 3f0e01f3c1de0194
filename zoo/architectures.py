"""Definitions of the small embedded models: one per family compared in the papers, and a video transformer.

* ``R2Plus1DSmall`` — a 3-D CNN in the R(2+1)D style built from torchvision's ``VideoResNet`` ``BasicBlock``
  at reduced width (16/32/64/128 channels; torchvision's ``VideoResNet`` hard-codes 64..512). Its last block
  ``layer4`` keeps 8 of the 16 input frames (T'=8, 7×7 at 112 px), which is the CAM target layer.
* ``CNNLSTM`` — a per-frame 2-D CNN followed by an LSTM whose per-step logits are averaged over time, as the
  VGG16-LSTM of [S0]; each frame enters the CNN with its difference to the previous one and the optical flow
  between them (``LucasKanadeFlow``), as in the flow stream of two-stream CNN-LSTMs. The CNN output is exposed
  as a B×C×T×H'×W' volume (module ``frames``), so CAM methods see it exactly like a 3-D CNN's activation, at
  full temporal resolution.
* ``VideoMAESmall`` — transformers' own ``VideoMAEForVideoClassification`` at a small width, so that the attention
  methods run on the same code as the Hub's VideoMAEs, with trained weights.

All take normalised clips B×3×T×H×W and return logits B×num_classes. ``temporal_convs_as_2d`` (applied to every
zoo model by ``zoo.models.VideoClassifier``) runs time-only 3-D convolutions as 2-D ones, which PyTorch's CPU
backend handles much faster at small batches; ``batchnorms_as_affine`` (applied there too) runs eval-mode batch
norms as one multiply-add, whose backward is cheaper than PyTorch's.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.video.resnet import BasicBlock


class TemporalConv(nn.Conv3d):
    """A (k×1×1) ``Conv3d`` computed as a 2-D convolution over (T, H·W): the same parameters and result.

    On CPU, PyTorch sends 3-D convolutions with a 1×1 spatial kernel at batch < 16 to its slow vol2col path
    instead of oneDNN (docs/performance.md, 2-D temporal convolutions). As a 2-D convolution it goes to oneDNN
    (through a view, no copy, in NCDHW and in channels-last-3d alike).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = F.conv2d(x.reshape(b, c, t, h * w), self.weight[..., 0], self.bias, (self.stride[0], 1),
                     (self.padding[0], 0), (self.dilation[0], 1), self.groups)
        return y.view(b, y.shape[1], y.shape[2], h, w)


def temporal_convs_as_2d(model: nn.Module) -> nn.Module:
    """Replace, in place, every ``Conv3d`` of ``model`` that only convolves over time (kernel k×1×1, spatial
    stride 1, no spatial padding) by a ``TemporalConv`` sharing its parameters; returns ``model``. The R(2+1)D,
    S3D and embedded R(2+1)D models have such layers; module names and state dicts stay as they were."""
    for parent in list(model.modules()):
        for name, conv in parent.named_children():
            if (type(conv) is nn.Conv3d and conv.kernel_size[1:] == (1, 1) and conv.stride[1:] == (1, 1)
                    and conv.padding[1:] == (0, 0) and conv.padding_mode == "zeros"):
                fast = TemporalConv(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                    conv.dilation, conv.groups, conv.bias is not None, device="meta")
                fast.weight, fast.bias = conv.weight, conv.bias
                setattr(parent, name, fast)
    return model


class _AffineInEval:
    """Batch norm that, in eval mode, runs as one ``addcmul`` with its per-channel scale and shift folded from the
    running statistics: the same function (to float rounding), whose backward is one multiplication. On CPU,
    PyTorch's eval ``batch_norm`` backward costs as much as a convolution's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.running_var is None:
            return super().forward(x)
        scale = (self.running_var + self.eps).rsqrt()
        scale = scale * self.weight if self.weight is not None else scale
        shift = -self.running_mean * scale
        shift = shift + self.bias if self.bias is not None else shift
        shape = (-1,) + (1,) * (x.dim() - 2)
        return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)   # fp32 scale under autocast


class AffineBatchNorm1d(_AffineInEval, nn.BatchNorm1d):
    pass


class AffineBatchNorm2d(_AffineInEval, nn.BatchNorm2d):
    pass


class AffineBatchNorm3d(_AffineInEval, nn.BatchNorm3d):
    pass


AFFINE_BATCHNORMS = {nn.BatchNorm1d: AffineBatchNorm1d, nn.BatchNorm2d: AffineBatchNorm2d,
                     nn.BatchNorm3d: AffineBatchNorm3d}


def batchnorms_as_affine(model: nn.Module) -> nn.Module:
    """Turn, in place, every ``BatchNorm1d/2d/3d`` of ``model`` into its ``AffineBatchNorm`` subclass (the same
    module, parameters and buffers; only its eval-mode forward changes); returns ``model``."""
    for module in model.modules():
        if type(module) in AFFINE_BATCHNORMS:
            module.__class__ = AFFINE_BATCHNORMS[type(module)]
    return model


def _plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def batchnorms_folded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for inference in which each batch norm that directly follows a convolution in a plain
    ``nn.Sequential`` (possibly the last module of a nested one, as in ``Conv2Plus1D``) is folded into that
    convolution's weights (torch's ``fuse_conv_bn_eval``) and replaced by ``nn.Identity``: the same
    eval-mode function to float rounding, one pass over the activations fewer per batch norm. ``model`` itself
    when there is none to fold. For passes without hooks or training (the metrics); not for ``.train()``."""
    def pairs(root: nn.Module) -> list[tuple[nn.Sequential, int, nn.Sequential, int]]:
        found = []
        for seq in filter(_plain_sequential, root.modules()):
            for i in range(1, len(seq)):
                holder, j = seq, i - 1
                while _plain_sequential(holder[j]) and len(holder[j]):
                    holder, j = holder[j], len(holder[j]) - 1
                conv, norm = holder[j], seq[i]
                if (isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.running_var is not None
                        and type(conv) in (nn.Conv1d, nn.Conv2d, nn.Conv3d, TemporalConv)):
                    found.append((holder, j, seq, i))
        return found

    if not pairs(model):
        return model
    folded = copy.deepcopy(model).eval()
    for holder, j, seq, i in pairs(folded):
        holder[j] = fuse_conv_bn_eval(holder[j], seq[i])
        seq[i] = nn.Identity()
    return folded


class Conv2Plus1D(nn.Sequential):
    """A (1×3×3) spatial then (3×1×1) temporal convolution with separate temporal/spatial strides.

    torchvision's ``Conv2Plus1D`` uses one stride for both axes; the embedded model needs (1, 2, 2) strides to
    keep temporal resolution for explanations.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: tuple[int, int, int] = (1, 1, 1)):
        st, ss = stride[0], stride[1]
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), stride=(1, ss, ss), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False),
        )


def _layer(inplanes: int, planes: int, stride: tuple[int, int, int]) -> nn.Sequential:
    downsample = None
    if stride != (1, 1, 1) or inplanes != planes:
        downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes))
    return nn.Sequential(BasicBlock(inplanes, planes, Conv2Plus1D, stride, downsample))


class R2Plus1DSmall(nn.Module):
    """R(2+1)D with one BasicBlock per stage, widths 16/32/64/128 (787,242 parameters with 10 classes).

    On CPU, with ``channels_last`` (the default), clips enter the network NDHWC, which oneDNN runs faster than
    NCDHW once the temporal convolutions are 2-D ones (``temporal_convs_as_2d``; docs/performance.md).
    """

    channels_last = True

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 128),
                 strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 1, 1))):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 24, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(24), nn.ReLU(inplace=True),
            nn.Conv3d(24, widths[0], (3, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True),
        )
        inplanes = widths[0]
        for i, (planes, stride) in enumerate(zip(widths, strides), start=1):
            setattr(self, f"layer{i}", _layer(inplanes, planes, stride))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FrameEncoder(nn.Module):
    """A 2-D CNN applied to every frame: B×C_in×T×H×W → B×C×T×H/16×W/16.

    The frames enter the CNN channels-last (NHWC), which oneDNN's CPU convolutions run faster than NCHW for this
    network: a training step of 16 clips 0.86 → 0.59 s, inference 0.41 → 0.33 s (2 threads, AVX2).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64), strides: tuple[int, ...] = (2, 2, 2, 1),
                 in_channels: int = 3):
        super().__init__()
        layers = _conv_bn_relu(in_channels, widths[0], 7, 2)
        cin = widths[0]
        for w, s in zip(widths, strides):
            layers += _conv_bn_relu(cin, w, 3, s) + _conv_bn_relu(w, w, 3, 1)
            cin = w
        self.cnn = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        f = self.cnn(x.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c).permute(0, 3, 1, 2))   # one copy, NHWC
        return f.view(b, t, *f.shape[1:]).transpose(1, 2)


class LucasKanadeFlow(nn.Module):
    """Dense optical flow between consecutive frames by Lucas–Kanade at 1/``scale`` resolution, differentiable.

    B×3×T×H×W → B×2×T×H×W: (u, v) in pixels per frame at full resolution (x right, y down), zero at frame 0.
    Written by hand because OpenCV's flows have no gradient, which every gradient explainer needs through the
    model, and torchvision's RAFT needs weights that cannot be downloaded here. Lucas–Kanade solves, in each
    ``window``² neighbourhood, the 2×2 least-squares system of the brightness-constancy equation
    Ix·u + Iy·v + It = 0, with ``ridge`` added to the system's diagonal where the image is flat. At 1/4
    resolution a rotation of 15–30° per frame moves the actor's outline by about 1 pixel, where the linearisation
    holds: the sign of this flow's mean curl inside the actor's box alone is right for 30 of 30 rotate_cw and 29
    of 30 rotate_ccw hard test clips. The flow is computed in fp32 (the 2×2 solve is ill-conditioned in bf16).
    """

    def __init__(self, scale: int = 4, window: int = 5, ridge: float = 1e-4):
        super().__init__()
        self.scale, self.window, self.ridge = scale, window, ridge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        with torch.autocast(x.device.type, enabled=False):
            gray = F.avg_pool2d(x.float().mean(1).reshape(b * t, 1, h, w), self.scale).view(b, t, h // self.scale, -1)
            before, after = gray[:, :-1], gray[:, 1:]
            ix, iy = _central_differences((before + after) / 2)
            it = after - before
            sxx, sxy, syy, sxt, syt = (self._window_mean(p) for p in (ix * ix, ix * iy, iy * iy, ix * it, iy * it))
            sxx, syy = sxx + self.ridge, syy + self.ridge
            det = sxx * syy - sxy * sxy
            flow = torch.stack([sxy * syt - syy * sxt, sxy * sxt - sxx * syt], 1) * (self.scale / det).unsqueeze(1)
            flow = F.pad(flow, (0, 0, 0, 0, 1, 0))                                   # B×2×T×h×w, zero at t=0
            flow = F.interpolate(flow, size=(t, h, w), mode="trilinear", align_corners=False)
        return flow.to(x.dtype)

    def _window_mean(self, z: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(z.flatten(0, 1), self.window, 1, self.window // 2, count_include_pad=False).view(z.shape)


def _central_differences(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx and d/dy of B×T×H×W images by central differences (border pixels repeated)."""
    p = F.pad(z, (1, 1, 1, 1), mode="replicate")
    return (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2, (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2


class CNNLSTM(nn.Module):
    """Per-frame CNN → flatten and max-pool → Linear → LSTM → per-step logits averaged over time; 1.5 M parameters.

    The per-frame features are flattened, so that the recurrent part sees where the object is, and next to that
    max-pooled over space, so that a motion detector (such as a curl of the flow) reads the same wherever the
    actor is. Each frame enters the CNN with its difference to the previous frame and the optical flow between
    them (8 channels; both zero for the first frame). With RGB alone the LSTM had to infer motion from per-frame
    embeddings and stalled at 60 %; with the difference it reached 79 % but still could not tell the sense of a
    rotation, which the flow's curl shows directly.
    """

    def __init__(self, num_classes: int = 10, size: int = 112, hidden: int = 256):
        super().__init__()
        self.flow = LucasKanadeFlow()
        self.frames = FrameEncoder(in_channels=8)
        cells = (size // 16) ** 2
        self.embed = nn.Sequential(nn.Linear(self.frames.out_channels * (cells + 1), hidden), nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        previous = torch.cat([x[:, :, :1], x[:, :, :-1]], 2)
        f = self.frames(torch.cat([x, x - previous, self.flow(x)], 1))     # B×C×T×h×w
        f = f.transpose(1, 2)
        f = torch.cat([f.flatten(2), f.amax((3, 4))], 2)                   # B×T×(C·h·w + C)
        # cuDNN's LSTM has no backward in eval mode, which every gradient explainer needs: use PyTorch's own then.
        cudnn = torch.backends.cudnn
        with cudnn.flags(enabled=cudnn.enabled and (self.training or not torch.is_grad_enabled()),
                         benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=cudnn.allow_tf32):
            steps, _ = self.lstm(self.embed(f))
        return self.fc(steps).mean(1)


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoMAESmall(nn.Module):
    """A small VideoMAE: transformers' ``VideoMAEForVideoClassification`` (the class the Hub's VideoMAEs load into)
    at 16×112×112 with ``tubelet``×16×16 tubelets (4×7×7 tokens at the default 4), ``depth`` blocks of width
    ``width`` with ``heads`` heads, fixed sinusoidal positions and a mean-pooled readout (no CLS token).
    ``model`` is the transformers module; ``forward`` takes B×3×T×H×W like the other embedded models."""

    def __init__(self, num_classes: int = 10, width: int = 128, depth: int = 4, heads: int = 4, tubelet: int = 4):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        config = VideoMAEConfig(image_size=112, patch_size=16, num_frames=16, tubelet_size=tubelet, hidden_size=width,
                                num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * width,
                                num_labels=num_classes, use_mean_pooling=True)
        self.model = VideoMAEForVideoClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x.transpose(1, 2)).logits


ARCHITECTURES = {"r2plus1d_small": R2Plus1DSmall, "cnn_lstm": CNNLSTM, "videomae_small": VideoMAESmall}


def build(arch: str, num_classes: int, **kwargs) -> nn.Module:
    """Instantiate an embedded architecture by name."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown embedded architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_classes=num_classes, **kwargs)
