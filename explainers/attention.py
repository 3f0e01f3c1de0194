"""The attention family, for video transformers: raw attention, attention rollout, gradient-weighted rollout and
Chefer et al.'s relevance (docs/methods.md §22).

Every method reads the model's attention probabilities, captured by hooks on its attention modules (those holding
the key projection: ``key``, ``k_proj`` or a fused ``qkv``), averaged or gradient-weighted over heads, and
propagates the readout's row through the blocks as a row vector (never an N×N product): the readout is the CLS
token where the card's token grid has a prefix, the mean over all tokens where it has none (VideoMAE's mean
pooling). The row is laid out on the token grid and upsampled like a CAM.

TimeSformer's divided space-time attention is two mixing steps per block: temporal attention within each spatial
site (the CLS token passes through), then spatial attention within each frame, where the CLS token is repeated
per frame and its outputs averaged. Hand-written: Captum and pytorch-grad-cam have no attention rollout or
relevance propagation, and no library reads the attention of divided space-time blocks.
"""
from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from explainers.cam import UPSAMPLE, layer_map
from explainers.context import Context, MethodOutput
from explainers.layers import forward_hooks, to_volume
from explainers.registry import one_forward, one_pair, register

PROJECTIONS = ("key", "k_proj", "qkv")


_found: weakref.WeakKeyDictionary[nn.Module, list[tuple[str, nn.Module]]] = weakref.WeakKeyDictionary()


