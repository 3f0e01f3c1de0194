"""Load any zoo model as one uniform ``VideoClassifier`` (eval mode, frozen, B×3×T×H×W → logits).

Sources (a card's ``source.kind``):

* ``embedded`` — the small models trained in this repository, fp16 safetensors in ``assets/models``;
* ``torchvision`` — r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t, with their Kinetics-400 weights
  when cached locally (``weights: null`` gives random weights, for tests and for structure);
* ``hub`` — a Hub repo (pinned revision) holding ``config.json`` (``arch``, ``labels``) + ``model.safetensors``
  for a torchvision or embedded architecture;
* ``transformers`` — ``AutoModelForVideoClassification`` repos (VideoMAE, TimeSformer, ViViT), never with
  ``trust_remote_code``.

Every failure to load becomes a ``ModelLoadError`` with a message for a person.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from zoo import ASSETS
from zoo.architectures import batchnorms_as_affine, temporal_convs_as_2d
from zoo.cards import ModelCard, TokenGrid, load_card

TORCHVISION_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


class VideoClassifier(nn.Module):
    """The one object every explainer sees.

    ``forward(x)`` takes a normalised clip B×3×T×H×W and returns logits B×K. ``labels``, ``input_spec``,
    ``target_layers`` (module names inside this wrapper, for CAM methods) and ``token_grid`` (how a
    transformer layer's tokens map back to C×T'×H'×W') come from the card. Time-only 3-D convolutions of the
    network run as 2-D ones (``zoo.architectures.temporal_convs_as_2d``) and batch norms as per-channel affine
    maps (``batchnorms_as_affine``): the same function, faster on CPU.
    """

    def __init__(self, net: nn.Module, card: ModelCard, channels_first_time: bool = True):
        super().__init__()
        self.net = batchnorms_as_affine(temporal_convs_as_2d(net))
        self.card = card
        self._time_first = not channels_first_time  # transformers want B×T×C×H×W
        self.eval()
        self.requires_grad_(False)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.card.labels

    @property
    def input_spec(self):
        return self.card.input

    @property
    def target_layers(self) -> tuple[str, ...]:
        return tuple(f"net.{name}" for name in self.card.target_layers)

    @property
    def token_grid(self) -> TokenGrid | None:
        return self.card.token_grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._time_first:
            out = self.net(pixel_values=x.transpose(1, 2))
            return out.logits
        return self.net(x)

    def layer(self, name: str) -> nn.Module:
        """The submodule ``name``; integer parts may be negative (``encoder.layer.-1``)."""
        module: nn.Module = self
        for part in name.split("."):
            module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
        return module

    def train(self, mode: bool = True) -> VideoClassifier:
        """The wrapper stays in eval mode: batch statistics must never leak between perturbed clips."""
        return super().train(False)

    @torch.inference_mode()
    def top_k(self, x: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable labels of one clip with their softmax probabilities."""
        probs = self(x).float().softmax(-1)[0]
        values, idx = probs.topk(min(k, probs.numel()))
        return [(self.label(i), float(v)) for v, i in zip(values, idx.tolist())]

    def label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else f"class {index}"


# --------------------------------------------------------------------------------------------- weights I/O
def save_embedded_weights(model: nn.Module, path: Path) -> None:
    """Store a state dict as fp16 safetensors (floating tensors only are halved; accuracy changes by <0.2 pp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))


def read_embedded_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict stored by ``save_embedded_weights``, floating tensors back in fp32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}


def load_embedded_weights(model: nn.Module, path: Path) -> nn.Module:
    model.load_state_dict(read_embedded_weights(path))
    return model


# --------------------------------------------------------------------------------------------- builders
def _build_arch(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised embedded or torchvision architecture."""
    from zoo.architectures import ARCHITECTURES, build

    if arch in ARCHITECTURES:
        return build(arch, num_classes)
    if arch in TORCHVISION_ARCHS:
        import torchvision.models.video as tvv

        return getattr(tvv, arch)(weights=None, num_classes=num_classes)
    supported = ", ".join(sorted(ARCHITECTURES) + list(TORCHVISION_ARCHS))
    raise ModelLoadError(f"unknown architecture {arch!r}; supported: {supported}")


def _load_embedded(card: ModelCard) -> VideoClassifier:
    path = ASSETS / card.source["weights"]
    if not path.exists():
        raise ModelLoadError(f"the weights of {card.name} are missing ({path}); train them with "
                             f"`videoxai train --arch {card.source['arch']}`.")
    net = load_embedded_weights(_build_arch(card.source["arch"], len(card.labels)), path)
    return VideoClassifier(net, card)


