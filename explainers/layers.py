"""Hooks and layer plumbing: context managers that always remove themselves (``forward_hooks``, ``capture``,
``eval_mode``), and a target layer's output laid out as a C×T'×H'×W' volume (``to_volume``, ``layer_volume``)."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from explainers.context import Context


@contextlib.contextmanager
def forward_hooks(hooks: Iterable[tuple[nn.Module, Callable]]) -> Iterator[None]:
    """Each (module, hook) registered as a forward hook for the duration, removed on exit, also on error. A hook acts
    only on the passes of the thread that registered it: one model object may serve several threads at once (the
    app's lanes run requests side by side on one cached model), and a request's hooks must not reach another's
    passes."""
    owner = threading.get_ident()

    def own(hook: Callable) -> Callable:
        return lambda module, inputs, output: hook(module, inputs, output) if threading.get_ident() == owner else None
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(own(hook)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def capture(module: nn.Module, grad: bool = True) -> Iterator[dict]:
    """Record ``module``'s forward output (detached) as ``store["act"]`` and, with ``grad``, its gradient as
    ``store["grad"]``; tuple outputs (transformer blocks) use their first element (``forward_hooks``: this
    thread's passes only). Detached, because the gradient hook lives in the output's autograd node and refers to
    ``store``: a store holding the output itself would close a loop through C++ that Python's garbage collector
    cannot see, and every call would leak the layer's activation and gradient."""
    store: dict = {}

    def hook(_m, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        store["act"] = out.detach()
        if grad and out.requires_grad:
            out.register_hook(lambda g: store.__setitem__("grad", g))

    with forward_hooks([(module, hook)]):
        yield store


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode and restore the model's own mode afterwards. A model already in eval mode throughout (the
    usual case) is left untouched: one walk over its modules."""
    training = [m for m in model.modules() if m.training]
    if training:
        model.eval()
    try:
        yield
    finally:
        for m in training:
            m.training = True


def to_volume(activation: torch.Tensor, grid: tuple[int, int, int] | None, prefix: int = 0,
              order: str = "thw") -> torch.Tensor:
    """Any layer output → B×C×T'×H'×W'.

    5-D tensors pass through (channels first, or channels last with ``order="thwc"``); token sequences B×N×C
    drop ``prefix`` tokens and are laid out on ``grid`` (T', H', W') in ``order`` ("thw" or "hwt").
    """
    if activation.dim() == 5:
        return activation.permute(0, 4, 1, 2, 3) if order == "thwc" else activation
    if activation.dim() != 3 or grid is None:
        raise ValueError(f"cannot map a layer output of shape {tuple(activation.shape)} to a T×H×W volume; "
                         f"the model card must declare its token grid")
    b, _, c = activation.shape
    t, h, w = grid
    tokens = activation[:, prefix:prefix + t * h * w]
    if order == "hwt":
        return tokens.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
    return tokens.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)


def layer_volume(ctx: Context, store: dict, key: str) -> torch.Tensor:
    """The captured activation or gradient of the target layer as B×C×T'×H'×W'."""
    tg = getattr(ctx.model, "token_grid", None)
    return to_volume(store[key], tg.grid if tg else None, tg.prefix if tg else 0, tg.order if tg else "thw")


def resolve_layer(model: nn.Module, layer: str | None) -> nn.Module:
    """The named layer, or the model card's first target layer."""
    if layer is None:
        layers = getattr(model, "target_layers", ())
        if not layers:
            raise ValueError("this method needs a target layer: pass layer=... or use a model card that names one")
        layer = layers[0]
    try:
        found = model.layer(layer) if hasattr(model, "layer") else model.get_submodule(layer)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        found = None
    if not isinstance(found, nn.Module):
        raise ValueError(f"the model has no layer {layer!r}; give a submodule's dotted name (the card's target "
                         f"layers: {', '.join(getattr(model, 'target_layers', ())) or 'none'})")
    return found


