"""Shared plumbing of every explainer, written once.

* ``Context`` — what a method sees: the model, the clip, the target, the score, a seeded generator, the batch
  cap, and the only two ways to run the model (``scores`` for forward-only batches under
  ``torch.inference_mode``, ``gradients`` for input gradients); both batch under the memory cap, count the
  passes and report progress, so every method gets counting, batching and cancelling for free.
* ``forward`` — one forward pass in fp32, or in bf16 for forward-only paths (the ``precision`` switch);
  ``bf16_is_native`` — whether the device has bf16 arithmetic; ``default_batch`` — the batch cap when none is
  given (by device).
* Hooks as context managers that always remove themselves (``capture``, ``relu_not_inplace``, ``counting``).
* Map utilities: ``upsample`` to T×H×W, ``normalise`` to [0, 1], ``to_volume`` for transformer tokens.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ProgressFn = Callable[[float, str], "bool | None"]
PRECISIONS = ("fp32", "bf16")


def forward(model: nn.Module, xs: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """``model(xs)`` as fp32 logits. ``precision="bf16"`` runs it under bf16 autocast with the clips in
    ``channels_last_3d`` layout: 1.7–2.5× faster on CPUs with bf16 units, probabilities within a few 1e-3
    (BENCHMARKS.md). Autograd goes through it: the EP family optimises its masks through bf16 passes when asked."""
    if precision == "fp32":
        return model(xs).float()
    if precision != "bf16":
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if not bf16_is_native(xs.device):
        warnings.warn("this CPU has no bf16 arithmetic (AVX512-BF16 or AMX): bf16 is emulated, and forwards were "
                      "12-19x slower than fp32 on such a CPU; use precision='fp32'", RuntimeWarning, stacklevel=2)
    with torch.autocast(xs.device.type, dtype=torch.bfloat16):
        return model(xs.contiguous(memory_format=torch.channels_last_3d)).float()


def bf16_is_native(device: torch.device | str) -> bool:
    """True on CUDA and on CPUs with AVX512-BF16 or AMX. Elsewhere autocast emulates bf16: on an AVX2-only EPYC
    the embedded models' forwards were 12–19× and training steps 9–12× slower than fp32 (``python -m
    zoo.bench_precision``, BENCHMARKS.md)."""
    if torch.device(device).type == "cuda":
        return True
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def default_batch(device: torch.device | str) -> int:
    """Clips per batched pass when the caller does not say: 32 on a GPU; 4 on a CPU, where larger batches cost
    more per clip (up to 1.7× for the CNN-LSTM at 16, BENCHMARKS.md) and memory grows with no gain."""
    return 32 if torch.device(device).type == "cuda" else 4


class Cancelled(RuntimeError):
    """Raised inside a method when the progress callback returned False."""


@dataclass
class PassCounter:
    """Clips sent forward and clips whose target score was back-propagated."""

    forward: int = 0
    backward: int = 0


@dataclass
class Context:
    """Everything one explanation needs; methods never call the model except through ``scores``/``gradients``.

    The clean clip's logits, and the target they decide when none was asked for, come from the first fp32 pass
    of the unperturbed clip (a batch that is ``ctx.x`` or a detached view of it), so a method that starts with
    one gradient pass of the clip costs one forward + one backward in all. A method that never passes the clean
    clip gets them from one extra forward on first use.
    """

    model: nn.Module
    x: torch.Tensor                      # 1×C×T×H×W, normalised
    requested_target: int | None         # None: the top-1 class
    score: str                           # "logit" | "prob"
    generator: torch.Generator
    max_batch: int                       # clips per batched pass
    progress: ProgressFn | None = None
    counter: PassCounter = field(default_factory=PassCounter)
    precision: str = "fp32"              # of the passes in ``scores`` and ``objective`` ("fp32" | "bf16")
    _logits: torch.Tensor | None = None
    _done: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        """(T, H, W) of the clip."""
        return tuple(self.x.shape[2:])  # type: ignore[return-value]

    @property
    def logits(self) -> torch.Tensor:
        """The clean clip's fp32 logits (K)."""
        if self._logits is None:
            with torch.inference_mode():
                self._logits = self.model(self.x).float()[0]
            self.counter.forward += 1
        return self._logits

    @property
    def target(self) -> int:
        """The explained class: the requested one, checked against the model's classes, or the top-1."""
        logits = self.logits
        if self.requested_target is None:
            self.requested_target = int(logits.argmax())
        elif not 0 <= int(self.requested_target) < logits.numel():
            n = logits.numel()
            raise ValueError(f"target class {self.requested_target} does not exist: the model has {n} classes "
                             f"(0–{n - 1})")
        return int(self.requested_target)

    def _keep_clean(self, xs: torch.Tensor, logits: torch.Tensor, precision: str) -> None:
        """Remember the logits of a pass of the unperturbed clip (``xs`` is ``ctx.x`` or a detached view of it;
        fp32 only), saving the separate clean forward."""
        x = self.x
        if (self._logits is None and precision == "fp32" and xs.shape == x.shape and xs.dtype == x.dtype
                and xs.stride() == x.stride() and xs.data_ptr() == x.data_ptr()):
            self._logits = logits[0].detach().float()

    def report(self, fraction: float, message: str = "") -> None:
        """Tell the caller how far we are; raise ``Cancelled`` if it asks to stop."""
        self._done = fraction
        if self.progress is not None and self.progress(min(max(fraction, 0.0), 1.0), message) is False:
            raise Cancelled(message or "cancelled")

    def clean_score(self) -> float:
        """The target score of the unperturbed clip (from ``logits`` at fp32; one forward at bf16, so that
        score differences compare clips at the same precision)."""
        if self.precision == "fp32":
            return float(self.target_score(self.logits[None]))
        return float(self.scores(lambda sl: self.x, 1, span=(0.0, 0.0)))

    def target_score(self, logits: torch.Tensor, score: str | None = None) -> torch.Tensor:
        logits = logits.float()
        if (score or self.score) == "prob":
            return logits.softmax(-1)[:, self.target]
        return logits[:, self.target]

    def slices(self, n: int) -> Iterator[slice]:
        """Slices of ``range(n)`` of at most ``max_batch`` items."""
        for start in range(0, n, self.max_batch):
            yield slice(start, min(start + self.max_batch, n))

    def batches(self, n: int, span: tuple[float, float] | None = None, message: str = "") -> Iterator[slice]:
        """``slices(n)``, with progress advancing over ``span``."""
        lo, hi = span if span is not None else (self._done, 1.0)
        for sl in self.slices(n):
            self.report(lo + (hi - lo) * sl.start / max(n, 1), message)
            yield sl
        self.report(hi, message)

    def scores(self, make: Callable[[slice], torch.Tensor], n: int, span: tuple[float, float] | None = None,
               message: str = "", reduce: Callable[[torch.Tensor, torch.Tensor, slice], None] | None = None,
               score: str | None = None) -> torch.Tensor:
        """Target scores of ``n`` clips, built batch by batch by ``make(slice) -> B×C×T×H×W``; forward only
        under ``torch.inference_mode``, at ``precision``. ``reduce(scores, inputs, slice)`` is called per batch if given;
        ``score`` overrides the context's "logit"/"prob"."""
        out = []
        with torch.inference_mode():
            for sl in self.batches(n, span, message):
                xs = make(sl)
                logits = forward(self.model, xs, self.precision)
                self._keep_clean(xs, logits, self.precision)
                s = self.target_score(logits, score)
                self.counter.forward += len(xs)
                if reduce is not None:
                    reduce(s, xs, sl)
                out.append(s)
        return torch.cat(out) if out else torch.empty(0)

    def gradients(self, make: Callable[[slice], torch.Tensor], n: int, span: tuple[float, float] | None = None,
                  message: str = "", reduce: Callable[[torch.Tensor, torch.Tensor, slice], None] | None = None
                  ) -> torch.Tensor | None:
        """d(target score)/d(input) for ``n`` clips built by ``make``; returns N×C×T×H×W, or, with ``reduce``,
        calls ``reduce(grads, inputs, slice)`` per batch and returns None (keeps memory flat)."""
        out = []
        for sl in self.batches(n, span, message):
            xs = make(sl).detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(xs)
                self._keep_clean(xs, logits, "fp32")
                s = self.target_score(logits)
                (g,) = torch.autograd.grad(s.sum(), xs)
            self.counter.forward += len(xs)
            self.counter.backward += len(xs)
            if reduce is None:
                out.append(g)
            else:
                reduce(g, xs.detach(), sl)
        return torch.cat(out) if reduce is None else None

    def objective(self, xs: torch.Tensor) -> torch.Tensor:
        """Differentiable target scores of a batch, for methods that optimise a mask: log p for score="prob"
        (−log p is the papers' loss), the logit otherwise, at ``precision``. Counts one forward and one backward
        per clip (the caller back-propagates through them)."""
        logits = forward(self.model, xs, self.precision)
        self._keep_clean(xs, logits, self.precision)
        self.counter.forward += len(xs)
        self.counter.backward += len(xs)
        return logits.log_softmax(-1)[:, self.target] if self.score == "prob" else logits[:, self.target]

    def rgb(self) -> torch.Tensor:
        """The clip as RGB in [0, 1], T×H×W×3: un-normalised with the model's mean/std where the model has an
        input spec, otherwise min-max scaled (for methods that look at the pixels: flow, superpixels)."""
        x = self.x[0].detach().float().cpu()
        spec = getattr(self.model, "input_spec", None)
        if spec is not None:
            x = x * torch.tensor(spec.std).view(3, 1, 1, 1) + torch.tensor(spec.mean).view(3, 1, 1, 1)
        else:
            x = normalise(x)
        return x.clamp(0, 1).permute(1, 2, 3, 0)


