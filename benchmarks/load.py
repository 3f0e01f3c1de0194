"""Many visitors at once: the app in its own process on 127.0.0.1, driven by N ``gradio_client`` visitors for T
seconds, with cheap requests (classify, one-pass explanations), long ones (EP-3D ``fast``, occlusion ``fast``)
that are sometimes cancelled, and visitors that drop their connection mid-run (a killed client process).

It reports, per kind of request, how many were answered, refused (with the messages) or failed, their latency
p50/p95/max (for one-pass explanations both the first result, the overlay, and the whole answer with the metrics;
each with a fresh seed, so no two requests are the same), and the server's CPU, resident memory and disk (uploads,
results, Gradio's cache) over time: after warm-up, at the end, once idle, and after the retention time.

    python -m benchmarks.load [--visitors 20] [--seconds 120] [--think 5 20] [--retention 60]

``--think``: the seconds a visitor spends on each result before the next request (watching the overlay loop,
reading the curves), drawn uniformly from the range; ``--think 0.5 2`` is a crowd of scripts.

``--fetch``: the files a visitor fetches. ``page`` (the default) fetches what a page shows, as a browser does: the
frame strip of each classification, and the overlay video of each explanation once it arrives; not the downloads
list (maps, results) unless clicked. ``all`` is ``gradio_client``'s own default: every file of every streamed
update, each over a new connection (the overlay three times per explanation), which cost the visitors' process
0.2 s and the server 0.1 s of CPU per explanation beside what ``page`` fetches.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "assets" / "examples").glob("*.mp4"))
MODEL = "synth-r2plus1d-small"
QUICK = ("grad_cam", "gradient")
LONG = (("ep3d", "fast"), ("occlusion", "fast"))
IDLE_MARGIN = 0.1      # cores above the server's own idle use that still count as idle; a running job takes ~1
KINDS = ("classify", "one-pass overlay", "one-pass explain", "long explain", "dropped connection")
OUTCOMES = ("answered", "refused", "cancelled", "failed", "dropped")
DROPPER = """
import sys, time
from gradio_client import Client, handle_file
Client(sys.argv[1], verbose=False).submit(handle_file(sys.argv[2]), sys.argv[3], 0, 0, "ep3d", "fast",
                                          "top-1 class", 0, {}, api_name="/explain")
time.sleep(600)
"""


class Server:
    """The app in a subprocess with its own temporary folder (uploads, results and Gradio's cache)."""

    def __init__(self, retention_s: int):
        self.tmp = Path(tempfile.mkdtemp(prefix="videoxai-load-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "TMPDIR": str(self.tmp), "GRADIO_TEMP_DIR": str(self.tmp / "gradio"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        if retention_s > 0:
            env["VIDEOXAI_RETENTION_S"] = str(retention_s)
        self.log = (self.tmp.parent / f"{self.tmp.name}.log").open("w")
        self.process = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port)], cwd=ROOT, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, within_s: float = 120) -> None:
        import httpx

        end = time.time() + within_s
        while time.time() < end:
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"the app did not start; see {self.log.name}")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cores_over(self, seconds: float) -> float:
        """The server's CPU use over the next ``seconds``, in cores."""
        before, t0 = self.cpu_s(), time.time()
        time.sleep(seconds)
        return (self.cpu_s() - before) / (time.time() - t0)

    def settle(self, within_s: float = 120) -> float:
        """Wait until the examples the app answers at start are done (under half a core for a second) and return
        the server's idle CPU use then, in cores: Gradio's queue polls even with no visitor."""
        end = time.time() + within_s
        while self.cores_over(1.0) > 0.5 and time.time() < end:
            pass
        return min(self.cores_over(1.0) for _ in range(3))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
        return 0.0

    def disk_mb(self) -> float:
        """What the server wrote for visitors: everything in its folders but the examples' overlays made at start
        (``app.answer_examples``), which stay for the process's life."""
        made = lambda p: any(part.startswith("videoxai-examples-") for part in p.relative_to(self.tmp).parts)
        return sum(p.stat().st_size for p in self.tmp.rglob("*") if p.is_file() and not made(p)) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


