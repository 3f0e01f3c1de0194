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


def tiny_transformer(kind: str, blocks: int = 2):
    """A transformers video classifier of ``kind`` (videomae, timesformer, vivit) with ``blocks`` blocks, and its
    frame count."""
    import transformers as tf

    common = dict(image_size=112, hidden_size=64, num_hidden_layers=blocks, num_attention_heads=2,
                  intermediate_size=128, num_labels=3, id2label={0: "x", 1: "y", 2: "z"},
                  label2id={"x": 0, "y": 1, "z": 2})
    if kind == "videomae":
        return tf.VideoMAEForVideoClassification(tf.VideoMAEConfig(num_frames=16, **common)), 16
    if kind == "timesformer":
        return tf.TimesformerForVideoClassification(tf.TimesformerConfig(num_frames=8, **common)), 8
    return tf.VivitForVideoClassification(tf.VivitConfig(num_frames=16, tubelet_size=[2, 16, 16], **common)), 16


TARGET_LAYERS = {"videomae": "videomae.encoder.layer.-1", "timesformer": "timesformer.encoder.layer.-2",
                 "vivit": "vivit.layers.-2"}


def tiny_classifier(kind: str, blocks: int = 2):
    """``tiny_transformer`` wrapped as the zoo wraps a Hub transformer (its card names the CAM layer), and its
    frame count."""
    from zoo.cards import card_from_dict
    from zoo.models import wrap_transformer

    net, frames = tiny_transformer(kind, blocks)
    card = card_from_dict({"id": f"tiny-{kind}", "family": "video_transformer", "license": "test",
                           "source": {"kind": "transformers", "repo": "none", "revision": "none"},
                           "input": {"frames": frames, "size": [112, 112]}, "target_layers": [TARGET_LAYERS[kind]]})
    return wrap_transformer(net.eval(), card), frames
