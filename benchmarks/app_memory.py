"""Memory and time of the running app through consecutive explanations (issue: stay under 2 GB RSS for 20).

Starts the app in this process on 127.0.0.1, drives ``/explain`` with ``gradio_client`` over both embedded models,
all examples and a rotation of methods, and prints the resident memory after each request and at the end.

    python -m benchmarks.app_memory [--runs 20] [--threads 2] [--methods ...]
"""
from __future__ import annotations

import argparse
import itertools
import socket
import time

from explainers.device import configure_cpu

METHODS = ("grad_cam", "gradient", "swag_v_ig", "aosa_approx", "rise", "occlusion", "integrated_gradients",
           "smoothgrad", "grad_cam_pp", "guided_backprop")
MODELS = ("synth-r2plus1d-small", "synth-cnn-lstm")


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB, from /proc/self/status."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=METHODS, help="the rotation of methods")
    args = parser.parse_args()
    configure_cpu(args.threads)

    from gradio_client import Client, handle_file

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo()
    demo.queue(default_concurrency_limit=1).launch(server_name="127.0.0.1", server_port=port,
                                                   prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    examples = sorted(app.EXAMPLES_DIR.glob("*.mp4"))
    print(f"after start: RSS {rss_mb()[0]:.0f} MB")
    jobs = itertools.islice(zip(itertools.cycle(args.methods), itertools.cycle(MODELS), itertools.cycle(examples)),
                            args.runs)
    start = time.time()
    try:
        for i, (method, model, clip) in enumerate(jobs, 1):
            t = time.time()
            client.predict(handle_file(str(clip)), model, 0, 0, method, app.default_preset(method), app.TOP1, 0,
                           None, api_name="/explain")
            rss, peak = rss_mb()
            print(f"[{i:2d}] {method:<21} {model:<21} {clip.name:<32} {time.time() - t:5.1f} s   "
                  f"RSS {rss:6.0f} MB (peak {peak:.0f})", flush=True)
    finally:
        demo.close()
    rss, peak = rss_mb()
    print(f"{args.runs} explanations in {time.time() - start:.0f} s; final RSS {rss:.0f} MB, peak {peak:.0f} MB "
          f"({'under' if peak < 2048 else 'OVER'} the 2 GB budget)")


if __name__ == "__main__":
    main()
