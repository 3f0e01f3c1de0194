"""``videoxai train`` on the CPU, shrunk to a few clips and steps: it writes loadable weights and a card
that records the run (in its own copy of the card), reuses cached pools, continues from earlier weights, and is
reproducible from its seed."""
from __future__ import annotations

import json

import pytest
import torch

from explainers.device import bf16_is_native
from zoo import synthetic
from zoo.architectures import build
from zoo.cards import CARDS_DIR
from zoo.models import load_embedded_weights
from zoo.training import train

pytestmark = pytest.mark.slow

CARD = "synth-cnn-lstm"


def test_training_writes_weights_and_card_and_is_reproducible(tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    repository_card = (CARDS_DIR / f"{CARD}.json").read_text()
    monkeypatch.setattr(train.synthetic, "split_seeds",
                        lambda split, count=None: list(range(synthetic.SPLIT_SEEDS[split],
                                                             synthetic.SPLIT_SEEDS[split] + 10)))
    args = ["--arch", "cnn_lstm", "--steps", "2", "--batch", "4", "--pool", "4", "4", "4", "8", "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--card-dir", str(cards)]

    train.main(args + ["--out", str(tmp_path / "a")])
    pools = tmp_path / "cache" / synthetic.DATASET.replace(" ", "-")     # pools of one renderer version
    assert len(list(pools.glob("*.npy"))) == 6          # 4 training pools, val, test
    weights = tmp_path / "a" / f"{CARD}.safetensors"
    load_embedded_weights(build("cnn_lstm", 10), weights)
    record = json.loads((cards / f"{CARD}.json").read_text())["training"]
    assert record["steps"] == 2 and record["command"].startswith("videoxai train --arch cnn_lstm")
    assert 0 <= record["top1"] <= 1 and set(record["top1_per_class"]) == set(synthetic.CLASSES)
    held_out = json.loads((cards / f"{CARD}.json").read_text())["held_out"]
    assert held_out.pop("measured_by") == record["command"] and held_out["dataset"] == synthetic.DATASET
    assert held_out == {k: record[k] for k in held_out} and held_out["clips"] == 10
    assert record["file_bytes"] == weights.stat().st_size and "CPU threads" in record["machine"]
    assert record["machine"].endswith(", bf16 autocast" if bf16_is_native("cpu") else ", fp32")
    assert (CARDS_DIR / f"{CARD}.json").read_text() == repository_card
    cached = train.render_pool(list(range(6)), "hard", 1, tmp_path / "cache")   # the first 6 of the 8 cached
    assert len(cached) == 6 and len(list(pools.glob("*.npy"))) == 6
    assert (cached[5] == synthetic.render_batch([5], "hard")[0][0]).all()

    train.main(args + ["--out", str(tmp_path / "b")])                 # from the cache, same seed
    assert (tmp_path / "b" / f"{CARD}.safetensors").read_bytes() == weights.read_bytes()

    train.main(args + ["--out", str(tmp_path / "b"), "--init", "cnn_lstm"])
    record = json.loads((cards / f"{CARD}.json").read_text())["training"]
    assert record["continued_from"]["steps"] == 2
    assert (tmp_path / "b" / f"{CARD}.safetensors").read_bytes() != weights.read_bytes()


def test_the_curriculum_moves_from_flat_backgrounds_to_the_final_mixture_over_its_length():
    trivial_only = (1, 0, 0, 0)
    assert train.curriculum_weights(0, 600) == train.curriculum_weights(119, 600) == trivial_only
    assert train.curriculum_weights(120, 600) != trivial_only and sum(train.curriculum_weights(120, 600)) == 1
    assert train.curriculum_weights(599, 600)[3] > 0 and train.curriculum_weights(600, 600) == train.FINAL_MIXTURE
    assert train.curriculum_weights(1199, 6000) == trivial_only          # --curriculum-steps 6000: a longer start


def test_continuing_from_weights_with_fewer_input_channels_keeps_the_function(tmp_path):
    """Weights from before the CNN-LSTM gained its flow input load with the new inputs at zero."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    old = build("cnn_lstm", 10).eval()
    state = {k: v.clone() for k, v in old.state_dict().items()}
    state["frames.cnn.0.weight"] = state["frames.cnn.0.weight"][:, :6].contiguous()   # RGB + difference only
    state["embed.0.weight"] = state["embed.0.weight"][:, :64 * 49].contiguous()         # flattened features only
    save_file(state, str(tmp_path / "old.safetensors"))
    new = train.continue_from(build("cnn_lstm", 10), tmp_path / "old.safetensors").eval()
    weight = new.frames.cnn[0].weight
    assert weight.shape[1] == 8 and weight[:, 6:].abs().max() == 0
    assert torch.equal(weight[:, :6], state["frames.cnn.0.weight"])
    assert new.embed[0].weight[:, 64 * 49:].abs().max() == 0
    x = torch.randn(2, 3, 16, 112, 112)
    with torch.inference_mode():
        reference = new(x)
        new.flow.forward = lambda clip: torch.randn(clip.shape[0], 2, *clip.shape[2:])   # any flow: it is ignored
        assert torch.equal(new(x), reference)
        new.load_state_dict(old.state_dict())
        assert not torch.equal(new(x), reference), "the new inputs do count once their weights are not zero"


def test_ema_returns_the_moving_average_of_the_steps_weights():
    """``--ema d``: the first step's weights start the average, each later one enters with weight 1 - d."""
    pools = {p: synthetic.render_batch(list(range(10)), p)[0] for p in train.PRESET_ORDER}
    val = (pools["hard"][:4], list(range(4)))
    run = lambda steps, ema: train.train("cnn_lstm", pools, val, steps, 4, 1e-3, 0, lambda msg: None, ema=ema)
    first, second, averaged = run(1, 0.0), run(2, 0.0), run(2, 0.25)
    for name, value in averaged.state_dict().items():
        if value.is_floating_point():
            expected = 0.25 * first.state_dict()[name] + 0.75 * second.state_dict()[name]
            torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(averaged.state_dict()["fc.weight"], second.state_dict()["fc.weight"])


def test_an_interrupted_run_continues_from_its_checkpoint_to_the_same_weights(tmp_path, monkeypatch):
    pools = {p: synthetic.render_batch(list(range(10)), p)[0] for p in train.PRESET_ORDER}
    val = (pools["hard"][:4], list(range(4)))
    run = lambda path, steps=4: train.train("cnn_lstm", pools, val, steps, 4, 1e-3, 0, lambda msg: None, ema=0.5,
                                            checkpoint=path, checkpoint_every=2)
    straight = run(tmp_path / "straight.pt")
    assert not (tmp_path / "straight.pt").exists()                    # removed once the run is complete

    augment, calls = train.augment, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 4:                                          # during the 4th step, after the checkpoint
            raise KeyboardInterrupt
        return augment(*args)

    monkeypatch.setattr(train, "augment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "state.pt")
    assert (tmp_path / "state.pt").exists()
    with pytest.raises(ValueError, match="other settings"):
        run(tmp_path / "state.pt", steps=6)
    counted = []
    monkeypatch.setattr(train, "augment", lambda *args: counted.append(1) or augment(*args))
    resumed = run(tmp_path / "state.pt")
    assert len(counted) == 2                                         # steps 3 and 4 only
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, straight.state_dict()[name], rtol=0, atol=0, msg=name)


def test_distillation_loss_is_cross_entropy_at_weight_zero_and_zero_against_itself_at_weight_one():
    torch.manual_seed(0)
    logits, teacher, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(10, (6,))
    ce = torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(train.distillation_loss(logits, teacher, y, 0.0, 2.0), ce)
    assert train.distillation_loss(logits, logits, y, 1.0, 3.0).abs() < 1e-6
    # The soft term is T²·KL between the softened distributions, computed here from its definition.
    p, q = (teacher / 4).softmax(1), (logits / 4).softmax(1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(train.distillation_loss(logits, teacher, y, 0.3, 4.0), 0.7 * ce + 0.3 * 16 * kl)


def test_a_teacher_changes_the_training_and_is_recorded_in_the_card(tmp_path, monkeypatch):
    monkeypatch.setattr(train.synthetic, "split_seeds",
                        lambda split, count=None: list(range(synthetic.SPLIT_SEEDS[split],
                                                             synthetic.SPLIT_SEEDS[split] + 10)))
    args = ["--arch", "cnn_lstm", "--steps", "2", "--batch", "4", "--pool", "4", "4", "4", "8", "--threads", "1",
            "--cache", str(tmp_path / "cache"), "--card-dir", str(tmp_path / "cards")]
    train.main(args + ["--out", str(tmp_path / "plain")])
    train.main(args + ["--out", str(tmp_path / "taught"), "--teacher", "synth-r2plus1d-small", "--distill", "0.7", "3"])
    record = json.loads((tmp_path / "cards" / f"{CARD}.json").read_text())["training"]
    assert (record["teacher"], record["distill_weight"], record["distill_temperature"]) == (
        "synth-r2plus1d-small", 0.7, 3.0)
    assert (tmp_path / "plain" / f"{CARD}.safetensors").read_bytes() != \
        (tmp_path / "taught" / f"{CARD}.safetensors").read_bytes()
