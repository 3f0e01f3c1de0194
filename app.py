"""Gradio app: upload a clip or pick an example, pick a model from the zoo, see what it predicts.

UI wiring only; decoding, models and pictures live in ``zoo`` and ``render``. Offline by default: no analytics,
no Hub downloads (set ``HF_HUB_OFFLINE=0`` to allow loading Hub models that are not cached yet).

    python app.py [--host 127.0.0.1] [--port 7860]
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import json  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from render import draw_boxes, frame_strip  # noqa: E402
from zoo.cards import REPO_ROOT, list_cards, load_card  # noqa: E402
from zoo.models import ModelLoadError, VideoClassifier, load_model  # noqa: E402
from zoo.video import VideoError, prepare_clip  # noqa: E402

EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"
DEFAULT_MODEL = "synth-r2plus1d-small"


@lru_cache(maxsize=2)
def get_model(card_id: str) -> VideoClassifier:
    return load_model(card_id)


def example_ground_truth(video_path: str) -> dict | None:
    """The ground truth of a bundled example, found by file name (Gradio serves copies of the files)."""
    path = EXAMPLES_DIR / Path(video_path).with_suffix(".json").name
    return json.loads(path.read_text()) if path.exists() else None


def card_markdown(card_id: str) -> str:
    card = load_card(card_id)
    lines = [f"**{card.name}** — {card.family.replace('_', ' ')}, input {card.input.frames}×"
             f"{card.input.size[0]}×{card.input.size[1]}", "", card.description, "",
             f"Dataset: {card.dataset or 'n/a'} · Licence: {card.license}", ""]
    if card.training:
        t = card.training
        lines.append(f"Held-out accuracy {t['test_top1']:.1%} ({t['test_split']}); with frames shuffled "
                     f"{t['test_top1_shuffled_frames']:.1%}. {t['parameters']:,} parameters, "
                     f"{t['file_bytes'] / 1e6:.1f} MB.")
    return "\n".join(lines)


def classify(video_path: str | None, card_id: str, start_s: float | None, end_s: float | None):
    """Top-5 predictions, the sampled frames as a strip, and notes (warnings, ground truth) for one clip."""
    if not video_path:
        raise gr.Error("Upload a clip or pick an example first.")
    try:
        model = get_model(card_id)
        prepared = prepare_clip(video_path, model.input_spec, start_s or None, end_s or None)
    except (VideoError, ModelLoadError) as e:
        raise gr.Error(str(e)) from None
    top = dict(model.top_k(prepared.x, 5))
    display = prepared.display
    notes = [f"⚠️ {w}" for w in prepared.clip.warnings]
    truth = example_ground_truth(video_path)
    if truth is not None:
        display = draw_boxes(display, np.array(truth["bbox"]), np.array(truth["visible"]))
        notes.append(f"Ground truth: **{truth['class_name']}**, action in frames {truth['window'][0]}–"
                     f"{truth['window'][1]} (yellow boxes: the actor).")
    info = prepared.clip.info
    notes.append(f"{Path(video_path).name}: {info.width}×{info.height}, {info.fps:.2f} fps, {info.frames} frames; "
                 f"sampled frames {prepared.clip.indices.tolist()}.")
    return top, frame_strip(display, count=8), "\n\n".join(notes)


def build_demo() -> gr.Blocks:
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.mp4"))
    choices = [(load_card(i).name, i) for i in list_cards()]
    with gr.Blocks(title="Where did the video model look?", analytics_enabled=False) as demo:
        gr.Markdown("# Where did the video model look?\nUpload a clip or pick an example, pick a model, classify.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="Clip", sources=["upload"])
                with gr.Row():
                    start = gr.Number(label="Segment start (s)", value=0, minimum=0)
                    end = gr.Number(label="Segment end (s), 0 = end of clip", value=0, minimum=0)
                model = gr.Dropdown(choices, value=DEFAULT_MODEL, label="Model")
                card = gr.Markdown(card_markdown(DEFAULT_MODEL))
                run = gr.Button("Classify", variant="primary")
            with gr.Column():
                label = gr.Label(num_top_classes=5, label="Top-5 predictions")
                strip = gr.Image(label="Sampled frames (what the model sees)", type="numpy")
                notes = gr.Markdown()
        gr.Examples(examples, inputs=[video], label="Examples (SynthActions-10 test clips with ground truth)")
        model.change(card_markdown, model, card, api_name=False)
        run.click(classify, [video, model, start, end], [label, strip, notes], api_name="classify")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Explain video classifiers in the browser.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args()
    build_demo().queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
