"""The Space builds where it will run: the README's front matter agrees with the cards and the pins, and the pinned
requirements resolve for the Space's Python (pip's resolver, no install)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import metadata_load

from zoo.cards import list_cards, load_card
from zoo.hub import COMMIT

ROOT = Path(__file__).resolve().parents[1]
SPACE_PYTHON = "3.12"


def _front_matter() -> dict:
    return metadata_load(ROOT / "README.md")


def _pins() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def _hub_cards():
    return [card for card in map(load_card, list_cards()) if card.kind in ("hub", "transformers")]


def test_front_matter_is_complete_and_matches_the_pins():
    meta = _front_matter()
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == _pins()["gradio"]
    assert meta["python_version"] == SPACE_PYTHON
    assert meta["app_file"] == "app.py" and (ROOT / meta["app_file"]).is_file()
    assert meta["license"] == "mit" and "MIT" in (ROOT / "LICENSE").read_text()
    assert 10 <= len(meta["short_description"]) <= 60, "the Hub cuts short descriptions at 60 characters"
    assert meta["tags"] and all(re.fullmatch(r"[a-z0-9-]+", tag) for tag in meta["tags"])


def test_front_matter_names_every_hub_repo_and_preloads_the_pinned_ones():
    meta = _front_matter()
    assert sorted(meta["models"]) == sorted({card.source["repo"] for card in _hub_cards()})
    preloads = {}
    for entry in meta["preload_from_hub"]:
        repo, files, commit = entry.split(" ")
        assert COMMIT.fullmatch(commit), entry
        preloads[repo] = (set(files.split(",")), commit)
    pinned = {card.source["repo"]: card for card in _hub_cards() if "revision" in card.source}
    assert set(preloads) == set(pinned), "preload exactly the repositories whose cards pin a commit"
    for repo, (files, commit) in preloads.items():
        assert commit == pinned[repo].source["revision"], f"{repo}: preload and card pin different commits"
        assert "config.json" in files and any(f.endswith(".safetensors") for f in files), repo


@pytest.mark.slow
def test_requirements_resolve_for_the_space_python(tmp_path, python=SPACE_PYTHON):
    """Every pin of requirements.txt as a wheel for the Space's Python (dev.sh installs the same pins on 3.11)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
         "--ignore-installed", "--target", str(tmp_path / "never"), "--python-version", python,
         "--only-binary=:all:", "--report", str(report), "-r", str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    for name, version in _pins().items():
        assert resolved[name.lower().replace("_", "-")] == version, name
