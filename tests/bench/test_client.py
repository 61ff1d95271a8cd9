"""`kvopt bench` against real local fake OpenAI-compatible servers (HTTP/1.1 + SSE on
127.0.0.1, in a background thread): counts, error kinds, load shapes, timings, bounds."""

from __future__ import annotations

import asyncio
import faulthandler
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvopt.bench.client import BenchConfig, run_load
from kvopt.bench.probe import EndpointError, make_prompt
from kvopt.bench.result import load_bench
from kvopt.bench.stats import BenchFailedError, summarize
from kvopt.errors import InputError, KvoptError

MODEL = "tiny-llama"
A_TOKENS, B_TOKENS, CHAT_TOKENS = 5, 2, 7  # fake tokenizer: 5 + 2 x words (+7 for chat)


@pytest.fixture(autouse=True)
def _no_hang() -> Any:
    """Every test here is bounded: a hang dumps the stacks and ends the run after 30 s."""
    faulthandler.dump_traceback_later(30, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@dataclass
class Behavior:
    """What the fake server does; ``*_every = k`` hits streamed requests k, 2k, 3k, ..."""

    ttft_s: float = 0.03
    itl_s: float = 0.01
    fail_every: int = 0
    stall_every: int = 0
    drop_every: int = 0
    no_usage_every: int = 0
    openai: bool = True
    token: str = " tok"  # each streamed chunk's text, sent as UTF-8 JSON (not \\u-escaped)


@dataclass
class FakeServer:
    behavior: Behavior = field(default_factory=Behavior)
    streams: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    tokens_completed: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def __enter__(self) -> FakeServer:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self.server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            first, *lines = head.split("\r\n")
            method, path, _ = first.split(" ")
            headers = {k.strip().lower(): v.strip()
                       for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}
            n = int(headers.get("content-length", "0"))
            body = json.loads(await reader.readexactly(n)) if n else {}
            self.paths.append(path)
            await self._route(method, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _json(writer: asyncio.StreamWriter, code: int, data: Any) -> None:
        raw = json.dumps(data).encode()
        writer.write(f"HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length:"
                     f" {len(raw)}\r\nconnection: close\r\n\r\n".encode() + raw)
        await writer.drain()

    async def _route(self, method: str, path: str, body: dict[str, Any],
                     writer: asyncio.StreamWriter) -> None:
        b = self.behavior
        if not b.openai or path not in ("/v1/models", "/v1/completions",
                                        "/v1/chat/completions"):
            await self._json(writer, 404, {"detail": "Not Found"})
            return
        if method == "GET":
            await self._json(writer, 200, {"object": "list", "data": [{"id": MODEL}]})
            return
        if body.get("model") != MODEL:
            await self._json(writer, 404, {"object": "error", "type": "NotFoundError",
                                           "message": f"The model `{body.get('model')}` "
                                           "does not exist.", "code": 404})
            return
        chat = path.endswith("chat/completions")
        text = body["messages"][0]["content"] if chat else body["prompt"]
        prompt_tokens = A_TOKENS + B_TOKENS * len(text.split()) + (CHAT_TOKENS if chat else 0)
        if not body.get("stream"):
            await self._json(writer, 200, {"choices": [{"text": "x"}], "usage": {
                "prompt_tokens": prompt_tokens, "completion_tokens": 1}})
            return
        self.bodies.append(body)
        self.streams += 1
        k = self.streams
        if b.fail_every and k % b.fail_every == 0:
            await self._json(writer, 500, {"error": {"message": "boom"}})
            return
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._stream(writer, k, chat, prompt_tokens, int(body["max_tokens"]))
        finally:
            self.in_flight -= 1

    async def _stream(self, writer: asyncio.StreamWriter, k: int, chat: bool,
                      prompt_tokens: int, out: int) -> None:
        b = self.behavior

        async def send(data: Any) -> None:
            text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            raw = f"data: {text}\n\n".encode()
            writer.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            await writer.drain()

        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        if chat:
            await send({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
        await asyncio.sleep(b.ttft_s)
        for i in range(out):
            if i:
                await asyncio.sleep(b.itl_s)
            if i == 2 and b.drop_every and k % b.drop_every == 0:
                writer.transport.abort()
                return
            if i == 2 and b.stall_every and k % b.stall_every == 0:
                await asyncio.sleep(3600)
            await send({"choices": [{"delta": {"content": b.token}} if chat else
                                    {"text": b.token}]})
        if not (b.no_usage_every and k % b.no_usage_every == 0):
            await send({"choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                 "completion_tokens": out}})
        await send("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.tokens_completed += out


def cfg(url: str, **over: Any) -> BenchConfig:
    kw: dict[str, Any] = dict(endpoint=url, model=MODEL, input_len=64, output_len=6,
                              mode="concurrency", load_value=4, num_requests=12,
                              request_timeout_s=5.0)
    kw.update(over)
    return BenchConfig(**kw)


def test_healthy_completions_counts_timings_and_arithmetic() -> None:
    with FakeServer(Behavior(ttft_s=0.05, itl_s=0.02)) as srv:
        c = cfg(srv.url)
        summary = summarize(c, run_load(c))
    r = summary.result
    assert (r["num_requests"], r["completed"], r["errors"], r["incomplete"]) == (12, 12, 0, 0)
    assert r["errors_by_kind"] == {} and summary.warnings == ()
    assert srv.max_in_flight == 4 and r["max_in_flight"] == 4
    # timings against the server's known delays (client overhead is small on localhost)
    assert 50 <= r["ttft_ms"]["mean"] <= 110 and 50 <= r["ttft_ms"]["p50"] <= 110
    assert 18 <= r["itl_ms"]["mean"] <= 32 and 18 <= r["itl_ms"]["p50"] <= 32
    assert r["ttft_ms"]["p50"] <= r["ttft_ms"]["p90"] <= r["ttft_ms"]["p99"]
    assert r["e2e_ms"]["mean"] == pytest.approx(
        r["ttft_ms"]["mean"] + 5 * r["itl_ms"]["mean"], rel=0.1)
    assert r["tpot_ms"]["mean"] == pytest.approx(r["itl_ms"]["mean"], rel=0.1)
    # tokens from usage: 12 requests x 6 tokens over the run's wall time
    assert srv.tokens_completed == 72 and r["mean_output_tokens"] == 6
    assert r["output_tok_s"] == pytest.approx(72 / r["duration_s"])
    assert r["requests_s"] == pytest.approx(12 / r["duration_s"])
    # prompts sized from the two probes: 5 + 2 x 30 words = 65 tokens for --input-len 64
    assert r["prompt_fit"]["words"] == 30 and r["mean_input_tokens"] == 65
    assert r["prompt_fit"]["a_tokens"] == pytest.approx(5)
    body = srv.bodies[0]
    assert body["max_tokens"] == body["min_tokens"] == 6 and body["ignore_eos"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert len({tuple(b["prompt"].split()[:8]) for b in srv.bodies}) == 12  # no shared prefix


def test_unicode_line_separators_in_the_text_are_not_line_breaks() -> None:
    """JSON leaves U+2028, U+2029 and U+0085 unescaped; SSE lines end only at CR/LF. A
    model generating them (a random tiny model does, now and then) must not turn into
    bad_response errors (httpx's aiter_lines splits at them)."""
    with FakeServer(Behavior(token=" a\u2028b\x85c\u2029é")) as srv:
        c = cfg(srv.url)
        r = summarize(c, run_load(c)).result
    assert (r["completed"], r["errors"], r["errors_by_kind"]) == (12, 0, {})
    with FakeServer(Behavior(token="\u2028")) as srv:
        c = cfg(srv.url, api="chat")
        assert summarize(c, run_load(c)).result["errors"] == 0


def test_sse_lines_split_only_at_cr_and_lf() -> None:
    """Lines across arbitrary chunk boundaries: CRLF split between chunks, a multi-byte
    character split between chunks, lone CR and LF, and a last line without a break."""
    from kvopt.bench.client import SseLines

    stream = 'data: {"t": "x\u2028y\x85"}\r\n\r\ndata: é\rdata: [DONE]\nlast'.encode()
    for cut in range(1, len(stream)):
        lines = SseLines()
        got = lines.feed(stream[:cut]) + lines.feed(stream[cut:])
        got.append(lines.flush())
        assert [g for g in got if g] == ['data: {"t": "x\u2028y\x85"}', "data: é",
                                         "data: [DONE]", "last"], cut


def test_chat_api() -> None:
    with FakeServer() as srv:
        c = cfg(srv.url, api="chat", num_requests=4, load_value=2)
        r = summarize(c, run_load(c)).result
    assert r["completed"] == 4 and r["api"] == "chat"
    assert all(p == "/v1/chat/completions" for p in srv.paths[:2])
    assert srv.bodies[0]["messages"][0]["role"] == "user"
    # the chat template's 7 tokens are fitted into a: 12 + 2 x 26 words = 64
    assert r["mean_input_tokens"] == 64


def test_http_500_counted_by_kind() -> None:
    with FakeServer(Behavior(fail_every=3)) as srv:
        c = cfg(srv.url)
        s = summarize(c, run_load(c))
    r = s.result
    assert r["errors_by_kind"] == {"http_5xx": 4} and r["errors"] == 4
    assert r["completed"] == 8 and srv.tokens_completed == 48
    assert r["output_tok_s"] == pytest.approx(48 / r["duration_s"])
    assert any("4 of 12 requests failed (http_5xx 4)" in w for w in s.warnings)


def test_dropped_connections_and_missing_usage_are_errors() -> None:
    with FakeServer(Behavior(drop_every=2)) as srv:
        c = cfg(srv.url, num_requests=8)
        r = summarize(c, run_load(c)).result
    assert r["errors_by_kind"] == {"disconnected": 4} and r["completed"] == 4
    with FakeServer(Behavior(no_usage_every=2)) as srv:
        c = cfg(srv.url, num_requests=8)
        r = summarize(c, run_load(c)).result
    assert r["errors_by_kind"] == {"no_usage": 4} and r["completed"] == 4


def test_stalled_requests_time_out_and_the_run_ends() -> None:
    with FakeServer(Behavior(stall_every=2)) as srv:
        c = cfg(srv.url, num_requests=6, load_value=3, request_timeout_s=0.5,
                duration_s=5.0)
        t = time.perf_counter()
        r = summarize(c, run_load(c)).result
        elapsed = time.perf_counter() - t
    assert r["errors_by_kind"] == {"timeout": 3} and r["completed"] == 3
    assert elapsed < 2.5  # two rounds of at most 0.5 s, plus the probes


def test_duration_stops_issuing_and_cancels_in_flight() -> None:
    with FakeServer(Behavior(ttft_s=0.01, itl_s=0.05)) as srv:
        c = cfg(srv.url, num_requests=10_000, load_value=2, duration_s=1.0)
        t = time.perf_counter()
        r = summarize(c, run_load(c)).result
        elapsed = time.perf_counter() - t
    assert elapsed < 2.0 and r["duration_s"] == pytest.approx(1.0, abs=0.2)
    assert r["completed"] >= 2 and r["incomplete"] <= 2
    assert r["num_requests"] == r["completed"] + r["errors"] + r["incomplete"] == srv.streams


def test_poisson_rate_and_closed_loop_bound() -> None:
    with FakeServer(Behavior(ttft_s=0.005, itl_s=0.002)) as srv:
        c = cfg(srv.url, mode="rps", load_value=30.0, num_requests=1000, duration_s=1.5,
                output_len=3)
        r = summarize(c, run_load(c)).result
    assert abs(srv.streams - 45) <= 20  # ~rps x T (3 sigma of a Poisson count of 45)
    assert r["load"] == {"mode": "rps", "value": 30.0} and r["completed"] == srv.streams
    assert 1.5 <= r["duration_s"] < 2.0  # the arrival window, not the last finish
    assert r["requests_s"] == pytest.approx(srv.streams / r["duration_s"])
    with FakeServer(Behavior(ttft_s=0.02, itl_s=0.005)) as srv:
        c = cfg(srv.url, load_value=3, num_requests=15)
        r = summarize(c, run_load(c)).result
    assert srv.max_in_flight == 3 and r["max_in_flight"] == 3 and r["completed"] == 15


def test_prompts_are_seeded_and_unique() -> None:
    a = make_prompt(seed=1, index=0, words=20)
    assert a == make_prompt(seed=1, index=0, words=20) and len(a.split()) == 20
    assert a != make_prompt(seed=1, index=1, words=20)
    assert a != make_prompt(seed=2, index=0, words=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_endpoint_problems_are_one_clear_line(run_cli) -> None:
    base = ["bench", "--model", MODEL, "--input-len", "8", "--output-len", "4",
            "--concurrency", "1", "--num-requests", "1", "--request-timeout-s", "5"]
    url = f"http://127.0.0.1:{_free_port()}/v1"
    res = run_cli(*base[:1], "--endpoint", url, *base[1:])
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"kvopt: error: cannot connect to {url}")
    assert len(res.stderr.strip().splitlines()) == 1
    with FakeServer() as srv:
        res = run_cli("bench", "--endpoint", srv.url, *base[1:2], "llama-9000", *base[3:])
        assert res.exit_code == 1
        assert f"model 'llama-9000' is not served at {srv.url} (it serves: {MODEL}); use " \
               f"--model {MODEL}" in res.stderr
        res = run_cli("bench", "--endpoint", srv.url[:-3], *base[1:])
        assert res.exit_code == 1 and "is not an OpenAI-compatible API base" in res.stderr
        assert "ends in /v1" in res.stderr
    with FakeServer(Behavior(openai=False)) as srv:
        res = run_cli("bench", "--endpoint", srv.url, *base[1:])
        assert res.exit_code == 1 and "not an OpenAI-compatible" in res.stderr


def test_cli_writes_a_file_that_load_bench_and_validate_accept(tmp_path: Path,
                                                               run_cli) -> None:
    out = tmp_path / "bench.json"
    with FakeServer() as srv:
        res = run_cli("bench", "--endpoint", srv.url, "--model", MODEL, "--input-len", "32",
                      "--output-len", "4", "--rps", "50", "--num-requests", "6",
                      "--seed", "3", "--request-timeout-s", "5", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "completed 6/6" in res.stdout and f"result written to {out}" in res.stdout
    b = load_bench(out)
    assert b["schema"] == "kvopt.bench/1" and b["seed"] == 3 and b["source"] == "kvopt bench"
    res = run_cli("validate", "--bench", str(out), "--model", "Llama-3.1-8B", "--gpu",
                  "H100-SXM", "--json")
    assert res.exit_code in (0, 1) and "error" not in res.stderr
    assert {c["metric"] for c in json.loads(res.stdout)["checks"]} >= {"ttft_mean_ms",
                                                                       "output_tok_s"}


def test_all_failed_exits_1_without_a_file(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "bench.json"
    with FakeServer(Behavior(fail_every=1)) as srv:
        res = run_cli("bench", "--endpoint", srv.url, "--model", MODEL, "--input-len", "8",
                      "--output-len", "4", "--concurrency", "2", "--num-requests", "4",
                      "--request-timeout-s", "5", "--out", str(out))
    assert res.exit_code == 1 and not out.exists()
    assert "no request to" in res.stderr and "4 failed (http_5xx 4" in res.stderr
    with FakeServer(Behavior(stall_every=1)) as srv, pytest.raises(BenchFailedError) as e:
        c = cfg(srv.url, num_requests=2, load_value=2, duration_s=0.5)
        summarize(c, run_load(c))
    assert "2 cancelled at the --duration-s deadline" in str(e.value)


@pytest.mark.parametrize("args, message", [
    (["--rps", "0"], "'0': must be a finite number with 0 < value"),
    (["--rps", "2", "--concurrency", "4"], "exactly one of --rps"),
    ([], "exactly one of --rps"),
])
def test_usage_errors(run_cli, args: list[str], message: str) -> None:
    res = run_cli("bench", "--endpoint", "http://127.0.0.1:1/v1", "--model", MODEL,
                  "--input-len", "8", "--output-len", "4", "--num-requests", "2", *args)
    assert res.exit_code == 2 and message in res.stderr


def test_config_validation() -> None:
    with pytest.raises(InputError, match="must be an http"):
        cfg("127.0.0.1:8000/v1")
    with pytest.raises(InputError, match="an integer for concurrency"):
        cfg("http://h/v1", load_value=2.5)
    with pytest.raises(InputError, match="--duration-s"):
        cfg("http://h/v1", duration_s=0)
    assert issubclass(EndpointError, KvoptError) and issubclass(BenchFailedError, KvoptError)