def _load_torchvision(card: ModelCard) -> VideoClassifier:
    import torchvision.models as tvm
    import torchvision.models.video as tvv

    arch, weights_name = card.source["arch"], card.source.get("weights")
    if weights_name is None:
        return VideoClassifier(_build_arch(arch, len(card.labels)), card)
    weights = tvm.get_weight(weights_name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists():
        raise ModelLoadError(f"{card.name} needs the torchvision weights {weights_name}, which are not in the local "
                             f"cache ({cached}). Downloading is off by default; fetch the file once on a machine "
                             f"with internet access.")
    net = getattr(tvv, arch)(weights=None, num_classes=len(weights.meta["categories"]))
    net.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    labels = card.labels or tuple(weights.meta["categories"])
    return VideoClassifier(net, replace(card, labels=labels))


def hub_online() -> bool:
    """Whether the loaders may download from the Hub: only when ``HF_HUB_OFFLINE`` is set to 0 (the zoo is offline
    unless asked, whatever ``huggingface_hub`` read at import; the variable is read at each load)."""
    return os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() in ("0", "false", "no", "off")


def _snapshot(card: ModelCard, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = card.source["repo"], card.source.get("revision", "main")
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns,
                                      local_files_only=not hub_online()))
    except LocalEntryNotFoundError:
        raise ModelLoadError(f"{repo}@{revision[:12]} is not in the local Hugging Face cache and the Hub cannot be "
                             f"reached (offline mode or no network).") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelLoadError(f"{repo}@{revision[:12]} could not be fetched: {e}") from None


def _load_hub(card: ModelCard) -> VideoClassifier:
    folder = _snapshot(card, ["config.json", "model.safetensors"])
    try:
        config = json.loads((folder / "config.json").read_text())
        net = _build_arch(config["arch"], int(config.get("num_classes", len(config.get("labels", ())))))
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, KeyError, json.JSONDecodeError, RuntimeError) as e:
        raise ModelLoadError(f"{card.source['repo']} is not a usable checkpoint: {str(e).splitlines()[0]}") from None
    labels = card.labels or tuple(config.get("labels", ()))
    return VideoClassifier(net.float(), replace(card, labels=labels))


def transformer_token_grid(config) -> TokenGrid:
    """Token layout of a transformers video classifier, from its config."""
    kind = config.model_type
    if kind == "videomae":
        p, t = config.patch_size, config.num_frames // config.tubelet_size
        return TokenGrid((t, config.image_size // p, config.image_size // p), prefix=0, order="thw")
    if kind == "timesformer":
        p = config.patch_size
        return TokenGrid((config.num_frames, config.image_size // p, config.image_size // p), prefix=1, order="hwt")
    if kind == "vivit":
        tt, th, tw = config.tubelet_size
        return TokenGrid((config.num_frames // tt, config.image_size // th, config.image_size // tw), prefix=1,
                         order="thw")
    raise ModelLoadError(f"no token layout is known for transformers model type {kind!r}")


def wrap_transformer(net: nn.Module, card: ModelCard) -> VideoClassifier:
    """A transformers video classifier as a ``VideoClassifier``: labels and token grid from its config."""
    cfg = net.config
    labels = card.labels or tuple(cfg.id2label[i] for i in range(len(cfg.id2label)))
    return VideoClassifier(net, replace(card, labels=labels, token_grid=card.token_grid or transformer_token_grid(cfg)),
                           channels_first_time=False)


def _load_transformers(card: ModelCard) -> VideoClassifier:
    from transformers import AutoModelForVideoClassification

    # Safetensors where the repo has them; older repos only hold pytorch_model.bin, which transformers loads
    # with torch.load(weights_only=True).
    folder = _snapshot(card, ["config.json", "*.safetensors", "*.bin", "preprocessor_config.json"])
    try:
        net = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"{card.source['repo']} could not be loaded by transformers: "
                             f"{str(e).splitlines()[0]}") from None
    return wrap_transformer(net, card)


LOADERS = {"embedded": _load_embedded, "torchvision": _load_torchvision, "hub": _load_hub,
           "transformers": _load_transformers}


def load_model(card: str | ModelCard, device: str | torch.device = "cpu") -> VideoClassifier:
    """Load the model of a card (id or ``ModelCard``) as a frozen, eval-mode ``VideoClassifier``."""
    if isinstance(card, str):
        try:
            card = load_card(card)
        except KeyError as e:
            raise ModelLoadError(str(e.args[0])) from None
    loader = LOADERS.get(card.kind)
    if loader is None:
        raise ModelLoadError(f"card {card.id}: unknown source kind {card.kind!r}; known: {', '.join(LOADERS)}")
    return loader(card).to(device)
