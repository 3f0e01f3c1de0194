"""How well the app's cost estimates (``jobs.estimate``) predict a request's time (and what peak memory they
predict), and the ZeroGPU windows each method's ``fast`` preset asks for.

    python -m benchmarks.estimates [--model synth-r2plus1d-small] [--threads 2]

Each method runs twice on the first example clip, as the app would: estimated, run, then ``jobs.learn``; the
second estimate uses what the first run measured. The window table is computed with ZeroGPU's prior (no run).
"""
from __future__ import annotations

import argparse
import time

import analysis
import jobs
from explainers import REGISTRY
from explainers.device import configure_cpu

METHODS = (("grad_cam", None), ("occlusion", "fast"), ("rise", "fast"), ("aosa", None), ("ep3d", "fast"))


def accuracy_table(card_id: str) -> list[str]:
    clip = analysis.load_clip(sorted(analysis.EXAMPLES_DIR.glob("*.mp4"))[0], card_id)
    rows = ["| method | estimate, first run | took | estimate after it | took | peak memory estimate |",
            "|---|---|---|---|---|---|"]
    for method, preset in METHODS:
        cells = []
        for _ in range(2):
            todo = [jobs.Job(method, preset, {})]
            cost = jobs.estimate(clip, todo)
            start = time.perf_counter()
            *_, results = jobs.analyse(clip, todo, None, 0)
            cells += [f"{cost.seconds:.2f} s", f"{time.perf_counter() - start:.2f} s"]
            jobs.learn(card_id, results)
        rows.append(f"| {method} | " + " | ".join(cells) + f" | {cost.memory_mb:,.0f} MB |")
    return rows


def window_table(card_ids: tuple[str, ...]) -> list[str]:
    jobs.ON_ZERO_GPU = True            # ZeroGPU's estimates, as the Space computes them (prior per pass)
    jobs.forget()
    clips = {c: analysis.load_clip(sorted(analysis.EXAMPLES_DIR.glob("*.mp4"))[0], c) for c in card_ids}
    header = " | ".join(f"windows (maps + metrics), {c}" for c in card_ids)
    rows = [f"| method (fast preset) | forward + backward passes | {header} |", "|---|---|" + "---|" * len(card_ids)]
    for method, spec in REGISTRY.items():
        todo = [jobs.Job(method, "fast" if "fast" in spec.presets else None, {})]
        cells = []
        for clip in clips.values():
            cost = jobs.estimate(clip, todo)
            refused = "" if cost.fits else f" (refused: {cost.seconds:.0f} s)"
            cells.append(f"{jobs.window(cost.explaining)} + {jobs.window(cost.scoring)} s{refused}")
        rows.append(f"| `{method}` | {cost.forward:,} + {cost.backward:,} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synth-r2plus1d-small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    print("\n".join(accuracy_table(args.model)), end="\n\n")
    print("\n".join(window_table(("synth-r2plus1d-small", "synth-cnn-lstm"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
