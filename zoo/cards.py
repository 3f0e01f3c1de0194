"""Model cards: one small JSON file per model in ``zoo/cards/`` describing where it comes from and how to feed it.

A card holds the model's id and display name, its source (``embedded`` weights in the assets folder, ``zoo.ASSETS``,
                                                          a Hub repo at a
pinned revision, or a torchvision weights enum), its architecture family, its input spec (frames, size,
resize/crop, mean/std), its labels, licence, the target layer(s) for CAM methods and, for video transformers,
the token grid that maps a token sequence back to (T', H', W').
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from zoo import ASSETS

CARDS_DIR = Path(__file__).parent / "cards"
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class InputSpec:
    """How a clip is turned into the model's input tensor B×3×T×H×W.

    ``resize`` is the (height, width) the frames are resized to before the centre crop to ``size``, or a
    one-element (short side,) that keeps the aspect ratio; None resizes straight to ``size`` (no crop).
    ``mean``/``std`` are per RGB channel on [0, 1] pixel values.
    """

    frames: int = 16
    size: tuple[int, int] = (112, 112)
    resize: tuple[int, ...] | None = None
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD


@dataclass(frozen=True)
class TokenGrid:
    """How a transformer layer's token sequence maps back to a C×T'×H'×W' volume.

    ``prefix`` tokens (e.g. CLS) are dropped; the rest are laid out as ``order``: "thw" or "hwt" for a
    B×N×C sequence, "thwc" for a channels-last B×T'×H'×W'×C volume (Swin).
    """

    grid: tuple[int, int, int]
    prefix: int = 0
    order: str = "thw"


@dataclass(frozen=True)
class ModelCard:
    id: str
    name: str
    family: str                      # "3d_cnn" | "cnn_rnn" | "video_transformer"
    source: dict
    input: InputSpec
    labels: tuple[str, ...]
    license: str
    target_layers: tuple[str, ...]
    dataset: str = ""
    description: str = ""
    domain: str = ""                 # what every training clip looks like, when that is narrow (the app warns)
    token_grid: TokenGrid | None = None
    training: dict = field(default_factory=dict)      # the training run, as it measured itself
    held_out: dict = field(default_factory=dict)      # accuracy on the current test split (zoo.training.train.held_out)

    @property
    def kind(self) -> str:
        return self.source["kind"]


def _labels(raw: dict) -> tuple[str, ...]:
    if "labels" in raw:
        return tuple(raw["labels"])
    if "labels_file" in raw:
        return tuple(line.strip() for line in (ASSETS / raw["labels_file"]).read_text().splitlines() if line.strip())
    return ()


def card_from_dict(raw: dict) -> ModelCard:
    """Build a card from its JSON form (also used for cards that tests or users write)."""
    spec = raw.get("input", {})
    return ModelCard(
        id=raw["id"], name=raw.get("name", raw["id"]), family=raw["family"], source=dict(raw["source"]),
        input=InputSpec(
            frames=spec.get("frames", 16), size=tuple(spec.get("size", (112, 112))),
            resize=tuple(spec["resize"]) if spec.get("resize") else None,
            mean=tuple(spec.get("mean", KINETICS_MEAN)), std=tuple(spec.get("std", KINETICS_STD))),
        labels=_labels(raw), license=raw.get("license", "unknown"),
        target_layers=tuple(raw.get("target_layers", ())), dataset=raw.get("dataset", ""),
        description=raw.get("description", ""), domain=raw.get("domain", ""),
        token_grid=TokenGrid(tuple(raw["token_grid"]["grid"]), raw["token_grid"].get("prefix", 0),
                             raw["token_grid"].get("order", "thw")) if raw.get("token_grid") else None,
        training=raw.get("training", {}), held_out=raw.get("held_out", {}),
    )


@cache
def load_card(card_id: str) -> ModelCard:
    path = CARDS_DIR / f"{card_id}.json"
    if not path.exists():
        raise KeyError(f"no model card {card_id!r}; known cards: {', '.join(list_cards())}")
    return card_from_dict(json.loads(path.read_text()))


def list_cards() -> list[str]:
    """Ids of all cards, embedded models first."""
    ids = sorted(p.stem for p in CARDS_DIR.glob("*.json"))
    return sorted(ids,
                  key=lambda i: (json.loads((CARDS_DIR / f"{i}.json").read_text())["source"]["kind"] != "embedded", i))
