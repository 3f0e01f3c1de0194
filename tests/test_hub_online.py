"""The zoo's online path against a Hub served on 127.0.0.1 (``tests.hubserver``): real ``huggingface_hub`` and
``torch.hub`` downloads through ``HF_ENDPOINT``, faults included, and publishing the embedded models."""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from tests.hubfiles import tiny_transformer
from tests.hubserver import LocalHub
from zoo import hub
from zoo.cards import card_from_dict
from zoo.models import ModelLoadError, load_model, torchvision_state

pytestmark = pytest.mark.integration


@pytest.fixture
def local_hub(hf_cache, monkeypatch):
    """A running Hub on 127.0.0.1 that the zoo downloads from (online, empty cache, no commit resolved yet)."""
    import huggingface_hub.constants as c

    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub, "_resolved", {})
        yield server


def _card(kind: str, repo: str, **source) -> object:
    return card_from_dict({"id": f"test-{repo}", "family": "3d_cnn", "license": "test", "target_layers": ["x"],
                           "source": {"kind": kind, "repo": repo, **source},
                           "input": {"frames": 16, "size": [112, 112]}})


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _transformer_files(tmp_path: Path, kind: str = "videomae") -> tuple[dict[str, bytes], object]:
    net, _ = tiny_transformer(kind)
    net.eval().save_pretrained(tmp_path / kind)
    return _folder_files(tmp_path / kind), net


