"""What a method function returns before ``explain`` normalises it and wraps it in an ``Explanation``."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class MethodOutput:
    saliency: torch.Tensor                 # T×H×W, larger = more important (any scale)
    raw: torch.Tensor | None = None        # the signed map where one exists (e.g. C×T×H×W gradients)
    extras: dict = field(default_factory=dict)
