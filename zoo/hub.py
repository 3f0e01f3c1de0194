"""The zoo and the Hugging Face Hub: when downloading is allowed, which commit a card means, fetching a snapshot, and
publishing the embedded models as Hub repositories.

* Online or not (``hub_online``): ``HF_HUB_OFFLINE=0`` allows downloads, ``HF_HUB_OFFLINE=1`` forbids them; unset,
  downloads are allowed on a Space (``SPACE_ID`` is set there) and nowhere else. Read at each load.
* Where (``endpoint``): ``HF_ENDPOINT`` read at each load (a Hub mirror, or the tests' server on 127.0.0.1).
* Which commit (``commit_of``): a card pins ``source.revision``, a 40-hex commit. A card that cannot pin one names a
  ``source.branch`` and says why in ``source.unpinned``; the branch is resolved once per process to its commit (from
  the Hub when online, from the local cache's ref otherwise), logged, and that commit is used from then on.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from zoo.cards import ModelCard
from zoo.errors import ModelLoadError

log = logging.getLogger(__name__)
COMMIT = re.compile(r"[0-9a-f]{40}")
_resolved: dict[tuple[str, str, str], str] = {}    # (endpoint, repo, branch) -> commit, for this process


def hub_online() -> bool:
    """Whether loaders may download: ``HF_HUB_OFFLINE`` decides when set; otherwise only on a Space."""
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return False
    if flag in ("0", "false", "no", "off"):
        return True
    return bool(os.environ.get("SPACE_ID"))


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _cache_dir() -> Path:
    import huggingface_hub.constants as c

    return Path(c.HF_HUB_CACHE)


def commit_of(card: ModelCard) -> str:
    """The 40-hex commit of the card's repository that this process loads (see the module docstring)."""
    source = card.source
    repo = source["repo"]
    if "revision" in source:
        if not COMMIT.fullmatch(source["revision"]):
            raise ModelLoadError(f"card {card.id} pins {repo} at {source['revision']!r}, which is not a 40-hex "
                                 f"commit; write the full commit (the Hub treats anything else as a branch name).")
        return source["revision"]
    branch = source.get("branch")
    if not branch or not source.get("unpinned"):
        raise ModelLoadError(f"card {card.id} names no commit of {repo}: give source.revision (40 hex), or "
                             f"source.branch with source.unpinned saying why no commit can be pinned.")
    key = (endpoint(), repo, branch)
    if key not in _resolved:
        _resolved[key] = _branch_commit(repo, branch)
        log.info("%s@%s resolved to commit %s for this process (the card pins no commit: %s)",
                 repo, branch, _resolved[key], source["unpinned"])
    return _resolved[key]


def describe_revision(card: ModelCard) -> str:
    """Which commit of the card's repository this process uses, in words (no lookup)."""
    source = card.source
    if "revision" in source:
        return f"{source['repo']} at commit {source['revision'][:12]} (pinned)"
    commit = _resolved.get((endpoint(), source["repo"], source.get("branch", "")))
    if commit:
        return f"{source['repo']} at commit {commit[:12]} (branch {source['branch']}, resolved at first load)"
    return f"{source['repo']}, branch {source.get('branch')}: not pinned ({source.get('unpinned', 'no reason given')})"


def _branch_commit(repo: str, branch: str) -> str:
    if hub_online():
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        try:
            sha = HfApi(endpoint=endpoint()).model_info(repo, revision=branch).sha
        except RepositoryNotFoundError:
            raise ModelLoadError(f"{repo} does not exist on the Hub (or is private).") from None
        except RevisionNotFoundError:
            raise ModelLoadError(f"{repo} has no branch {branch!r} on the Hub.") from None
        except (HfHubHTTPError, OSError) as e:
            log.warning("resolving %s@%s failed: %s", repo, branch, e)
            raise ModelLoadError(f"{repo}@{branch} could not be resolved: the Hub did not answer.") from None
        if sha and COMMIT.fullmatch(sha):
            return sha
        raise ModelLoadError(f"the Hub gave no commit for {repo}@{branch}.")
    ref = _cache_dir() / f"models--{repo.replace('/', '--')}" / "refs" / branch
    if ref.is_file() and COMMIT.fullmatch(sha := ref.read_text().strip()):
        return sha
    raise ModelLoadError(f"{repo}@{branch} is not in the local Hugging Face cache and downloading is off "
                         f"(set HF_HUB_OFFLINE=0 to allow it).")


