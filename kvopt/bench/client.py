"""The benchmark client: load generation and request streaming against an OpenAI-compatible
server (vLLM, SGLang, TensorRT-LLM serve, llama.cpp server, ...).

Load: ``rps`` issues requests at Poisson arrival times (exponential gaps of mean ``1/rps``
seconds drawn with ``numpy.random.default_rng(seed)``, the first one gap after the start);
``concurrency`` runs ``C`` closed-loop workers that each send their next request when the
previous one ends, so at most ``C`` are in flight. A run stops issuing after
``num_requests`` requests or at ``duration_s`` seconds, whichever comes first; at the
deadline the requests still in flight are cancelled and counted as ``incomplete`` (neither
completed nor errors). The run's duration is the wall time from the start to the last
finish, and at least ``duration_s`` when the deadline ended a Poisson run's arrivals (the
arrival process was observed for that long). Every request is bounded by
``request_timeout_s`` too, so a run never hangs on a stalled server.

Per request (streamed, ``stream_options.include_usage``): TTFT = first content chunk
(chat: ``delta.content`` or ``delta.reasoning_content``) minus send time, ITL = the gaps
between successive content chunks (vLLM's definition; pooled over requests in the
statistics), end-to-end latency = ``[DONE]`` minus send time, and the token counts from the
server's ``usage`` (never from counting chunks, which may carry several
tokens). Failures are classified: ``http_5xx``, ``http_4xx``, ``timeout`` (per-request
limit), ``disconnected`` (connection dropped or stream ended without ``[DONE]``),
``connect``, ``no_usage`` (the stream carried no ``usage``: its tokens cannot be counted),
``stream_error`` (an ``error`` object in the stream), ``bad_response`` (not JSON/SSE),
``empty_output`` (no content chunk).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import numpy as np

from kvopt.bench.probe import PromptFit, api_url, make_prompt, probe, request_body
from kvopt.errors import InputError

APIS = ("completions", "chat")


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What to run: endpoint (API base, e.g. ``http://127.0.0.1:8000/v1``), served model
    name, lengths in tokens, load (``mode`` rps -> ``load_value`` requests/s, concurrency ->
    requests in flight), bounds (``num_requests``; ``duration_s`` and ``request_timeout_s``
    in seconds), API flavour, seed (arrivals and prompts) and an optional API key."""

    endpoint: str
    model: str
    input_len: int
    output_len: int
    mode: str
    load_value: float
    num_requests: int
    duration_s: float | None = None
    request_timeout_s: float = 300.0
    api: str = "completions"
    seed: int = 0
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise InputError("--endpoint", self.endpoint, "must be an http(s) URL",
                             "e.g. http://127.0.0.1:8000/v1")
        if self.mode not in ("rps", "concurrency"):
            raise InputError("mode", self.mode, "must be rps or concurrency")
        if not self.load_value > 0 or (self.mode == "concurrency"
                                       and self.load_value != int(self.load_value)):
            raise InputError(f"--{self.mode}", self.load_value, "must be > 0 (an integer "
                             "for concurrency)")
        for name in ("input_len", "output_len", "num_requests"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", getattr(self, name),
                                 "must be >= 1")
        for name in ("duration_s", "request_timeout_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise InputError(f"--{name.replace('_', '-')}", v, "must be > 0")
        if self.api not in APIS:
            raise InputError("--api", self.api, "must be completions or chat")
        if self.seed < 0:
            raise InputError("--seed", self.seed, "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class RequestResult:
    """One finished request: times in ms, tokens from the server's usage; ``error`` is the
    failure kind (None when it completed) and ``detail`` a one-line reason."""

    index: int
    e2e_ms: float
    ttft_ms: float | None = None
    itl_ms: tuple[float, ...] = ()
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """A whole run: finished requests, wall time from the start to the last finish (or the
    deadline) in s, requests cancelled at the deadline, the most requests in flight at once,
    the start time (ISO 8601, UTC) and the prompt fit of the probe."""

    results: tuple[RequestResult, ...]
    duration_s: float
    incomplete: int
    max_in_flight: int
    started_at: str
    fit: PromptFit
    words: int


class SseLines:
    """Lines of a server-sent event stream, from its bytes as they arrive.

    Only CRLF, LF and CR end a line (the SSE format). httpx's ``aiter_lines`` follows
    ``str.splitlines``, which also splits at U+0085, U+2028, U+2029 and \\x1c-\\x1e; JSON
    leaves the first three unescaped inside strings, so a model that generates one of them
    would have its chunk cut in two and counted as a bad response. Bytes are split before
    they are decoded (no UTF-8 sequence contains CR or LF)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        """The lines ``data`` completes (a trailing CR waits: it may start a CRLF)."""
        buf = self._buf + data
        parts = _EOL.split(buf[:-1] if buf.endswith(b"\r") else buf)
        self._buf = parts.pop() + (b"\r" if buf.endswith(b"\r") else b"")
        return [p.decode("utf-8", "replace") for p in parts]

    def flush(self) -> str:
        """The last line, when the stream ended without a line break."""
        tail, self._buf = self._buf.rstrip(b"\r"), b""
        return tail.decode("utf-8", "replace")


_EOL = re.compile(rb"\r\n|\r|\n")


class _Stream:
    """Mutable state while one response streams in."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.first: float | None = None
        self.last = 0.0
        self.gaps: list[float] = []
        self.usage: dict[str, Any] | None = None
        self.done = False

    def feed(self, data: str, now: float) -> str | None:
        """Take one SSE ``data:`` payload; returns an error kind or None."""
        if data == "[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(data)
        except ValueError:
            return "bad_response"
        if not isinstance(chunk, dict):
            return "bad_response"
        choices = chunk.get("choices")
        if not isinstance(choices, list | None) or any(
                not isinstance(c, dict) for c in choices or ()):
            return "bad_response"
        if chunk.get("error"):
            return "stream_error"
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in choices or ():
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            text = (choice.get("text") if self.api == "completions" else
                    delta.get("content") or delta.get("reasoning_content"))
            if text:
                if self.first is None:
                    self.first = now
                else:
                    self.gaps.append(now - self.last)
                self.last = now
        return None


async def _stream(client: httpx.AsyncClient, cfg: BenchConfig, index: int, url: str,
                  body: dict[str, Any], start: float) -> RequestResult:
    st = _Stream(cfg.api)

    def fail(kind: str, detail: str) -> RequestResult:
        return RequestResult(index=index, e2e_ms=(time.perf_counter() - start) * 1e3,
                             error=kind, detail=" ".join(detail.split())[:200])

    async with client.stream("POST", url, json=body) as resp:
        if resp.status_code != 200:
            text = (await resp.aread()).decode("utf-8", "replace")
            return fail("http_5xx" if resp.status_code >= 500 else "http_4xx",
                        f"HTTP {resp.status_code}: {text}")
        lines = SseLines()
        async for raw in resp.aiter_bytes():
            for line in lines.feed(raw):
                if line.startswith("data:"):
                    bad = st.feed(line[5:].strip(), time.perf_counter())
                    if bad:
                        return fail(bad, line[5:])
                    if st.done:
                        break
            if st.done:
                break
        else:
            tail = lines.flush()
            if tail.startswith("data:"):
                bad = st.feed(tail[5:].strip(), time.perf_counter())
                if bad:
                    return fail(bad, tail[5:])
    end = time.perf_counter()
    if not st.done:
        return fail("disconnected", "the stream ended without [DONE]")
    usage = st.usage or {}
    out, prompt = usage.get("completion_tokens"), usage.get("prompt_tokens")
    if not isinstance(out, int) or not isinstance(prompt, int):
        return fail("no_usage", "no usage in the stream (stream_options.include_usage "
                    "unsupported?)")
    if st.first is None:
        return fail("empty_output", "no content chunk")
    return RequestResult(index=index, e2e_ms=(end - start) * 1e3,
                         ttft_ms=(st.first - start) * 1e3,
                         itl_ms=tuple(g * 1e3 for g in st.gaps),
                         prompt_tokens=prompt, output_tokens=out)


async def _request(client: httpx.AsyncClient, cfg: BenchConfig, index: int,
                   words: int) -> RequestResult:
    """Send request ``index`` and stream it, within ``request_timeout_s``."""
    prompt = make_prompt(seed=cfg.seed, index=index, words=words)
    body = request_body(api=cfg.api, model=cfg.model, prompt=prompt,
                        max_tokens=cfg.output_len, stream=True)
    url = api_url(cfg.endpoint, cfg.api)
    start = time.perf_counter()

    def fail(kind: str, exc: BaseException | str) -> RequestResult:
        detail = str(exc) or type(exc).__name__
        return RequestResult(index=index, e2e_ms=(time.perf_counter() - start) * 1e3,
                             error=kind, detail=" ".join(detail.split())[:200])

    try:
        return await asyncio.wait_for(_stream(client, cfg, index, url, body, start),
                                      cfg.request_timeout_s)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return fail("timeout", f"no complete answer within {cfg.request_timeout_s:g} s")
    except httpx.ConnectError as exc:
        return fail("connect", exc)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        return fail("disconnected", exc)
    except httpx.HTTPError as exc:
        return fail("bad_response", exc)


async def _run(cfg: BenchConfig, on_done: Callable[[], None] | None) -> RunOutcome:
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    limits = httpx.Limits(max_connections=None if cfg.mode == "rps" else int(cfg.load_value),
                          max_keepalive_connections=None)
    timeout = httpx.Timeout(cfg.request_timeout_s, connect=min(cfg.request_timeout_s, 10.0),
                            pool=None)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout,
                                 trust_env=False) as client:
        fit = await probe(client, endpoint=cfg.endpoint, model=cfg.model, api=cfg.api,
                          seed=cfg.seed, timeout_s=cfg.request_timeout_s,
                          input_len=cfg.input_len)
        words = fit.words_for(cfg.input_len)
        results: list[RequestResult] = []
        issued, in_flight, max_in_flight = 0, 0, 0

        async def one(index: int) -> None:
            nonlocal issued, in_flight, max_in_flight
            issued += 1
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            try:
                results.append(await _request(client, cfg, index, words))
            finally:
                in_flight -= 1
            if on_done is not None:
                on_done()

        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        deadline = t0 + cfg.duration_s if cfg.duration_s else None
        tasks: list[asyncio.Task[None]] = []
        window_s = 0.0  # arrivals observed until the deadline count in the run's duration
        if cfg.mode == "rps":
            rng = np.random.default_rng(cfg.seed)
            arrivals = np.cumsum(rng.exponential(1.0 / cfg.load_value, cfg.num_requests))
            for index, t in enumerate(arrivals):
                if deadline is not None and t0 + t >= deadline:
                    window_s = float(cfg.duration_s or 0.0)
                    break
                await asyncio.sleep(max(0.0, t0 + t - time.perf_counter()))
                tasks.append(asyncio.create_task(one(index)))
        else:
            indices = iter(range(cfg.num_requests))

            async def worker() -> None:
                for index in indices:  # shared: each index goes to one worker
                    if deadline is not None and time.perf_counter() >= deadline:
                        return
                    await one(index)

            tasks = [asyncio.create_task(worker()) for _ in range(int(cfg.load_value))]
        if tasks:
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            done, pending = await asyncio.wait(tasks, timeout=left)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:  # a bug, not a server failure: never hide it as incomplete
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    raise exc
        duration = max(time.perf_counter() - t0, window_s)
    return RunOutcome(results=tuple(sorted(results, key=lambda r: r.index)),
                      duration_s=duration, incomplete=issued - len(results),
                      max_in_flight=max_in_flight, started_at=started_at, fit=fit,
                      words=words)


def run_load(cfg: BenchConfig, on_done: Callable[[], None] | None = None) -> RunOutcome:
    """Probe the endpoint (EndpointError when it cannot serve the run), then run the load;
    ``on_done`` is called after every finished request (progress bars)."""
    return asyncio.run(_run(cfg, on_done))
