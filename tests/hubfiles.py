"""Serve a local folder under a Hub repo id, offline, through the real Hugging Face cache layout."""
from __future__ import annotations

import shutil
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def publish(cache: Path, repo_id: str, folder: Path, revision: str = REVISION) -> str:
    """Copy ``folder`` into ``cache`` as snapshot ``revision`` of ``repo_id`` (also the ``main`` ref)."""
    base = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, base / "snapshots" / revision)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(revision)
    return revision