class Record:
    """Outcomes and latencies per kind of request, shared by the visitor threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.messages: dict[str, set[str]] = defaultdict(set)
        self.fetched = 0                                   # files the visitors' pages fetched

    def add(self, kind: str, outcome: str, seconds: float | None = None, message: str = "") -> None:
        with self.lock:
            self.counts[(kind, outcome)] += 1
            if seconds is not None and outcome == "answered":
                self.seconds[kind].append(seconds)
            if message:
                self.messages[f"{kind} {outcome}"].add(message.splitlines()[0][:160])


class Page:
    """What a visitor's page fetches of an answer (``--fetch page``): the file of output ``shown`` (the overlay
    video, the frame strip), once, over the visitor's one connection; nothing with ``--fetch all``, where
    ``gradio_client`` has downloaded every file already."""

    def __init__(self, fetch: str, record: Record):
        import httpx

        self.http = httpx.Client(timeout=60) if fetch == "page" else None
        self.record = record

    def show(self, outputs: tuple, shown: int) -> None:
        item = _file(outputs, shown)
        if self.http is not None and isinstance(item, dict) and item.get("url"):
            self.http.get(item["url"]).raise_for_status()
            with self.record.lock:
                self.record.fetched += 1


def _file(outputs: tuple, index: int) -> str | dict | None:
    """Output ``index`` of a streamed update if it is a file (a path once downloaded, else its FileData), else
    None (a skipped output is ``{"__type__": "update"}``)."""
    item = outputs[index] if isinstance(outputs, tuple) else None
    return item if isinstance(item, str) or (isinstance(item, dict) and "path" in item) else None


def call(record: Record, kind: str, job, cancel_after: float | None = None, first: str | None = None,
         page: Page | None = None, shown: int = 0) -> None:
    """Wait for a submitted job (cancelling it after ``cancel_after`` s) and record what became of it; ``first``:
    also record, under that kind, when its first result (an output with the overlay video) came; ``page`` fetches
    output ``shown`` of the first result (or of the answer) as the visitor's page would."""
    start = time.time()
    try:
        while not job.done() and (cancel_after is None or time.time() - start < cancel_after):
            if first is not None and (seen := next((o for o in job.outputs() if _file(o, shown)), None)):
                record.add(first, "answered", time.time() - start)
                first = None
                if page is not None:
                    page.show(seen, shown)
                    page = None
            time.sleep(0.05)
        if not job.done():
            job.cancel()
            record.add(kind, "cancelled")
            return
        answer = job.result()
        if first is not None:                  # done before a poll saw the first result: the same time
            record.add(first, "answered", time.time() - start)
        if page is not None:
            page.show(answer, shown)
        record.add(kind, "answered", time.time() - start)
    except Exception as e:   # a refusal is the app's own message (or Gradio's "queue is full"); the rest failed
        from gradio_client.exceptions import AppError
        from gradio_client.utils import QueueError

        refused = isinstance(e, QueueError) or (isinstance(e, AppError) and "has not enabled verbose" not in str(e))
        record.add(kind, "refused" if refused else "failed", message=f"{type(e).__name__}: {e}")


