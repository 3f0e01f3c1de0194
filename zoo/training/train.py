"""Train the embedded models on SynthActions-10 (``videoxai train --arch r2plus1d_small cnn_lstm``).

Reproducible from ``--seed``: the clip pools come from fixed seed ranges and the batch order from a seeded
generator. The recipe (docs/training.md): a curriculum that starts on flat backgrounds (from-scratch training sits
at chance on textured ones otherwise), label-mapped flips and time reversal, AdamW with a cosine schedule, and bf16
autocast with ``channels_last_3d`` where the device has bf16 units (``bf16_is_native``), fp32 elsewhere.
``--device cuda`` trains on a GPU (same recipe and batch order); ``--cache DIR`` keeps the rendered pools as
``.npy`` files so that several runs (e.g. concurrent ones on one GPU) render them once.

The weights go to ``<assets>/models/<card id>.safetensors`` (fp16; ``zoo.ASSETS``), and the card's ``training``
section is rewritten with the held-out accuracy, the shuffled-frame control, parameter count, file size, command and
time (in ``zoo/cards``, or in a copy of the card in ``--card-dir``, so that concurrent runs keep their own record).
Its ``held_out`` section gets the same accuracies; ``videoxai accuracy --record`` remeasures them alone,
e.g. after a new version of the dataset.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from explainers.device import bf16_is_native, configure_cpu
from zoo import ASSETS, synthetic
from zoo.architectures import build
from zoo.cards import CARDS_DIR, load_card
from zoo.models import VideoClassifier, load_model, read_embedded_weights, save_embedded_weights

EMBEDDED_CARDS = {"r2plus1d_small": "synth-r2plus1d-small", "cnn_lstm": "synth-cnn-lstm",
                  "videomae_small": "synth-videomae-small"}
POOL_OFFSETS = {"hard": 0, "medium": 200_000, "easy": 400_000, "trivial": 600_000}
# Curriculum: (fraction of the curriculum done, mixing weights over trivial/easy/medium/hard), then FINAL_MIXTURE.
CURRICULUM = ((0.2, (1, 0, 0, 0)), (0.5, (0.2, 0.4, 0.4, 0)), (1.0, (0, 0.2, 0.3, 0.5)))
FINAL_MIXTURE = (0, 0.1, 0.2, 0.7)
PRESET_ORDER = ("trivial", "easy", "medium", "hard")


def _render_chunk(args: tuple[list[int], str]) -> np.ndarray:
    torch.set_num_threads(1)
    return synthetic.render_batch(*args)[0]


def render_pool(seeds: list[int], preset: str, workers: int, cache: Path | None = None) -> np.ndarray:
    """Render clips in ``workers`` processes: uint8 N×T×H×W×3 (labels are seed mod 10).

    With ``cache``, the pool is read from (memory-mapped) or written to ``cache/<dataset>/<preset>-<first>-<n>.npy``
    (the dataset version keeps pools of earlier renderers apart); a cached pool of the same preset and first seed
    with more clips serves a smaller one (its first ``n`` clips).
    """
    if cache is not None:
        cache = cache / synthetic.DATASET.replace(" ", "-")
    path = cache / f"{preset}-{seeds[0]}-{len(seeds)}.npy" if cache is not None else None
    if path is not None:
        counts = {int(n): p for p in cache.glob(f"{preset}-{seeds[0]}-*.npy")
                  if (n := p.stem.rsplit("-", 1)[1]).isdigit()}
        enough = [n for n in counts if n >= len(seeds)]
        if enough:
            return np.load(counts[min(enough)], mmap_mode="r")[:len(seeds)]
    chunks = [(seeds[i:i + 64], preset) for i in range(0, len(seeds), 64)]
    out = None
    with mp.get_context("fork").Pool(workers) as pool:
        for i, clips in enumerate(pool.imap(_render_chunk, chunks)):
            out = np.empty((len(seeds), *clips.shape[1:]), np.uint8) if out is None else out
            out[i * 64:i * 64 + len(clips)] = clips
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path.with_suffix(".tmp.npy"), out)
        path.with_suffix(".tmp.npy").rename(path)
    return out


def to_input(clips: np.ndarray | torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 N×T×H×W×3 → normalised float N×3×T×H×W."""
    x = torch.as_tensor(clips).permute(0, 4, 1, 2, 3).float().div_(255)
    return (x - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-mapped horizontal flip, vertical flip and time reversal, each with probability 0.5 per clip.

    ``gen`` and ``y`` live on the CPU (the same draws on any device); ``x`` may live anywhere.
    """
    for dim, mapping in ((4, synthetic.HFLIP), (3, synthetic.VFLIP), (2, synthetic.REVERSE)):
        flip = torch.rand(len(y), generator=gen) < 0.5
        if flip.any():
            on_device = flip.to(x.device)
            x[on_device] = x[on_device].flip(dim)
            y = torch.where(flip, torch.tensor(mapping)[y], y)
    return x, y


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, weight: float,
                      temperature: float) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): (1 − weight)·cross-entropy + weight·T²·KL(teacher ‖ student),
    both distributions softened by the temperature T (the T² keeps the soft term's gradient scale independent of T)."""
    soft = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True)
    return (1 - weight) * F.cross_entropy(logits, y) + weight * temperature ** 2 * soft


