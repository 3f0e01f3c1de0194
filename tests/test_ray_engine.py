"""The benchmark on a local two-CPU Ray cluster: the serial run's rows, resumed, and a worker killed mid-row."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import faithfulness as serial
from zoo import ASSETS

ray = pytest.importorskip("ray", reason="ray[data] is in requirements-ray.txt, which dev.sh test installs")
ray_engine = pytest.importorskip("benchmarks.ray_engine")

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
MODEL = "synth-r2plus1d-small"


@pytest.fixture
def cluster():
    ray_engine.connect(cpus=2)
    yield
    ray.shutdown()


def _manifest(tmp_path: Path) -> Path:
    """A CSV manifest: an example with its ground truth named in the manifest, a clip without any, a missing file."""
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(ASSETS / "examples" / "synth_move_right_1000001.mp4", clips / "own.mp4")
    shutil.copy(ASSETS / "examples" / "synth_move_right_1000001.json", clips / "truth-of-own.json")
    shutil.copy(ASSETS / "examples" / "synth_grow_1000004.mp4", clips / "plain.mp4")
    (tmp_path / "list.csv").write_text("path,truth\nclips/own.mp4,clips/truth-of-own.json\nclips/plain.mp4,\n"
                                       "clips/missing.mp4,\n")
    return tmp_path / "list.csv"


def _by_key(rows: list[dict]) -> dict:
    return {(r["model"], r["clip"], r["method"]): r for r in rows}


def test_ray_rows_equal_the_serial_rows_and_resume(cluster, tmp_path):
    """A synthetic clip and a manifest's three files × two methods on two workers: the same rows as the serial
    run (metrics to float rounding), the manifest's ground truth used, the missing file an error row; a second
    run computes nothing."""
    manifest = _manifest(tmp_path)
    args = ([MODEL], ["gradient", "grad_cam"], 1)
    reference = serial.run(*args, tmp_path / "serial", manifest=manifest, log=lambda _: None)
    lines = []
    rows = ray_engine.run(*args, tmp_path / "ray", manifest=manifest, workers=2, log=lines.append)
    assert lines[0] == f"0 rows found in {tmp_path / 'ray' / 'results.jsonl'}, 8 to compute"
    ours, theirs = _by_key(rows), _by_key(reference)
    assert set(ours) == set(theirs) and len(rows) == 8
    assert ours == _by_key(serial.read_rows(tmp_path / "ray"))                # every row was written
    for key, row in theirs.items():
        assert set(ours[key]) == set(row)
        for name, value in row.items():
            if isinstance(value, str | dict | None):
                assert ours[key][name] == value, (key, name)
            elif name != "seconds":
                np.testing.assert_allclose(ours[key][name], value, rtol=1e-5, atol=1e-6, err_msg=f"{key} {name}")
    own, missing = ours[MODEL, "file-clips/own.mp4", "grad_cam"], ours[MODEL, "file-clips/missing.mp4", "gradient"]
    assert own["target"] == 1 and "pointing" in own                         # the manifest's truth file
    assert "pointing" not in ours[MODEL, "file-clips/plain.mp4", "grad_cam"]
    assert set(missing) == {"error", "model", "clip", "method", "preset", "seed"} and "missing.mp4" in missing["error"]

    lines.clear()
    assert len(ray_engine.run(*args, tmp_path / "ray", manifest=manifest, log=lines.append)) == 8
    assert lines == [f"8 rows found in {tmp_path / 'ray' / 'results.jsonl'}, 0 to compute"]


def test_a_bad_manifest_is_refused_with_its_reason(tmp_path, capsys):
    (tmp_path / "list.json").write_text('{"path": "a.mp4"}')
    with pytest.raises(SystemExit):
        serial.main(["--manifest", str(tmp_path / "list.json"), "--clips", "0", "--methods", "random", "--models",
                     MODEL, "--out", str(tmp_path / "out")])
    assert "not a manifest" in capsys.readouterr().err
    (tmp_path / "twice.json").write_text('["a.mp4", {"path": "a.mp4"}]')
    with pytest.raises(ValueError, match="listed once"):
        serial.read_manifest(tmp_path / "twice.json")
    (tmp_path / "list.csv").write_text("file\na.mp4\n")
    with pytest.raises(ValueError, match="'path' column"):
        serial.read_manifest(tmp_path / "list.csv")


def _computing() -> dict[int, float]:
    """The Ray Data actors computing a row on this machine (Ray titles such a process `ray::MapWorker(...).submit`
    while a task runs): pid → CPU seconds so far."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
            if title.startswith(b"ray::MapWorker") and b".submit" in title:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(proc.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return found


def test_a_worker_killed_mid_row_loses_only_that_row(tmp_path):
    """The command line on its own local cluster, three occlusion rows on two workers: once a row has landed, the
    worker that is computing is killed; its row is computed again by the restarted actor, and the run ends with
    each row once and no error."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "videoxai", "benchmark", "--engine", "ray", "--workers", "2", "--models", MODEL,
               "--methods", "occlusion", "--clips", "3", "--out", str(out)]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not serial.read_rows(out):
            assert run.poll() is None, run.stdout.read()
            assert time.time() < deadline, "no row in 4 minutes"
            time.sleep(0.2)
        busy = []
        while not busy and len(serial.read_rows(out)) < 3:
            before = _computing()
            time.sleep(0.5)
            busy = [pid for pid, cpu in _computing().items() if cpu - before.get(pid, cpu) > 0.3]
        assert busy, "no worker was computing a row"
        os.kill(busy[0], signal.SIGKILL)
        log, _ = run.communicate(timeout=240)
    finally:
        run.kill()
    assert run.returncode == 0, log
    rows = serial.read_rows(out)
    assert sorted(r["clip"] for r in rows) == ["synth-1000000", "synth-1000001", "synth-1000002"], log
    assert not [r for r in rows if "error" in r] and all(r["forwards"] > 100 for r in rows)
    assert "[3/3]" in log and "got no result" not in log
    assert "will be retried" in log, log                # Ray's word that the killed worker's row went back