def visitor(url: str, record: Record, until: float, long_runs: bool, seed: int, think: tuple[float, float],
            fetch: str = "page") -> None:
    from gradio_client import Client, handle_file

    rng = random.Random(seed)
    files = {} if fetch == "all" else {"download_files": False}
    client, page = Client(url, verbose=False, **files), Page(fetch, record)
    long_client = Client(url, verbose=False, **files) if long_runs else None   # a second tab: one request per endpoint
    long_page = Page(fetch, record)
    while time.time() < until:
        clip = handle_file(str(rng.choice(EXAMPLES)))
        background = None
        if long_runs and rng.random() < 0.5:
            method, preset = rng.choice(LONG)
            job = long_client.submit(clip, MODEL, 0, 0, method, preset, "top-1 class", 0, {}, api_name="/explain")
            cancel = rng.uniform(3, 15) if rng.random() < 0.5 else max(1.0, until - time.time())
            background = threading.Thread(target=call, args=(record, "long explain", job, cancel, None, long_page))
            background.start()
        call(record, "classify", client.submit(clip, MODEL, None, None, api_name="/classify"), page=page, shown=1)
        method = rng.choice(QUICK)
        call(record, "one-pass explain", client.submit(clip, MODEL, 0, 0, method, "default", "top-1 class",
                                                       rng.randrange(2**32), {}, api_name="/explain"),
             first="one-pass overlay", page=page)
        if background is not None:
            background.join()
        time.sleep(rng.uniform(*think))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> dict:
    """Run the load and print its report; returns the report (counts, latencies, CPU, RSS, disk)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--think", type=float, nargs=2, default=(5.0, 20.0), metavar=("MIN", "MAX"),
                        help="seconds a visitor spends on a result before the next request")
    parser.add_argument("--drops", type=int, default=3, help="visitors that drop their connection mid-run")
    parser.add_argument("--fetch", choices=("page", "all"), default="page",
                        help="files a visitor fetches: what a page shows, or every file of every update")
    parser.add_argument("--retention", type=int, default=60,
                        help="the server's VIDEOXAI_RETENTION_S (0: keep the default and do not wait for it)")
    args = parser.parse_args(argv)
    from gradio_client import Client, handle_file

    server = Server(args.retention)
    samples = []
    try:
        server.wait_ready()
        disk_start = server.disk_mb()
        warm = Client(server.url, verbose=False)          # every kind of request once (EP-3D for 10 s)
        for method, preset in (*[(m, "default") for m in QUICK], *LONG):
            job = warm.submit(handle_file(str(EXAMPLES[0])), MODEL, 0, 0, method, preset, "top-1 class", 0, {},
                              api_name="/explain")
            call(Record(), "warm-up", job, cancel_after=10)
        warm.predict(handle_file(str(EXAMPLES[0])), MODEL, None, None, api_name="/classify")
        idle_cores = server.settle()
        rss_warm = server.rss_mb()
        print(f"after warm-up: RSS {rss_warm:.0f} MB, disk {server.disk_mb():.1f} MB (at start "
              f"{disk_start:.1f} MB)", flush=True)

        record, start = Record(), time.time()
        client_cpu = -sum(os.times()[:2])
        until = start + args.seconds
        stop_sampling = threading.Event()

        def sample() -> None:
            last_cpu, last_t = server.cpu_s(), time.time()
            while not stop_sampling.wait(1.0):
                cpu, t = server.cpu_s(), time.time()
                samples.append((t - start, (cpu - last_cpu) / (t - last_t), server.rss_mb()))
                last_cpu, last_t = cpu, t
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        threads = [threading.Thread(target=visitor, args=(server.url, record, until, i % 2 == 0, i, args.think,
                                                          args.fetch)) for i in range(args.visitors)]
        for t in threads:
            t.start()
        for i in range(args.drops):        # visitors that start a long run and vanish a few seconds later
            time.sleep(args.seconds / (args.drops + 1))
            dropper = subprocess.Popen([sys.executable, "-c", DROPPER, server.url, str(EXAMPLES[i]), MODEL])
            time.sleep(5)
            dropper.kill()
            record.add("dropped connection", "dropped")
        for t in threads:
            t.join()
        ended = time.time()
        client_cpu += sum(os.times()[:2])
        idle_after = None
        while time.time() - ended < 30:
            t0 = time.time()
            if server.cores_over(1.0) < idle_cores + IDLE_MARGIN:
                idle_after = t0 - ended
                break
        time.sleep(3)
        stop_sampling.set()
        rss_end, disk_end = server.rss_mb(), server.disk_mb()
        if args.retention > 0:
            time.sleep(args.retention + max(60, args.retention // 4) + 5)     # a delete_cache round after it
        disk_later, rss_later = server.disk_mb(), server.rss_mb()
    finally:
        server.stop()

    report = {"requests": {kind: {**{o: record.counts.get((kind, o), 0) for o in OUTCOMES},
                                  **_latency(record.seconds.get(kind, []))} for kind in KINDS},
              "messages": {key: sorted(m) for key, m in sorted(record.messages.items())}, "fetched": record.fetched,
              "cpu_cores": [c for _, c, _ in samples], "client_cpu_cores": client_cpu / args.seconds,
              "idle_after_s": idle_after, "idle_cores": idle_cores, "rss_warm_mb": rss_warm,
              "rss_peak_mb": max(r for _, _, r in samples), "rss_end_mb": rss_end, "rss_later_mb": rss_later,
              "disk_start_mb": disk_start,
              "disk_end_mb": disk_end, "disk_later_mb": disk_later}
    print(f"\n{args.visitors} visitors for {args.seconds:.0f} s, {args.think[0]:g}–{args.think[1]:g} s on each "
          f"result ({args.visitors // 2 + args.visitors % 2} also starting long runs, about half cancelled), "
          f"{args.drops} dropped connections; files fetched: {args.fetch}; {os.cpu_count()} cores shared by the "
          f"server and the clients\n")
    print("| request | answered | refused | cancelled | failed | p50 s | p95 s | max s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in report["requests"].items():
        times = " | ".join(f"{r[q]:.2f}" if r[q] is not None else "–" for q in ("p50", "p95", "max"))
        print(f"| {kind} | {r['answered']} | {r['refused']} | {r['cancelled'] + r['dropped']} | {r['failed']} | "
              f"{times} |")
    for key, messages in report["messages"].items():
        for m in messages:
            print(f"- {key}: {m}")
    cpu = report["cpu_cores"]
    print(f"\nserver CPU during the load: mean {statistics.mean(cpu):.2f} cores, max {max(cpu):.2f} (the "
          f"visitors' process: {report['client_cpu_cores']:.2f} cores); idle "
          f"{'within ' + format(idle_after, '.1f') + ' s' if idle_after is not None else 'NOT within 30 s'} of "
          f"the last visitor leaving (idle: under {idle_cores + IDLE_MARGIN:.2f} cores, the server's use after "
          f"warm-up + {IDLE_MARGIN})")
    print(f"server RSS: after warm-up {rss_warm:.0f} MB, peak {report['rss_peak_mb']:.0f} MB, once idle at the end "
          f"{rss_end:.0f} MB ({100 * (rss_end / rss_warm - 1):+.1f} %), after the retention time {rss_later:.0f} MB "
          f"({100 * (rss_later / rss_warm - 1):+.1f} %)")
    print(f"disk: at start {disk_start:.1f} MB, at the end {disk_end:.1f} MB, after the retention time "
          f"{disk_later:.1f} MB")
    print("\nover time (s: cores, RSS MB): " + ", ".join(f"{t:.0f}: {c:.1f}, {r:.0f}"
                                                       for t, c, r in samples[::max(1, len(samples) // 12)]))
    return report


def _latency(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": percentile(seconds, 50), "p95": percentile(seconds, 95), "max": max(seconds)}


if __name__ == "__main__":
    main()
