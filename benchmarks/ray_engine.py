"""The benchmark's rows on a Ray cluster: ``videoxai benchmark --engine ray``.

The rows, their keys, the resume and the ``results.jsonl`` format are those of the serial benchmark
(``benchmarks.faithfulness``), so ``--join`` and the tables work on either engine's output. Ray Data runs a pool
of actors per model: each loads the model once, then takes one row per call (``map_batches`` with
``batch_size=1``, its next row queued beside it), decoding or rendering the row's clip itself; one GPU per actor
where the cluster has GPUs, else ``threads`` CPU cores each. The driver appends each row to the results as it
comes back, so an interrupted run loses only the rows in flight. An actor that dies (killed, out of memory, a node
lost) is restarted and its rows given to the pool again, at most ``RETRIES`` times; a row still without a result
is reported at the end and computed by the next run.

    videoxai benchmark --engine ray --workers 2 --clips 100 --out runs/ray     # a local cluster on this machine
    videoxai benchmark --engine ray --address auto ...                          # the cluster of `ray start --head`

Ray is optional: ``pip install -r requirements-ray.txt``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from pathlib import Path

import ray
import ray.data
from ray.util.annotations import RayDeprecationWarning

from benchmarks import faithfulness as serial
from explainers.device import configure_cpu
from zoo.models import load_model

RETRIES = 2                 # restarts of a dead actor's row before the row is left for the next run
OBJECT_STORE = 256 << 20    # a local cluster's object store, bytes: rows are small JSON strings


class Worker:
    """One actor of a model's pool: the model loaded once, then one row per call."""

    def __init__(self, model_id: str, device: str, threads: int, options: dict):
        configure_cpu(threads)
        self.model = load_model(model_id, device)
        self.load = serial.loader(self.model.input_spec, device)
        self.options = options

    def __call__(self, batch: dict) -> dict:
        rows = [serial.compute_row(self.model, _job(text), self.load, **self.options) for text in batch["job"]]
        return {"row": [json.dumps(row) for row in rows]}


def _text(job: serial.Job) -> str:
    return json.dumps(dataclasses.asdict(job))


def _job(text: str) -> serial.Job:
    fields = json.loads(text)
    return serial.Job(**{**fields, "clip": serial.Clip(**fields["clip"])})


def connect(address: str | None = None, cpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` made here), or start a local one with
    ``cpus`` cores (all by default), no dashboard and a small object store."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE,
                 logging_level=logging.WARNING)


def run(models: list[str], methods: list[str], n_clips: int, out: Path, preset: str = "fast", seed: int = 0,
        folder: Path | None = None, log=print, params: dict | None = None, split: str = "test",
        sanity: bool = False, extra: bool = False, manifest: Path | None = None, sensitivity: bool = False,
        address: str | None = None, workers: int | None = None, threads: int = 1) -> list[dict]:
    """``serial.run``'s rows, computed by a pool of actors per model on the cluster at ``address`` (a local one
    if None): ``workers`` actors (default: one per GPU, else one per ``threads`` CPU cores of the cluster).
    Appends each row to ``out/results.jsonl`` as it arrives; returns all rows."""
    rows, todo = serial.pending(models, methods, serial.clips(n_clips, folder, split, manifest), out, params)
    log(f"{len(rows)} rows found in {serial.results_file(out)}, {len(todo)} to compute")
    if not todo:
        return rows
    connect(address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    size = workers or gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.max_errored_blocks = -1             # a row out of retries is reported below, not the end of the run
    options = dict(preset=preset, seed=seed, params=params, sanity=sanity, extra=extra, sensitivity=sensitivity)
    report = serial.progress(len(todo), log)
    for model_id in dict.fromkeys(job.model for job in todo):
        jobs = [_text(job) for job in todo if job.model == model_id]
        # two rows in flight per actor: its next row is waiting when one ends (1.72× on 2 cores, 1.66× with one)
        pool = ray.data.ActorPoolStrategy(size=min(size, len(jobs)), max_tasks_in_flight_per_actor=2)
        with warnings.catch_warnings():     # max_task_retries has no named parameter in Ray 2.60, only **kwargs
            warnings.simplefilter("ignore", RayDeprecationWarning)
            results = ray.data.from_items([{"job": job} for job in jobs], override_num_blocks=len(jobs)).map_batches(
                Worker, batch_size=1, compute=pool, num_gpus=1 if gpus else 0, num_cpus=threads,
                fn_constructor_kwargs=dict(model_id=model_id, device="cuda" if gpus else "cpu", threads=threads,
                                           options=options), max_task_retries=RETRIES)
        received = 0
        for item in results.iter_rows():
            row = json.loads(item["row"])
            serial.append_rows(out, [row])
            rows.append(row)
            received += 1
            report(row)
        if received < len(jobs):
            log(f"{model_id}: {len(jobs) - received} rows got no result (their worker died {RETRIES + 1} times, "
                f"or raised an error: see the log above); run the same command again to compute them")
    return rows