def snapshot(card: ModelCard, patterns: list[str]) -> tuple[Path, str]:
    """The local folder of the card's repository at its commit (downloaded when online), and that commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, commit = card.source["repo"], commit_of(card)
    online = hub_online()
    try:
        folder = snapshot_download(repo, revision=commit, allow_patterns=patterns, local_files_only=not online,
                                   endpoint=endpoint())
    except RepositoryNotFoundError:
        raise ModelLoadError(f"{repo} does not exist on the Hub (or is private).") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"{repo} has no commit {commit[:12]} on the Hub: the card pins a commit that is "
                             f"not there.") from None
    except LocalEntryNotFoundError:
        why = "the Hub could not be reached" if online else "downloading is off (set HF_HUB_OFFLINE=0 to allow it)"
        raise ModelLoadError(f"{repo}@{commit[:12]} is not in the local Hugging Face cache and {why}.") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        log.warning("downloading %s@%s failed: %s", repo, commit, e)
        raise ModelLoadError(f"{repo}@{commit[:12]} could not be downloaded from the Hub "
                             f"({type(e).__name__}); try again later.") from None
    return Path(folder), commit


def without_paths(text: str, folder: Path, name: str) -> str:
    """An error message with the local snapshot folder replaced by the repository's name."""
    return text.replace(str(folder), name).replace(str(_cache_dir()), "<cache>")


# --------------------------------------------------------------------------------------------- publishing
def export_model(card_id: str, out: Path) -> Path:
    """Write an embedded model as a Hub repository folder: ``config.json`` (architecture, labels, input spec),
    ``model.safetensors`` (fp16) and a ``README.md`` model card; the ``hub`` loader reads it back."""
    import shutil

    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from zoo import ASSETS
    from zoo.cards import load_card

    card = load_card(card_id)
    if card.kind != "embedded":
        raise ValueError(f"{card_id} is not an embedded model (its source is {card.kind}); only the models "
                         f"trained in this repository are published from here.")
    out.mkdir(parents=True, exist_ok=True)
    spec = card.input
    config = {"arch": card.source["arch"], "num_classes": len(card.labels), "labels": list(card.labels),
              "family": card.family, "target_layers": list(card.target_layers),
              "input": {"frames": spec.frames, "size": list(spec.size),
                        "resize": list(spec.resize) if spec.resize else None,
                        "mean": list(spec.mean), "std": list(spec.std)}}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(ASSETS / card.source["weights"], out / "model.safetensors")
    held = card.held_out
    results = [EvalResult(task_type="video-classification", dataset_type="synthactions-10",
                          dataset_name=held["dataset"], dataset_split=held["split"], metric_type="accuracy",
                          metric_name="top-1", metric_value=held["top1"])] if held else None
    data = ModelCardData(model_name=card.id, library_name="videoxai", pipeline_tag="video-classification",
                         license="mit", tags=["video-classification", "explainability", "synthetic"],
                         eval_results=results)
    text = MODEL_CARD.format(name=card.name, description=card.description, card_id=card.id,
                             top1=f"{held['top1']:.1%}" if held else "not measured",
                             shuffled=f"{held['top1_shuffled_frames']:.1%}" if held else "not measured",
                             params=card.training.get("parameters", "?"), command=card.training.get("command", ""),
                             frames=spec.frames, height=spec.size[0], width=spec.size[1])
    ModelCard.from_template(data, template_str=f"---\n{{{{ card_data }}}}\n---\n\n{text}").save(out / "README.md")
    return out


MODEL_CARD = """# {name}

{description}

- Held-out top-1 on SynthActions-10 v2 (300 hard clips): {top1}; with the frames shuffled: {shuffled}.
- Parameters: {params}. Input: {frames} frames of {height}x{width} RGB, normalised with the mean and std of
  `config.json`.
- Trained with `{command}`.

## Explain it

With the project checked out and installed (`pip install -e .`), the zoo card `hub-{card_id}` loads this
repository through the `hub` loader, and every method runs on it:

```bash
videoxai explain clip.mp4 --model hub-{card_id} --method grad_cam
```
"""


def push_folder(folder: Path, repo_id: str, token: str | None = None, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns the commit to pin in a card."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint(), token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="Publish with videoxai export")
    return info.oid