# ---------------------------------------------------------------------------------------------- hooks
@contextlib.contextmanager
def capture(module: nn.Module, grad: bool = True) -> Iterator[dict]:
    """Record ``module``'s forward output as ``store["act"]`` and, with ``grad``, its gradient as
    ``store["grad"]``; tuple outputs (transformer blocks) use their first element. Hooks are removed on exit,
    also on error."""
    store: dict = {}

    def hook(_m, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        store["act"] = out
        if grad and out.requires_grad:
            out.register_hook(lambda g: store.__setitem__("grad", g))

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextlib.contextmanager
def relu_not_inplace(model: nn.Module) -> Iterator[None]:
    """Turn every inplace ``nn.ReLU`` into an out-of-place one for the duration (backward hooks need it)."""
    changed = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for m in changed:
        m.inplace = False
    try:
        yield
    finally:
        for m in changed:
            m.inplace = True


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode and restore the model's own mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


# ---------------------------------------------------------------------------------------------- maps
def upsample(volume: torch.Tensor, size: tuple[int, int, int], mode: str = "trilinear") -> torch.Tensor:
    """A T'×H'×W' map → T×H×W (trilinear by default; ``nearest`` repeats time slices)."""
    v = volume.float()[None, None]
    kw = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(v, size=size, mode=mode, **kw)[0, 0]


def normalise(saliency: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1]; a constant map becomes all zeros."""
    s = saliency.float()
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else torch.zeros_like(s)


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
    if hasattr(model, "layer"):
        return model.layer(layer)
    return model.get_submodule(layer)


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma))) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def blur_frames(x: torch.Tensor, sigma: float, radius: int | None = None, padding: str = "reflect") -> torch.Tensor:
    """Gaussian blur of every frame of B×C×T×H×W (separable); time is not blurred. ``padding`` "reflect"
    (replicate where the kernel is wider than the frame) or "zeros" (TorchRay's: borders fade to 0)."""
    k = gaussian_kernel(sigma, radius).to(x)
    r = (len(k) - 1) // 2
    b, c, t, h, w = x.shape
    f = x.transpose(1, 2).reshape(b * t * c, 1, h, w)
    if padding == "zeros":
        f = F.conv2d(F.conv2d(f, k.view(1, 1, 1, -1), padding=(0, r)), k.view(1, 1, -1, 1), padding=(r, 0))
    else:
        f = F.conv2d(F.pad(f, (r, r, 0, 0), mode="reflect" if r < w else "replicate"), k.view(1, 1, 1, -1))
        f = F.conv2d(F.pad(f, (0, 0, r, r), mode="reflect" if r < h else "replicate"), k.view(1, 1, -1, 1))
    return f.reshape(b, t, c, h, w).transpose(1, 2)