def curriculum_weights(step: int, length: float) -> tuple[float, ...]:
    """The pools' mixing weights at ``step`` of a curriculum that reaches ``FINAL_MIXTURE`` after ``length`` steps."""
    return next((w for end, w in CURRICULUM if step / length < end), FINAL_MIXTURE)


def top1_accuracy(model: torch.nn.Module, clips: np.ndarray, labels: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
             shuffle_frames: bool = False, bf16: bool = False, batch: int = 32) -> float:
    """Top-1 accuracy; ``shuffle_frames`` permutes each clip's frames (a model using temporal order drops to chance)."""
    return float(np.mean(predict(model, clips, mean, std, shuffle_frames, bf16, batch) == labels))


@torch.inference_mode()
def predict(model: torch.nn.Module, clips: np.ndarray, mean: torch.Tensor, std: torch.Tensor,
            shuffle_frames: bool = False, bf16: bool = False, batch: int = 32) -> np.ndarray:
    """Top-1 class of every clip (uint8 N×T×H×W×3)."""
    model.eval()
    device = next(model.parameters()).device
    mean, std = mean.to(device), std.to(device)
    gen = torch.Generator().manual_seed(0)
    out = []
    for i in range(0, len(clips), batch):
        x = to_input(torch.from_numpy(np.array(clips[i:i + batch])).to(device), mean, std)
        if shuffle_frames:
            x = torch.stack([c[:, torch.randperm(c.shape[1], generator=gen).to(device)] for c in x])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model(x).argmax(1).cpu().numpy())
    return np.concatenate(out)


def held_out(model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, split: str, first: int = 0,
             count: int | None = None, workers: int = 1, cache: Path | None = None) -> dict:
    """Top-1 of ``model`` on clips ``first .. first + count`` of a fixed SynthActions-10 split (hard preset):
    overall, per class and with each clip's frames shuffled, and which dataset version rendered the clips.
    On the whole test split this is a model card's ``held_out`` record."""
    seeds = synthetic.split_seeds(split, first + (count or synthetic.TEST_SIZE))[first:]
    labels = np.array(seeds) % len(synthetic.CLASSES)
    clips = render_pool(seeds, "hard", workers, cache)
    hits = predict(model, clips, mean, std) == labels
    return {
        "dataset": synthetic.DATASET, "split": split, "preset": "hard", "clips": len(seeds),
        "seeds": f"{seeds[0]}..{seeds[-1]}",
        "top1": round(float(hits.mean()), 4),
        "top1_per_class": {name: round(float(hits[labels == k].mean()), 3) for k, name in enumerate(synthetic.CLASSES)},
        "top1_shuffled_frames": round(top1_accuracy(model, clips, labels, mean, std, shuffle_frames=True), 4),
    }


