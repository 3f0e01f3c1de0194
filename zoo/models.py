"""Load any zoo model as one uniform ``VideoClassifier`` (eval mode, frozen, B×3×T×H×W → logits).

Sources (a card's ``source.kind``):

* ``embedded`` — the small models trained in this repository, fp16 safetensors in ``assets/models``;
* ``torchvision`` — r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s, swin3d_t, with their Kinetics-400 weights
  from torch's hub cache, downloaded by ``torch.hub`` (hash-checked) when online (``weights: null`` gives random
  weights, for tests and for structure);
* ``hub`` — a Hub repo (pinned commit, ``zoo.hub``) holding ``config.json`` (``arch``, ``labels``) +
  ``model.safetensors`` for a torchvision or embedded architecture (``zoo.hub.export_model`` writes one);
* ``transformers`` — ``AutoModelForVideoClassification`` repos (VideoMAE, TimeSformer, ViViT), never with
  ``trust_remote_code``.

Every failure to load becomes a ``ModelLoadError`` with a message for a person (no local paths; details go to
the log). Downloads happen only when ``zoo.hub.hub_online()`` says so.
"""
from __future__ import annotations

import json
import logging
import pickle
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from zoo import ASSETS
from zoo.architectures import batchnorms_as_affine, temporal_convs_as_2d
from zoo.cards import ModelCard, TokenGrid, load_card
from zoo.errors import ModelLoadError
from zoo.hub import hub_online, snapshot, without_paths

log = logging.getLogger(__name__)

TORCHVISION_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


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
        log.warning("weights of %s missing at %s", card.id, path)
        raise ModelLoadError(f"the weights of {card.name} are missing from this installation; train them with "
                             f"`videoxai train --arch {card.source['arch']}`.")
    net = load_embedded_weights(_build_arch(card.source["arch"], len(card.labels)), path)
    return VideoClassifier(net, card)


def torchvision_state(url: str, name: str) -> dict[str, torch.Tensor]:
    """A torchvision checkpoint from torch's hub cache; when online, downloaded through ``torch.hub`` first (its
    SHA-256 prefix check on the file name included). Only plain tensors are unpickled."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cached.exists() and not hub_online():
        log.warning("%s not in the torch hub cache at %s", name, cached)
        raise ModelLoadError(f"the torchvision weights {name} are not in the local cache and downloading is off "
                             f"(set HF_HUB_OFFLINE=0 to allow it, or fetch the file once on a machine with "
                             f"internet access).")
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                                  weights_only=True)
    except pickle.UnpicklingError:
        raise ModelLoadError(f"the torchvision weights {name} are not plain tensors; refused.") from None
    except RuntimeError as e:
        if "invalid hash value" in str(e):
            raise ModelLoadError(f"the download of {name} failed its hash check; nothing was kept.") from None
        raise ModelLoadError(f"the torchvision weights {name} could not be read ({type(e).__name__}).") from None
    except OSError as e:
        log.warning("downloading %s from %s failed: %s", name, url, e)
        raise ModelLoadError(f"the torchvision weights {name} could not be downloaded ({type(e).__name__}); "
                             f"try again later.") from None


def _load_torchvision(card: ModelCard) -> VideoClassifier:
    import torchvision.models as tvm
    import torchvision.models.video as tvv

    arch, weights_name = card.source["arch"], card.source.get("weights")
    if weights_name is None:
        return VideoClassifier(_build_arch(arch, len(card.labels)), card)
    weights = tvm.get_weight(weights_name)
    state = torchvision_state(weights.url, weights_name)
    net = getattr(tvv, arch)(weights=None, num_classes=len(weights.meta["categories"]))
    net.load_state_dict(state)
    labels = card.labels or tuple(weights.meta["categories"])
    return VideoClassifier(net, replace(card, labels=labels))


def _load_hub(card: ModelCard) -> VideoClassifier:
    folder, commit = snapshot(card, ["config.json", "model.safetensors"])
    name = f"{card.source['repo']}@{commit[:12]}"
    missing = [f for f in ("config.json", "model.safetensors") if not (folder / f).is_file()]
    if missing:
        raise ModelLoadError(f"{name} has no {' or '.join(missing)}; a `hub` card needs both "
                             f"(`videoxai export` writes them).")
    try:
        config = json.loads((folder / "config.json").read_text())
        net = _build_arch(config["arch"], int(config.get("num_classes", len(config.get("labels", ())))))
        net.load_state_dict(read_embedded_weights(folder / "model.safetensors"))
    except (OSError, KeyError, TypeError, json.JSONDecodeError, RuntimeError, SafetensorError) as e:
        reason = without_paths(str(e).splitlines()[0] if str(e) else type(e).__name__, folder, name)
        raise ModelLoadError(f"{name} is not a usable checkpoint: {reason}") from None
    labels = card.labels or tuple(config.get("labels", ()))
    return VideoClassifier(net, replace(card, labels=labels, source={**card.source, "revision": commit}))


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
    # with torch.load(weights_only=True): plain tensors load, any other pickle is refused.
    folder, commit = snapshot(card, ["config.json", "*.safetensors", "*.bin", "preprocessor_config.json"])
    name = f"{card.source['repo']}@{commit[:12]}"
    try:
        net = AutoModelForVideoClassification.from_pretrained(folder, trust_remote_code=False)
    except pickle.UnpicklingError:
        raise ModelLoadError(f"{name} holds a pickle checkpoint that is not plain tensors; the zoo does not run "
                             f"such files (safetensors or weights-only pickles load).") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        text = str(e)
        if "trust_remote_code" in text:
            raise ModelLoadError(f"{name} needs its own Python code to run (trust_remote_code), which the zoo "
                                 f"never executes.") from None
        reason = without_paths(text.splitlines()[0] if text else type(e).__name__, folder, name)
        raise ModelLoadError(f"{name} could not be loaded by transformers: {reason}") from None
    return wrap_transformer(net, replace(card, source={**card.source, "revision": commit}))


def unavailable(card: str | ModelCard) -> str | None:
    """Why the card's model cannot load here, known without loading it (its weights are neither installed nor
    cached, and downloading is off), or None when it may load (loading still checks the files)."""
    card = load_card(card) if isinstance(card, str) else card
    if card.kind == "embedded":
        return None if (ASSETS / card.source["weights"]).exists() else "its weights are missing from this installation"
    if hub_online() or card.kind not in ("torchvision", "hub", "transformers"):
        return None
    if card.kind == "torchvision":
        import torchvision.models as tvm

        name = card.source.get("weights")
        if name is None or (Path(torch.hub.get_dir()) / "checkpoints" / Path(tvm.get_weight(name).url).name).exists():
            return None
        return "its weights are not in the local cache and downloading is off"
    try:
        snapshot(card, ["config.json"])
    except ModelLoadError as e:
        return str(e)
    return None


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
