"""A --dask address where no Dask scheduler listens is a one-line error in seconds, before
the study folder is touched (Dask's own client would read another server's first bytes as
a message length and try to allocate that much). Servers here are the test's own, on
127.0.0.1."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

STUDY = """\
solve: plan
base: {model: Llama-3.1-8B, input_len: 500, output_len: 50, gpus: [H100-SXM],
       tp_options: [1], precisions: [fp8/fp8], batches: [64]}
axes: {rps: [2]}
"""


def _server(greeting: bytes | None) -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if greeting is not None:
                conn.sendall(greeting)
                conn.close()
            # else: keep it open and say nothing

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.mark.parametrize("greeting, words", [
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "is not a Dask scheduler"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "is not a Dask scheduler"),
    (None, "is not a Dask scheduler"),
    ("closed", "cannot reach the Dask scheduler"),
], ids=["http", "ssh", "silent", "closed-port"])
def test_not_a_scheduler(tmp_path: Path, run_cli, greeting, words: str) -> None:
    pytest.importorskip("dask.distributed")
    if greeting == "closed":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        srv = None
    else:
        srv, port = _server(greeting)
    study = tmp_path / "s.yaml"
    study.write_text(STUDY)
    try:
        res = run_cli("study", "run", str(study), "--out", str(tmp_path / "out"), "--dask",
                      f"tcp://127.0.0.1:{port}", "--dask-timeout-s", "1")
    finally:
        if srv is not None:
            srv.close()
    assert res.exit_code == 1 and words in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
