"""A fake engine's Prometheus endpoint on 127.0.0.1, for `kvopt watch` tests: counters grow
at a set request rate from the moment it starts, histograms put every observation at a set
latency, gauges hold set values; metric names as vLLM or SGLang expose them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# fine buckets (1 ms x 1.1^k) so that a point mass reads back within 10%
BUCKETS = [round(0.001 * 1.1 ** k, 6) for k in range(0, 120) if 0.001 * 1.1 ** k < 120]
NAMES = {
    "vllm": {"running": "vllm:num_requests_running", "waiting": "vllm:num_requests_waiting",
             "kv": "vllm:kv_cache_usage_perc", "requests": "vllm:request_success",
             "prompt": "vllm:prompt_tokens", "gen": "vllm:generation_tokens",
             "ttft": "vllm:time_to_first_token_seconds",
             "tpot": "vllm:request_time_per_output_token_seconds",
             "e2e": "vllm:e2e_request_latency_seconds"},
    "sglang": {"running": "sglang:num_running_reqs", "waiting": "sglang:num_queue_reqs",
               "kv": "sglang:token_usage", "requests": "sglang:num_requests",
               "prompt": "sglang:prompt_tokens", "gen": "sglang:generation_tokens",
               "ttft": "sglang:time_to_first_token_seconds",
               "tpot": "sglang:time_per_output_token_seconds",
               "e2e": "sglang:e2e_request_latency_seconds"},
}


@dataclass
class Behaviour:
    engine: str = "vllm"
    rate_rps: float = 5.0
    ttft_s: float = 0.018
    tpot_s: float = 0.006
    input_len: int = 500
    output_len: int = 100
    kv_usage: float = 0.2
    waiting: float = 0.0
    running: float = 2.0


def exposition(b: Behaviour, elapsed_s: float) -> str:
    n = NAMES[b.engine]
    done = b.rate_rps * elapsed_s
    labels = 'model_name="m"' if b.engine == "vllm" else 'model_name="m",tp_rank="0"'
    out = []
    for key, value in (("running", b.running), ("waiting", b.waiting), ("kv", b.kv_usage)):
        out += [f"# HELP {n[key]} x", f"# TYPE {n[key]} gauge", f"{n[key]}{{{labels}}} {value}"]
    for key, value in (("requests", done), ("prompt", done * b.input_len),
                       ("gen", done * b.output_len)):
        out += [f"# HELP {n[key]}_total x", f"# TYPE {n[key]}_total counter"]
        if key == "requests" and b.engine == "vllm":  # split by finish reason, as vLLM does
            out += [f'{n[key]}_total{{{labels},finished_reason="length"}} {value * 0.75}',
                    f'{n[key]}_total{{{labels},finished_reason="stop"}} {value * 0.25}']
        else:
            out.append(f"{n[key]}_total{{{labels}}} {value}")
    e2e = b.ttft_s + (b.output_len - 1) * b.tpot_s
    for key, v in (("ttft", b.ttft_s), ("tpot", b.tpot_s), ("e2e", e2e)):
        out += [f"# HELP {n[key]} x", f"# TYPE {n[key]} histogram"]
        for le in BUCKETS:
            out.append(f'{n[key]}_bucket{{{labels},le="{le}"}} {done if v <= le else 0.0}')
        out.append(f'{n[key]}_bucket{{{labels},le="+Inf"}} {done}')
        out += [f"{n[key]}_sum{{{labels}}} {done * v}", f"{n[key]}_count{{{labels}}} {done}"]
    return "\n".join(out) + "\n"


class FakeEngine:
    """``with FakeEngine(Behaviour(...)) as url:`` serves ``url`` (…/metrics) until exit."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.t0 = time.monotonic()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/health":
                    body = b""
                elif self.path == "/metrics":
                    body = exposition(fake.behaviour, time.monotonic() - fake.t0).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


