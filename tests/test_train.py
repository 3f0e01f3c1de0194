"""``python -m zoo.train`` on the CPU, shrunk to a few clips and steps: it writes loadable weights and a card
that records the run, reuses cached pools, continues from earlier weights, and is reproducible from its seed."""
from __future__ import annotations

import json
import shutil

from zoo import synthetic, train
from zoo.architectures import build
from zoo.cards import CARDS_DIR
from zoo.models import load_embedded_weights

CARD = "synth-cnn-lstm"


def test_training_writes_weights_and_card_and_is_reproducible(tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    cards.mkdir()
    shutil.copy(CARDS_DIR / f"{CARD}.json", cards)
    monkeypatch.setattr(train, "CARDS_DIR", cards)                    # the repository's card stays untouched
    monkeypatch.setattr(train.synthetic, "split_seeds",
                        lambda split, count=None: list(range(synthetic.SPLIT_SEEDS[split], synthetic.SPLIT_SEEDS[split] + 10)))
    args = ["--arch", "cnn_lstm", "--steps", "2", "--batch", "4", "--pool", "4", "4", "4", "8", "--threads", "1",
            "--cache", str(tmp_path / "cache")]

    train.main(args + ["--out", str(tmp_path / "a")])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 6          # 4 training pools, val, test
    weights = tmp_path / "a" / f"{CARD}.safetensors"
    load_embedded_weights(build("cnn_lstm", 10), weights)
    record = json.loads((cards / f"{CARD}.json").read_text())["training"]
    assert record["steps"] == 2 and record["command"].startswith("python -m zoo.train --arch cnn_lstm")
    assert 0 <= record["test_top1"] <= 1 and set(record["test_top1_per_class"]) == set(synthetic.CLASSES)
    assert record["file_bytes"] == weights.stat().st_size and "CPU threads" in record["machine"]

    train.main(args + ["--out", str(tmp_path / "b")])                 # from the cache, same seed
    assert (tmp_path / "b" / f"{CARD}.safetensors").read_bytes() == weights.read_bytes()

    train.main(args + ["--out", str(tmp_path / "b"), "--init", "cnn_lstm"])
    record = json.loads((cards / f"{CARD}.json").read_text())["training"]
    assert record["continued_from"]["steps"] == 2
    assert (tmp_path / "b" / f"{CARD}.safetensors").read_bytes() != weights.read_bytes()