def _pickled(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _clip(frames: int = 16) -> torch.Tensor:
    return torch.randn(1, 3, frames, 112, 112, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("card_id, arch", [("synth-r2plus1d-small", "r2plus1d_small"),
                                           ("synth-videomae-small", "videomae_small")])
def test_export_push_and_load_back_through_the_hub_loader(local_hub, tmp_path, card_id, arch):
    from huggingface_hub import ModelCard

    folder = hub.export_model(card_id, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["arch"] == arch and len(config["labels"]) == 10
    assert config["input"]["frames"] == 16 and config["input"]["size"] == [112, 112]
    data = ModelCard.load(folder / "README.md").data
    assert (data.library_name, data.pipeline_tag, data.license) == ("videoxai", "video-classification", "mit")
    reference = load_model(card_id)
    assert data.eval_results[0].metric_value == reference.card.held_out["top1"]

    commit = hub.push_folder(folder, f"videoxai/{card_id}", token="hf_test")
    assert hub.COMMIT.fullmatch(commit)
    model = load_model(f"hub-{card_id}")                              # the zoo's card for the published model
    assert model.labels == reference.labels and model.card.source["revision"] == commit
    assert model.token_grid == reference.token_grid and model.target_layers == reference.target_layers
    with torch.inference_mode():
        torch.testing.assert_close(model(_clip()), reference(_clip()))


def test_pinned_commit_downloads_without_asking_for_a_branch(local_hub, tmp_path):
    files, net = _transformer_files(tmp_path)
    commit = local_hub.add("someone/tiny", files)
    local_hub.add("someone/tiny", {**files, "config.json": b"{}"})       # main moves on; the pin does not
    model = load_model(_card("transformers", "someone/tiny", revision=commit))
    assert not any("/revision/" in path for _, path in local_hub.requests)
    with torch.inference_mode():
        torch.testing.assert_close(model(_clip()), net(pixel_values=_clip().transpose(1, 2)).logits)


def test_branch_resolves_once_per_process_to_the_commit_it_shows(local_hub, tmp_path):
    files, _ = _transformer_files(tmp_path)
    first = local_hub.add("someone/tiny", files)
    card = _card("transformers", "someone/tiny", branch="main", unpinned="a test repository with no fixed commit")
    assert "not pinned (a test repository" in hub.describe_revision(card)
    assert load_model(card).card.source["revision"] == first
    assert f"at commit {first[:12]} (branch main, resolved at first load)" in hub.describe_revision(card)
    local_hub.add("someone/tiny", {**files, "README.md": b"changed"})
    assert load_model(card).card.source["revision"] == first
    assert sum("/revision/main" in path for _, path in local_hub.requests) == 1


def test_cached_commit_loads_offline_afterwards(local_hub, tmp_path, monkeypatch):
    files, _ = _transformer_files(tmp_path)
    card = _card("transformers", "someone/tiny", revision=local_hub.add("someone/tiny", files))
    load_model(card)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(local_hub.requests)
    load_model(card)
    assert len(local_hub.requests) == before


def test_dropped_connection_resumes_and_loads(local_hub, tmp_path):
    files, _ = _transformer_files(tmp_path)
    commit = local_hub.add("someone/tiny", files)
    local_hub.drop_once.add(("someone/tiny", "model.safetensors"))
    load_model(_card("transformers", "someone/tiny", revision=commit))
    gets = [p for m, p in local_hub.requests if m == "GET" and p.endswith("model.safetensors")]
    assert len(gets) == 2, "the first download was cut; the second resumed it"


@pytest.mark.parametrize("case, message", [
    ("wrong commit", "has no commit"),
    ("missing repository", "does not exist on the Hub"),
    ("missing weights", "has no model.safetensors"),
    ("remote code", "needs its own Python code"),
])
def test_broken_repositories_give_a_clear_error(local_hub, tmp_path, case, message):
    sentinel = "0" * 40
    if case == "wrong commit":
        local_hub.add("someone/tiny", {"config.json": b"{}"})
        card = _card("hub", "someone/tiny", revision=sentinel)
    elif case == "missing repository":
        card = _card("hub", "someone/nothing", revision=sentinel)
    elif case == "missing weights":
        card = _card("hub", "someone/tiny", revision=local_hub.add("someone/tiny", {"config.json": b"{}"}))
    else:
        config = {"model_type": "my-video-net", "auto_map": {"AutoConfig": "net.MyConfig",
                                                           "AutoModelForVideoClassification": "net.MyNet"}}
        commit = local_hub.add("someone/custom", {"config.json": json.dumps(config).encode(),
                                                  "net.py": b"raise SystemExit('remote code ran')\n"})
        card = _card("transformers", "someone/custom", revision=commit)
    with pytest.raises(ModelLoadError, match=message) as e:
        load_model(card)
    assert str(tmp_path) not in str(e.value) and "hf-cache" not in str(e.value)


def test_weights_only_pickle_loads_and_any_other_pickle_is_refused(local_hub, tmp_path):
    files, net = _transformer_files(tmp_path)       # an older repository: the same weights as a pickle only
    files = {"config.json": files["config.json"], "pytorch_model.bin": _pickled(net.state_dict())}
    model = load_model(_card("transformers", "someone/bin", revision=local_hub.add("someone/bin", files)))
    with torch.inference_mode():
        torch.testing.assert_close(model(_clip()), net(pixel_values=_clip().transpose(1, 2)).logits)

    ran = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (ran,))

    evil = {**files, "pytorch_model.bin": pickle.dumps({"weight": Payload()}, protocol=2)}
    with pytest.raises(ModelLoadError, match="pickle checkpoint that is not plain tensors"):
        load_model(_card("transformers", "someone/evil", revision=local_hub.add("someone/evil", evil)))
    assert not ran.exists()


def test_torchvision_weights_download_with_their_hash_check(local_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    state = {"w": torch.arange(4.0)}
    data = _pickled(state)
    good = f"tiny-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    local_hub.add("files/tv", {good: data, "tiny-0badc0de.pth": data})
    url = f"{local_hub.url}/files/tv/resolve/main"
    torch.testing.assert_close(torchvision_state(f"{url}/{good}", "TINY_WEIGHTS")["w"], state["w"])
    assert (tmp_path / "torch" / "checkpoints" / good).is_file()
    with pytest.raises(ModelLoadError, match="failed its hash check"):
        torchvision_state(f"{url}/tiny-0badc0de.pth", "TINY_WEIGHTS")
    assert not (tmp_path / "torch" / "checkpoints" / "tiny-0badc0de.pth").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local cache and downloading is off"):
        torchvision_state(f"{url}/tiny-0badc0de.pth", "TINY_WEIGHTS")


def test_online_policy_follows_the_space_and_the_variable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not hub.hub_online()
    monkeypatch.setenv("SPACE_ID", "someone/space")
    assert hub.hub_online()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_online()
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.hub_online()
