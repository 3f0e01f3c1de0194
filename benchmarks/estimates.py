"""How well the app's cost estimates (``jobs.estimate``) predict a request's time (and what peak memory they
predict), and the ZeroGPU windows each method's ``fast`` preset asks for.

    python -m benchmarks.estimates [--model synth-r2plus1d-small] [--threads 2] [--methods grad_cam ...]

Each method that applies to the model (as the app offers them) runs its ``fast`` preset once on the first
example clip, as the app would (the map, then its metrics), estimated before it with no earlier run of the method.
The window table is computed with ZeroGPU's prior (no run).
"""
from __future__ import annotations

import argparse
import time

import analysis
import jobs
from explainers import REGISTRY
from explainers.device import configure_cpu


def _timed(step) -> tuple[list, float]:
    start = time.perf_counter()
    *_, results = step
    if not isinstance(results, list):
        raise RuntimeError(results.message)
    return results, time.perf_counter() - start


def accuracy_table(card_id: str, methods: list[str]) -> list[str]:
    """Each method's ``fast`` preset (or its defaults) on the first example, estimated with a fresh calibration and
    no earlier run: the explaining and scoring steps' estimate, what they took, and their ratio."""
    clip = analysis.load_clip(sorted(analysis.EXAMPLES_DIR.glob("*.mp4"))[0], card_id)
    rows = ["| method | explaining: estimate | took | scoring: estimate | took | whole: took / estimate | "
            "peak memory estimate |", "|---|---|---|---|---|---|---|"]
    model = analysis.get_model(card_id)
    for method in [m for m in methods if REGISTRY[m].not_applicable(model) is None]:     # as the app offers them
        todo = [jobs.Job(method, REGISTRY[method].preset_or_none("fast"), {})]
        cost = jobs.estimate(card_id, todo)
        if not cost.fits:
            rows.append(f"| {method} | {cost.explaining:,.0f} s (refused) | | | | | {cost.memory_mb:,.0f} MB |")
            continue
        explained, explaining = _timed(jobs.explain_on_gpu(clip, todo, None, 0))
        _, scoring = _timed(jobs.score_on_gpu(explained))
        ratio = (explaining + scoring) / cost.seconds
        rows.append(f"| {method} | {cost.explaining:.2f} s | {explaining:.2f} s | {cost.scoring:.2f} s | "
                    f"{scoring:.2f} s | {ratio:.2f} | {cost.memory_mb:,.0f} MB |")
        print(rows[-1], flush=True)
    return rows


def window_table(card_ids: tuple[str, ...]) -> list[str]:
    """ZeroGPU's windows, as the Space computes them (the prior per pass); this process's own estimates are
    measured afresh afterwards."""
    header = " | ".join(f"windows (maps + metrics), {c}" for c in card_ids)
    rows = [f"| method (fast preset) | forward + backward passes | {header} |", "|---|---|" + "---|" * len(card_ids)]
    jobs.ON_ZERO_GPU = True
    jobs.forget()
    try:
        for method, spec in REGISTRY.items():
            todo = [jobs.Job(method, "fast" if "fast" in spec.presets else None, {})]
            cells = []
            for card_id in card_ids:
                cost = jobs.estimate(card_id, todo)
                refused = "" if cost.fits else f" (refused: {cost.seconds:.0f} s)"
                cells.append(f"{jobs.window(cost.explaining)} + {jobs.window(cost.scoring)} s{refused}")
            rows.append(f"| `{method}` | {cost.forward:,} + {cost.backward:,} | " + " | ".join(cells) + " |")
    finally:
        jobs.ON_ZERO_GPU = False
        jobs.forget()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synth-r2plus1d-small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(REGISTRY), choices=list(REGISTRY))
    args = parser.parse_args(argv)
    configure_cpu(args.threads)
    print("\n".join(accuracy_table(args.model, args.methods)), end="\n\n")
    print("\n".join(window_table(("synth-r2plus1d-small", "synth-cnn-lstm"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