def continue_from(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load ``path`` into ``model``; weights that gained input channels since (a new input stream, such as the
    CNN-LSTM's optical flow) keep their old channels and start the new ones at zero, so the model computes the
    same function as before and training carries on from there."""
    state, current = read_embedded_weights(path), model.state_dict()
    for name, old in state.items():
        new = current[name]
        same_but_inputs = old.shape[:1] + old.shape[2:] == new.shape[:1] + new.shape[2:]
        if old.dim() > 1 and old.shape[1] < new.shape[1] and same_but_inputs:
            state[name] = torch.cat([old, old.new_zeros(old.shape[0], new.shape[1] - old.shape[1], *old.shape[2:])], 1)
    model.load_state_dict(state)
    return model


def train(arch: str, pools: dict[str, np.ndarray], val: tuple[np.ndarray, np.ndarray], steps: int, batch: int,
          lr: float, seed: int, log, init: Path | None = None, clip_grad: float = 0.0,
          device: str = "cpu", ema: float = 0.0, checkpoint: Path | None = None,
          checkpoint_every: int = 250, teacher: VideoClassifier | None = None,
          distill: tuple[float, float] = (0.5, 2.0), curriculum_steps: int | None = None) -> torch.nn.Module:
    """Train from scratch with the curriculum, or continue from ``init`` weights on the final mixture.

    ``ema`` > 0 keeps an exponential moving average of the weights (and buffers) with that decay per step; it is
    what gets validated and returned. With ``checkpoint``, the whole training state (weights, optimiser,
    schedule, batch-order generator, moving average, step) is written there every ``checkpoint_every`` steps and
    removed at the end; a run that finds the file continues from it, so an interrupted run started again with
    the same settings ends with the weights it would have had (a run with other settings refuses the file).
    With a ``teacher`` (a zoo model on the same classes), the loss is ``distillation_loss`` with
    ``distill`` = (weight, temperature), the teacher seeing the same augmented clips."""
    card = load_card(EMBEDDED_CARDS[arch])
    mean, std = torch.tensor(card.input.mean, device=device), torch.tensor(card.input.std, device=device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(arch, len(synthetic.CLASSES))
    if init is not None:
        continue_from(model, init)
    fmt = torch.channels_last_3d if arch == "r2plus1d_small" else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, int(0.03 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    averaged = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema), use_buffers=True) if ema > 0
                else None)
    t0, running, bf16 = time.time(), [], bf16_is_native(device)
    curriculum_steps = curriculum_steps or steps / 5
    run = repr((arch, steps, batch, lr, seed, clip_grad, ema, init is not None, curriculum_steps,
                sorted((name, len(pool)) for name, pool in pools.items()))
               + ((teacher.card.id, *distill) if teacher is not None else ()))
    if teacher is not None:
        teacher = teacher.to(device)
        t_mean = torch.tensor(teacher.input_spec.mean, device=device).view(1, 3, 1, 1, 1)
        t_std = torch.tensor(teacher.input_spec.std, device=device).view(1, 3, 1, 1, 1)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = _restore(checkpoint, run, model, opt, sched, gen, averaged)
        log(f"{arch}: continuing from step {start} ({checkpoint})")
    for step in range(start, steps):
        model.train()
        mixture = FINAL_MIXTURE if init else curriculum_weights(step, curriculum_steps)
        weights = torch.tensor(mixture, dtype=torch.float)
        source = torch.multinomial(weights, batch, replacement=True, generator=gen)
        idx = [int(torch.randint(len(pools[PRESET_ORDER[s]]), (1,), generator=gen)) for s in source]
        clips = np.stack([pools[PRESET_ORDER[s]][i] for s, i in zip(source.tolist(), idx)])
        y = torch.tensor([i % len(synthetic.CLASSES) for i in idx])  # pool offsets are multiples of 10
        x, y = augment(to_input(torch.from_numpy(clips).to(device), mean, std), y, gen)
        y = y.to(device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x.contiguous(memory_format=fmt)).float()
            if teacher is None:
                loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    pixels = x * std.view(1, 3, 1, 1, 1) + mean.view(1, 3, 1, 1, 1)
                    taught = teacher((pixels - t_mean) / t_std).float()
                loss = distillation_loss(logits, taught, y, *distill)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(model)
        running.append(loss.item())
        if (step + 1) % 250 == 0 or step + 1 == steps:
            acc = top1_accuracy(model if averaged is None else averaged.module, *val, mean, std, bf16=bf16)
            log(f"{arch} step {step + 1}/{steps} loss {np.mean(running):.3f} val {acc:.3f} "
                f"lr {sched.get_last_lr()[0]:.2e} {time.time() - t0:.0f}s")
            running = []
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            _save_state(checkpoint, run, step + 1, model, opt, sched, gen, averaged)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    model = model if averaged is None else averaged.module
    return model.to(device="cpu", memory_format=torch.contiguous_format).eval()


def _save_state(path: Path, run: str, step: int, model, opt, sched, gen, averaged) -> None:
    state = {"run": run, "step": step, "model": model.state_dict(), "opt": opt.state_dict(),
             "sched": sched.state_dict(), "gen": gen.get_state(), "rng": torch.get_rng_state(),
             "ema": averaged.state_dict() if averaged is not None else {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)                           # never a half-written checkpoint


def _restore(path: Path, run: str, model, opt, sched, gen, averaged) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["run"] != run:
        raise ValueError(f"{path} was written by a run with other settings ({state['run']}); delete it to start "
                         f"afresh")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["rng"])
    if averaged is not None:
        averaged.load_state_dict(state["ema"])
    return state["step"]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", default=["r2plus1d_small", "cnn_lstm"], choices=list(EMBEDDED_CARDS),
                        help="default: the two CNNs (the cards' recorded commands rely on it)")
    parser.add_argument("--steps", type=int, nargs="+", default=[3000], help="one value, or one per --arch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3], help="one value, or one per --arch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", type=int, nargs=4, default=(1000, 2000, 3000, 8000),
                        metavar=("TRIVIAL", "EASY", "MEDIUM", "HARD"), help="training clips per preset")
    parser.add_argument("--curriculum-steps", type=int, default=None,
                        help="the step at which the curriculum reaches its final mixture (default: a fifth of --steps)")
    parser.add_argument("--clip-grad", type=float, default=0.0, help="clip the gradient norm (0: off)")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="validate and save an exponential moving average of the weights with this decay (0: off)")
    parser.add_argument("--checkpoint-every", type=int, default=250,
                        help="save the training state to --out every N steps; the same command continues from it "
                             "after an interruption (0: off)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=None, help="rendering processes (default: --threads)")
    parser.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda")
    parser.add_argument("--cache", type=Path, default=None, help="keep the rendered pools here as .npy files")
    parser.add_argument("--out", type=Path, default=ASSETS / "models", help="where the weights go")
    parser.add_argument("--card-dir", type=Path, default=CARDS_DIR,
                        help="write the updated model card here (read from here if it is there, else from zoo/cards)")
    parser.add_argument("--init", nargs="*", default=(), choices=list(EMBEDDED_CARDS), metavar="ARCH",
                        help="architectures that continue from their weights in --out (final curriculum mixture)")
    parser.add_argument("--teacher", default=None, metavar="MODEL_ID",
                        help="distil from this zoo model (e.g. synth-r2plus1d-small): it sees the same clips")
    parser.add_argument("--distill", type=float, nargs=2, default=(0.5, 2.0), metavar=("WEIGHT", "TEMPERATURE"),
                        help="with --teacher: the soft loss's weight and the softmax temperature")
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    command = shlex.join(["videoxai", "train", *(sys.argv[2:] if argv is None else argv)])

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    t0 = time.time()
    workers = args.workers or args.threads
    pools = {p: render_pool(list(range(POOL_OFFSETS[p], POOL_OFFSETS[p] + n)), p, workers, args.cache)
             for p, n in zip(PRESET_ORDER, args.pool)}
    val_seeds = synthetic.split_seeds("val")
    val = (render_pool(val_seeds, "hard", workers, args.cache), np.array(val_seeds) % len(synthetic.CLASSES))
    log(f"rendered {sum(len(p) for p in pools.values())} training clips in {time.time() - t0:.0f}s")

    if not all(len(v) in (1, len(args.arch)) for v in (args.steps, args.lr)):
        parser.error("--steps and --lr take one value or one per --arch")
    teacher = load_model(args.teacher) if args.teacher else None
    for i, arch in enumerate(args.arch):
        steps, lr = args.steps[min(i, len(args.steps) - 1)], args.lr[min(i, len(args.lr) - 1)]
        t1 = time.time()
        init = args.out / f"{EMBEDDED_CARDS[arch]}.safetensors" if arch in args.init else None
        state = args.out / f"{EMBEDDED_CARDS[arch]}.train-state.pt" if args.checkpoint_every > 0 else None
        model = train(arch, pools, val, steps, args.batch, lr, args.seed, log, init, args.clip_grad, args.device,
                      args.ema, state, args.checkpoint_every, teacher, tuple(args.distill), args.curriculum_steps)
        minutes = (time.time() - t1) / 60
        card_id = EMBEDDED_CARDS[arch]
        card = load_card(card_id)
        mean, std = torch.tensor(card.input.mean), torch.tensor(card.input.std)
        path = args.out / f"{card_id}.safetensors"
        save_embedded_weights(model, path)
        test = held_out(model, mean, std, "test", workers=workers, cache=args.cache)
        result = {
            **test,
            "parameters": sum(p.numel() for p in model.parameters()),
            "file_bytes": path.stat().st_size,
            "steps": steps, "curriculum_steps": args.curriculum_steps or steps // 5, "lr": lr,
            "clip_grad": args.clip_grad, "ema": args.ema, "batch": args.batch,
            "seed": args.seed,
            **({"teacher": args.teacher, "distill_weight": args.distill[0], "distill_temperature": args.distill[1]}
               if teacher is not None else {}),
            "train_minutes": round(minutes, 1),
            "machine": (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                        else f"{torch.get_num_threads()} CPU threads")
                       + (", bf16 autocast" if bf16_is_native(args.device) else ", fp32"),
            "command": command,
        }
        log(f"{arch}: {json.dumps(result)}")
        card_path = args.card_dir / f"{card_id}.json"
        raw = json.loads((card_path if card_path.exists() else CARDS_DIR / card_path.name).read_text())
        if init is not None:  # keep the whole history: this run continued the one recorded before
            result["continued_from"] = raw.get("training")
            result["train_minutes"] = round(minutes + raw.get("training", {}).get("train_minutes", 0), 1)
        raw["training"] = result
        raw["held_out"] = {**test, "measured_by": command}
        args.card_dir.mkdir(parents=True, exist_ok=True)
        card_path.write_text(json.dumps(raw, indent=2) + "\n")
    return 0
