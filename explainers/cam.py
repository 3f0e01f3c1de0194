"""Class activation maps on a layer named by the model card: Grad-CAM, Grad-CAM++ and Saliency Tubes.

The layer's activation is read as B×C×T'×H'×W' (video transformers' tokens are laid out on the card's token
grid), so the same code serves 3-D CNNs, the CNN-RNN's per-frame features and transformers. Hand-written: the
token-grid layout comes from the model card, which pytorch-grad-cam's reshape hooks do not read (docs/methods.md §8).
"""
from __future__ import annotations

import torch
from torch import nn

from explainers.context import Context, MethodOutput
from explainers.layers import capture, layer_volume, resolve_layer
from explainers.maps import upsample
from explainers.registry import Param, one_forward, one_pair, register

LAYER = Param("layer", None, "module name of the target layer (default: the model card's)")
UPSAMPLE = Param("upsample", "trilinear", "how the T'×H'×W' map grows to T×H×W", choices=("trilinear", "nearest"))


def _layer_and_gradient(ctx: Context, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    with capture(resolve_layer(ctx.model, layer)) as store:
        ctx.gradients(lambda sl: ctx.x, 1, message="forward and backward")
    if "grad" not in store:
        raise RuntimeError("the target layer received no gradient: is it on the path to the output?")
    return layer_volume(ctx, store, "act")[0].detach(), layer_volume(ctx, store, "grad")[0]


def layer_map(ctx: Context, cam: torch.Tensor, mode: str, **extras) -> MethodOutput:
    """A map at a layer's resolution (T'×H'×W') as a method's output: upsampled to the clip by ``mode``, itself
    kept as ``raw``."""
    return MethodOutput(upsample(cam, ctx.shape, mode), raw=cam, extras={"layer_shape": tuple(cam.shape), **extras})


@register("grad_cam", name="Grad-CAM", family="cam", paper="Selvaraju et al. 2017; 3-D as in [S0]/[S1]",
          needs="target_layer", cost="1 forward + 1 backward", passes=one_pair,
          params=(LAYER, Param("per_time_slice", False, "weights per time slice, as the code of [S1]"), UPSAMPLE),
          description="Weights the feature maps of a late layer by how much the class score depends on them, "
                      "and keeps the positive evidence. Coarse (the layer's resolution, e.g. 8×7×7) but "
                      "class-specific and nearly free.")
def grad_cam(ctx: Context, layer: str | None, per_time_slice: bool, upsample: str) -> MethodOutput:
    a, g = _layer_and_gradient(ctx, layer)                       # K×T'×H'×W'
    weights = g.mean((2, 3), keepdim=True) if per_time_slice else g.mean((1, 2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(0))
    return layer_map(ctx, cam, upsample)


@register("grad_cam_pp", name="Grad-CAM++", family="cam", paper="Chattopadhay et al. 2018; [S4] baseline",
          needs="target_layer", cost="1 forward + 1 backward", passes=one_pair, params=(LAYER, UPSAMPLE),
          description="Grad-CAM with per-location weights that favour every instance of the evidence, not "
                      "just the strongest; sums run over time and space.")
def grad_cam_pp(ctx: Context, layer: str | None, upsample: str) -> MethodOutput:
    a, g = _layer_and_gradient(ctx, layer)
    g2, g3 = g * g, g * g * g
    denom = 2 * g2 + a.sum((1, 2, 3), keepdim=True) * g3
    alpha = torch.where(g != 0, g2 / (denom + 1e-6 * (denom == 0)), torch.zeros_like(g))
    weights = (alpha * torch.relu(g)).sum((1, 2, 3), keepdim=True)
    return layer_map(ctx, torch.relu((weights * a).sum(0)), upsample)


def not_a_3d_cnn(model: nn.Module) -> str | None:
    """Saliency Tubes is defined for 3-D CNNs that end in global pooling and one linear layer ([S0], [S4]); a
    model whose card names another family is refused up front."""
    card = getattr(model, "card", None)
    if card is not None and card.family != "3d_cnn":
        return (f"it is defined for 3-D CNNs ending in pooling and one linear layer, and {card.name} is a "
                f"{card.family.replace('_', ' ')} (use Grad-CAM instead)")
    return None


def _classifier_row(model: nn.Module, target: int, channels: int) -> torch.Tensor:
    """The class weights of the final linear head (``nn.Linear`` or 1×1×1 ``nn.Conv3d``) reading the layer."""
    heads = [m for m in model.modules()
             if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv3d) and m.kernel_size == (1, 1, 1))]
    weight = heads[-1].weight.flatten(1) if heads else None
    if weight is None or weight.shape[1] != channels:
        raise ValueError(f"Saliency Tubes needs a global-pool → linear head reading the target layer's {channels} "
                         f"channels; this model's last linear layer does not (use Grad-CAM instead)")
    return weight[target].detach()


@register("saliency_tubes", name="Saliency Tubes", family="cam", paper="Stergiou et al. 2019; [S0] baseline",
          needs="target_layer", cost="1 forward", passes=one_forward, params=(LAYER, UPSAMPLE),
          not_applicable=not_a_3d_cnn,
          description="The last block's feature maps weighted by the classifier's weights for the class (CAM "
                      "for 3-D CNNs). Needs no gradient, only a network that ends in pooling and one linear layer.")
def saliency_tubes(ctx: Context, layer: str | None, upsample: str) -> MethodOutput:
    with capture(resolve_layer(ctx.model, layer), grad=False) as store:
        ctx.scores(lambda sl: ctx.x, 1, message="forward")
    a = layer_volume(ctx, store, "act")[0].float()
    w = _classifier_row(ctx.model, ctx.target, a.shape[0])
    return layer_map(ctx, torch.einsum("k,kthw->thw", w, a), upsample)
