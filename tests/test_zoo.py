"""Model cards and every loader path, offline: embedded, torchvision, Hub safetensors, transformers."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from tests.hubfiles import REVISION, publish, tiny_transformer
from zoo.architectures import AFFINE_BATCHNORMS
from zoo.cards import CARDS_DIR, card_from_dict, list_cards, load_card
from zoo.hub import COMMIT, commit_of
from zoo.models import TORCHVISION_ARCHS, ModelLoadError, VideoClassifier, load_model

pytestmark = pytest.mark.integration


def _assert_frozen_eval(model: VideoClassifier):
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(type(m) in AFFINE_BATCHNORMS for m in model.modules()), "batch norms run as affine maps"
    model.train()
    assert not model.training, "the wrapper must stay in eval mode"


def _clip(card, batch=1):
    spec = card.input
    return torch.randn(batch, 3, spec.frames, *spec.size)


def test_every_card_parses_and_names_its_layers():
    ids = list_cards()
    assert ids[:2] == ["synth-cnn-lstm", "synth-r2plus1d-small"], "embedded models come first"
    for card_id in ids:
        card = load_card(card_id)
        assert card.kind in ("embedded", "torchvision", "hub", "transformers")
        assert card.target_layers, card_id
        assert card.license and card.license != "unknown", card_id
        if card.kind in ("embedded", "torchvision"):
            assert card.labels, card_id
    assert len(load_card("tv-r2plus1d-18").labels) == 400


def test_hub_cards_pin_a_full_commit_or_say_why_not():
    hub_cards = [load_card(i) for i in list_cards() if load_card(i).kind in ("hub", "transformers")]
    assert hub_cards
    for card in hub_cards:
        source = card.source
        if "revision" in source:
            assert COMMIT.fullmatch(source["revision"]), f"{card.id}: {source['revision']!r} is not a 40-hex commit"
            assert "branch" not in source and commit_of(card) == source["revision"], card.id
        else:
            assert source.get("branch") and len(source.get("unpinned", "")) > 20, \
                f"{card.id}: a branch without a reason for not pinning a commit"


@pytest.mark.parametrize("source, message", [
    ({"revision": "fd26a6d"}, "not a 40-hex commit"),
    ({"revision": "main"}, "not a 40-hex commit"),
    ({"branch": "main"}, "names no commit"),
    ({}, "names no commit"),
])
def test_short_shas_and_unmarked_branches_are_refused(source, message):
    card = _hub_card("transformers", "someone/repo")
    card = replace(card, source={"kind": "transformers", "repo": "someone/repo", **source})
    with pytest.raises(ModelLoadError, match=message):
        load_model(card)


def test_unknown_card_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="no model card 'nope'"):
        load_model("nope")


@pytest.mark.parametrize("card_id", ["synth-r2plus1d-small", "synth-cnn-lstm", "synth-videomae-small"])
def test_embedded_models_load_frozen_and_classify(card_id):
    model = load_model(card_id)
    _assert_frozen_eval(model)
    x = _clip(model.card, batch=2)
    with torch.inference_mode():
        logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert len(model.labels) == 10 and model.labels[0] == "move_left"
    for name in model.target_layers:
        assert isinstance(model.layer(name), torch.nn.Module)
    top = model.top_k(x[:1], 5)
    assert len(top) == 5 and abs(sum(p for _, p in top)) <= 1.0 + 1e-6
    assert top == sorted(top, key=lambda t: -t[1])


def test_embedded_weights_missing_is_a_clear_error(tmp_path):
    raw = json.loads((CARDS_DIR / "synth-r2plus1d-small.json").read_text())
    raw["source"]["weights"] = str(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="weights .* are missing"):
        load_model(card_from_dict(raw))


def _tv_card(arch: str, weights=None, frames=16, size=112):
    return card_from_dict({
        "id": f"test-{arch}", "family": "3d_cnn", "license": "test",
        "source": {"kind": "torchvision", "arch": arch, "weights": weights},
        "input": {"frames": frames, "size": [size, size]}, "labels": [f"c{i}" for i in range(5)],
        "target_layers": ["layer4"],
    })


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_torchvision_architectures_random_weights_forward(arch):
    size = 224 if arch in ("s3d", "mvit_v2_s") else 112  # s3d's pooling and mvit's positions need 224
    card = _tv_card(arch, size=size)
    model = load_model(card)
    _assert_frozen_eval(model)
    with torch.inference_mode():
        logits = model(_clip(card))
    assert logits.shape == (1, 5) and torch.isfinite(logits).all()


def test_torchvision_weights_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        load_model("tv-mc3-18")


def test_torchvision_weights_from_local_cache(tmp_path, monkeypatch):
    import torchvision.models.video as tvv

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = tvv.mc3_18(weights=None).eval()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "mc3_18-a90a0ba3.pth")
    model = load_model("tv-mc3-18")
    assert len(model.labels) == 400 and model.labels[0] == "abseiling"
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.inference_mode():       # equal up to rounding: the zoo runs time-only convolutions as 2-D ones
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def _hub_card(kind: str, repo: str, revision: str = REVISION, labels=()):
    return card_from_dict({
        "id": f"test-{repo}", "family": "3d_cnn", "license": "test", "labels": list(labels),
        "source": {"kind": kind, "repo": repo, "revision": revision},
        "input": {"frames": 16, "size": [112, 112]}, "target_layers": ["layer4"],
    })


def test_hub_safetensors_repo_offline(hf_cache, tmp_path):
    from zoo.architectures import build

    reference = build("r2plus1d_small", 4).eval()
    folder = tmp_path / "repo"
    folder.mkdir()
    save_file(reference.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"arch": "r2plus1d_small", "num_classes": 4,
                                                    "labels": ["a", "b", "c", "d"]}))
    publish(hf_cache, "someone/tiny-video", folder)
    model = load_model(_hub_card("hub", "someone/tiny-video"))
    assert model.labels == ("a", "b", "c", "d")
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.inference_mode():       # equal up to rounding: the zoo runs time-only convolutions as 2-D ones
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)


def test_hub_repo_with_wrong_architecture_is_a_clear_error(hf_cache, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    save_file({"weight": torch.zeros(3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"arch": "r3d_18", "num_classes": 4}))
    publish(hf_cache, "someone/broken", folder)
    with pytest.raises(ModelLoadError, match="not a usable checkpoint"):
        load_model(_hub_card("hub", "someone/broken"))


@pytest.mark.parametrize("card_id", ["hf-videomae-base-k400", "hf-vivit-b-k400"])   # a pinned commit; a branch
def test_hub_repo_not_cached_offline_fails_fast(hf_cache, card_id):
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and downloading is off") as e:
        load_model(card_id)
    assert str(hf_cache) not in str(e.value)


LAST_BLOCK = {"videomae": "videomae.encoder.layer.-1", "timesformer": "timesformer.encoder.layer.-1",
              "vivit": "vivit.layers.-1"}


@pytest.mark.parametrize("kind, grid", [("videomae", ((8, 7, 7), 0, "thw")), ("timesformer", ((8, 7, 7), 1, "hwt")),
                                        ("vivit", ((8, 7, 7), 1, "thw"))])
def test_transformers_video_classifiers_offline(hf_cache, tmp_path, kind, grid):
    reference, frames = tiny_transformer(kind)
    reference.eval()
    reference.save_pretrained(tmp_path / "repo")
    publish(hf_cache, f"someone/tiny-{kind}", tmp_path / "repo")
    card = card_from_dict({
        "id": f"test-{kind}", "family": "video_transformer", "license": "test",
        "source": {"kind": "transformers", "repo": f"someone/tiny-{kind}", "revision": REVISION},
        "input": {"frames": frames, "size": [112, 112]}, "target_layers": [LAST_BLOCK[kind]],
    })
    model = load_model(card)
    _assert_frozen_eval(model)
    assert model.labels == ("x", "y", "z")
    assert (model.token_grid.grid, model.token_grid.prefix, model.token_grid.order) == grid
    x = torch.randn(1, 3, frames, 112, 112)
    with torch.inference_mode():
        assert torch.allclose(model(x), reference(pixel_values=x.transpose(1, 2)).logits)
        tokens = []
        handle = model.layer(model.target_layers[0]).register_forward_hook(lambda m, i, o: tokens.append(o))
        model(x)
        handle.remove()
    out = tokens[0][0] if isinstance(tokens[0], tuple) else tokens[0]
    t, h, w = model.token_grid.grid
    assert out.shape[1] == model.token_grid.prefix + t * h * w
