"""What a method sees and returns: the method contract's runtime half (the registry holds the other).

* ``Context`` — the model, the clip, the target, the score, a seeded generator, the batch cap, and the only two
  ways to run the model (``scores`` for forward-only batches under ``torch.inference_mode``, ``gradients`` for
  input gradients; ``objective`` for methods that optimise a mask); all of them batch under the memory cap, count
  the passes and report progress, so every method gets counting, batching and cancelling for free.
* ``MethodOutput`` — what a method function returns before ``explain`` normalises it.
* ``Cancelled`` — raised when the progress callback returns False.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from explainers.device import forward
from explainers.maps import normalise

ProgressFn = Callable[[float, str], "bool | None"]


@dataclass
class MethodOutput:
    """A method's result: ``saliency`` T×H×W, larger = more important (any scale); ``raw`` the signed map where one
    exists (e.g. C×T×H×W gradients); ``extras`` what the app draws beside the map (tracks, supervoxels, masks)."""

    saliency: torch.Tensor
    raw: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)


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
    _message: str = ""

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
        self._done, self._message = fraction, message
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
        under ``torch.inference_mode``, at ``precision``. ``reduce(scores, inputs,
                                                                   slice)`` is called per batch if given;
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
        per clip (the caller back-propagates through them). Each call is a point where a cancel stops the method."""
        self.report(self._done, self._message)
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