def _with_projections(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules holding a key projection, found once per model object: the walk costs as much as a tenth of a
    small transformer's forward, and every call of a method needs it twice."""
    if model not in _found:
        _found[model] = [(name, m) for name, m in model.named_modules()
                         if any(isinstance(m._modules.get(p), nn.Linear) for p in PROJECTIONS)]
    return _found[model]


def _readable(module: nn.Module) -> bool:
    """Whether the attention probabilities of ``module`` can be captured: transformers' attention, which picks its
    kernel by ``config._attn_implementation`` and returns them, or attention that passes them through an
    ``attn_drop`` dropout (transformers' TimeSformer)."""
    return (hasattr(getattr(module, "config", None), "_attn_implementation")
            or isinstance(getattr(module, "attn_drop", None), nn.Dropout))


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules that compute attention probabilities that can be read (those holding a key projection, in
    transformers' attention), in registration order, which is not always the order they run in
    (``capture_attention`` records calls)."""
    return [(name, m) for name, m in _with_projections(model) if _readable(m)]


def not_applicable(model: nn.Module) -> str | None:
    """Why the attention family cannot explain ``model``, or None when it can."""
    if not attention_modules(model):
        if _with_projections(model):
            return ("its attention layers do not give out their probabilities (the attention family reads "
                    "transformers' attention: VideoMAE, TimeSformer, ViViT)")
        return "it has no attention layers (the attention family explains transformers)"
    if getattr(model, "token_grid", None) is None:
        return "its model card declares no token grid, so attention cannot be mapped back to the clip"
    return None


@dataclass
class Step:
    """One mixing step of the token sequence, head-reduced: ``w`` is N×N ("full"), H'W'×T'×T' ("time": within
    each site) or T'×(1+H'W')×(1+H'W') ("space": within each frame, CLS first). ``probabilities``: ``w`` holds
    attention probabilities, so the CLS token, which temporal attention passes through, keeps itself (1), and a
    spatial step's per-frame CLS rows are averaged as the model averages them; otherwise ``w`` holds relevances
    (gradient × attention), which the CLS gets none of in a temporal step and which add up over frames."""

    kind: str
    w: torch.Tensor
    probabilities: bool

    def right(self, r: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """r @ W for a row vector r over all N tokens (prefix first, then the grid in the model's order)."""
        if self.kind == "full":
            return r @ self.w
        t, h, w = grid
        patches = r[1:].view(h * w, t)                                    # TimeSformer's "hwt" token order
        if self.kind == "time":
            mixed = torch.einsum("st,stu->su", patches, self.w).reshape(-1)
            return torch.cat([r[:1] * float(self.probabilities), mixed])
        rows = torch.cat([r[:1].expand(t, 1) * self._cls_share(t), patches.T], 1)      # T'×(1+H'W')
        out = torch.einsum("ti,tij->tj", rows, self.w)
        return torch.cat([out[:, 0].sum(0, keepdim=True), out[:, 1:].T.reshape(-1)])

    def row_sums(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """W @ 1: each token's row sum, in token order."""
        if self.kind == "full":
            return self.w.sum(-1)
        t = grid[0]
        if self.kind == "time":
            return torch.cat([self.w.new_full((1,), float(self.probabilities)), self.w.sum(-1).reshape(-1)])
        sums = self.w.sum(-1)                                                          # T'×(1+H'W')
        return torch.cat([sums[:, 0].sum(0, keepdim=True) * self._cls_share(t), sums[:, 1:].T.reshape(-1)])

    def _cls_share(self, frames: int) -> float:
        return 1 / frames if self.probabilities else 1.0


def _kind(name: str, divided: bool) -> str:
    return ("time" if "temporal" in name else "space") if divided else "full"


PROBS = "videoxai_probs"


def _attention_with_probabilities(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                  attention_mask: torch.Tensor | None, scaling: float | None = None,
                                  dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' eager attention (eval mode: no dropout) with the queries scaled before the product, N·d
    multiplications instead of N², which saves a tenth of a VideoMAE-B forward + backward on a CPU. In a pass that
    nothing will differentiate, the softmax overwrites the scores: one B×heads×N×N tensor fewer (118 MB per
    VideoMAE-B block), 13 % less time per block."""
    scores = torch.matmul(query * (scaling if scaling is not None else query.shape[-1] ** -0.5), key.transpose(2, 3))
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(-1) if scores.requires_grad else torch.softmax(scores, -1, out=scores)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


_switch_lock = threading.Lock()
_switched: Counter[int] = Counter()         # id(config) -> methods running that need its probabilities
_saved_kernel: dict[int, str] = {}          # id(config) -> its own kernel, restored when the last one ends


@contextlib.contextmanager
def _returning_probabilities(modules: list[nn.Module]) -> Iterator[None]:
    """transformers' fused kernels (SDPA) return no probabilities: while a method runs, the attention modules
    that pick their kernel by ``config._attn_implementation`` use ``_attention_with_probabilities``. Counted per
    config, so that methods running side by side on one model in several threads keep it until the last one ends
    (other passes meanwhile get the same outputs, through the slower kernel)."""
    configs = {id(c): c for m in modules if (c := getattr(m, "config", None)) is not None
               and hasattr(c, "_attn_implementation")}
    if configs:
        from transformers import AttentionInterface

        AttentionInterface.register(PROBS, _attention_with_probabilities)
    with _switch_lock:
        for key, c in configs.items():
            if not _switched[key]:
                _saved_kernel[key] = c._attn_implementation
                c._attn_implementation = PROBS
            _switched[key] += 1
    try:
        yield
    finally:
        with _switch_lock:
            for key, c in configs.items():
                _switched[key] -= 1
                if not _switched[key]:
                    c._attn_implementation = _saved_kernel.pop(key)
                    del _switched[key]


def head_relevance(grad: torch.Tensor, probs: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """mean over heads of relu(grad ⊙ probs), B×heads×N×M → B×N×M, a block of query rows at a time: three
    passes over a block that stays in cache instead of over the whole B×heads×N×M tensor (~3× faster on a CPU)."""
    out = probs.new_empty(probs.shape[0], *probs.shape[2:], dtype=torch.float32)
    for i in range(0, probs.shape[2], rows):
        block = grad[:, :, i:i + rows].float() * probs[:, :, i:i + rows].float()
        torch.mean(block.clamp_(min=0), 1, out=out[:, i:i + rows])
    return out


@contextlib.contextmanager
def capture_attention(model: nn.Module, gradients: bool) -> Iterator[list[dict]]:
    """One dict per attention call, in forward order (TimeSformer registers its spatial attention before the
    temporal one it runs after): its kind, ``probs`` (heads averaged) and, with ``gradients`` and after a backward
    pass, ``relevance`` = mean over heads of relu(∂score/∂A ⊙ A). Hooks and the attention kernel are restored on
    exit, also on error."""
    found = attention_modules(model)
    divided = any("temporal" in name for name, _ in found)
    records: list[dict] = []

    def keep(kind: str, probs: torch.Tensor) -> None:
        record = {"kind": kind, "probs": probs.detach().float().mean(1)}
        records.append(record)
        if gradients and probs.requires_grad:        # the hook holds a detached alias: ``probs`` itself would
            detached = probs.detach()                # make a loop through its autograd node that is never freed
            probs.register_hook(lambda g: record.__setitem__("relevance", head_relevance(g, detached)))

    hooks = []
    for name, m in found:
        kind = _kind(name, divided)
        dropout = getattr(m, "attn_drop", None)      # TimeSformer: probabilities pass through this dropout
        if isinstance(dropout, nn.Dropout):
            hooks.append((dropout, lambda _m, _i, out, k=kind: keep(k, out)))
        else:
            hooks.append((m, lambda _m, _i, out, k=kind: keep(k, out[1])))
    with forward_hooks(hooks), _returning_probabilities([m for _, m in found]):
        yield records


def _steps(records: list[dict], key: str) -> list[Step]:
    missing = [r["kind"] for r in records if key not in r]
    if missing:
        raise RuntimeError(f"{len(missing)} attention layer(s) gave no {key}: is every block on the path to the "
                           f"output?")
    return [Step(r["kind"], r[key][0] if r["kind"] == "full" else r[key], key == "probs") for r in records]


def _readout(ctx: Context) -> torch.Tensor:
    """The row the classifier reads: the CLS token's, or the mean over tokens where the grid has no prefix."""
    tg = ctx.model.token_grid
    n = tg.prefix + math.prod(tg.grid)
    return torch.nn.functional.one_hot(torch.tensor(0), n).float() if tg.prefix else torch.full((n,), 1 / n)


def _finish(ctx: Context, row: torch.Tensor, mode: str) -> MethodOutput:
    """The readout's row over the tokens, laid out on the token grid (prefix dropped) and upsampled like a CAM."""
    tg = ctx.model.token_grid
    return layer_map(ctx, to_volume(row[None, :, None], tg.grid, tg.prefix, tg.order)[0, 0], mode)


def _run(ctx: Context, gradients: bool) -> list[dict]:
    with capture_attention(ctx.model, gradients) as records:
        if gradients:
            ctx.gradients(lambda sl: ctx.x, 1, message="forward and backward")
        else:
            ctx.scores(lambda sl: ctx.x, 1, message="forward")
    return records


def _propagate(ctx: Context, steps: list[Step], residual: str) -> torch.Tensor:
    """The readout row pushed through the steps from the last block to the first:
    "half" r ← ½ r + ½ r W (Abnar & Zuidema's Â = ½A + ½I); "normalised" r ← r D⁻¹(I + W) with D the row sums
    of I + W; "add" r ← r + r W (Chefer's R ← R + W R, read from the readout row)."""
    grid = ctx.model.token_grid.grid
    r = _readout(ctx)
    for step in reversed(steps):
        if residual == "half":
            r = 0.5 * r + 0.5 * step.right(r, grid)
        elif residual == "normalised":
            r = r / (1 + step.row_sums(grid))
            r = r + step.right(r, grid)
        else:
            r = r + step.right(r, grid)
    return r


COMMON = dict(family="attention", needs="attention", not_applicable=not_applicable, params=(UPSAMPLE,))
FORWARD = dict(cost="1 forward", passes=one_forward)
PAIR = dict(cost="1 forward + 1 backward", passes=one_pair)


@register("attention", name="Raw attention", paper="the last block's attention; docs/methods.md §22", **COMMON,
          **FORWARD,
          description="How much the readout (the CLS token, or every token for mean-pooled models) attends to "
                      "each token in the last block, averaged over heads. Not class-specific, and blind to "
                      "everything the earlier blocks mixed into a token.")
def attention(ctx: Context, upsample: str) -> MethodOutput:
    steps = _steps(_run(ctx, gradients=False), "probs")
    return _finish(ctx, steps[-1].right(_readout(ctx), ctx.model.token_grid.grid), upsample)


@register("attention_rollout", name="Attention rollout", paper="Abnar & Zuidema 2020", **COMMON, **FORWARD,
          description="Follows attention through every block: each block's head-averaged attention, with the "
                      "residual connection as an equal share of identity, multiplied from the readout down to "
                      "the input tokens. Not class-specific.")
def attention_rollout(ctx: Context, upsample: str) -> MethodOutput:
    return _finish(ctx, _propagate(ctx, _steps(_run(ctx, gradients=False), "probs"), "half"), upsample)


@register("grad_rollout", name="Gradient-weighted rollout",
          paper="rollout of gradient-weighted attention (Chefer et al. 2021's weighting, as in vit-explain)",
          **COMMON, **PAIR,
          description="Rollout over attention weighted by the class score's gradient, negative parts removed, "
                      "identity added and rows normalised: class-specific attention flow.")
def grad_rollout(ctx: Context, upsample: str) -> MethodOutput:
    return _finish(ctx, _propagate(ctx, _steps(_run(ctx, gradients=True), "relevance"), "normalised"),
                   upsample)


@register("chefer", name="Chefer relevance", paper="Chefer, Gur & Wolf 2021 (generic attention-model explainability)",
          **COMMON, **PAIR,
          description="Relevance accumulated block by block, R ← R + mean over heads of relu(gradient ⊙ "
                      "attention)·R, and read from the readout's row: class-specific, and the tokens the readout "
                      "cannot reach get none.")
def chefer(ctx: Context, upsample: str) -> MethodOutput:
    return _finish(ctx, _propagate(ctx, _steps(_run(ctx, gradients=True), "relevance"), "add"), upsample)
