"""No orphans: when ``kvopt study run`` is killed with SIGKILL (no chance to clean up), every
process it started — local pool workers, the multiprocessing resource tracker, Dask's worker
processes — exits on its own within seconds (kvopt.study.worker.exit_with_parent; Dask's
workers watch their nanny's pipe)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import ROOT

STUDY = """\
solve: plan
base: {model: Llama-3.1-8B, input_len: 800, output_len: 120, slo_tpot_p99_ms: 40,
       gpus: [H100-SXM, A100-SXM-80GB, L40S, L4], tp_options: [1, 2, 4],
       precisions: [bf16/bf16, fp8/fp8, int4/bf16], batches: [16, 64, 256], capacity: exact}
axes: {rps: [1, 2, 3, 4, 5, 6, 7, 8], input_len: [700, 800, 900, 1000, 1100, 1200]}
"""


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("runner", [["--workers", "2"], ["--dask", "local", "--workers", "2"]],
                         ids=["process-pool", "dask-local"])
def test_sigkill_of_the_parent_leaves_no_process(tmp_path: Path, runner: list[str]) -> None:
    if runner[0] == "--dask":
        pytest.importorskip("dask.distributed")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "kvopt.cli.main", "study", "run",
                             str(study), "--out", str(tmp_path / "out"), "--quiet", *runner],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            started |= _descendants(proc.pid)
            python_kids = [p for p in started if _alive(p)]
            if len(python_kids) >= 2 and (tmp_path / "out" / "study.sqlite").exists():
                time.sleep(1.0)  # the workers are computing
                started |= _descendants(proc.pid)
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert len(started) >= 2, started
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in started):
            time.sleep(0.1)
        left = sorted(p for p in started if _alive(p))
        assert not left, [Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")[:120]
                          for p in left]
    finally:
        for p in started:  # only what this test started, by id
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
