"""An engine that polls for new requests only every N decode passes (SGLang
--scheduler-recv-interval): the wait law, the engine flag, and the analytic model against the
simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kvopt import api, build
from kvopt.catalog.engine_args import with_args
from kvopt.catalog.engines import load_engine
from kvopt.errors import InputError
from kvopt.serving.admission import (
    BatchWait,
    admit_wait_passes,
    balance_wait_passes,
    batch_wait_passes,
)
from kvopt.serving.lengths import parse_dist
from kvopt.serving.load import Load
from kvopt.serving.sim.simulator import simulate

UNIFORM = {"input_len_dist": "uniform:low=819,high=1024",
           "output_len_dist": "uniform:low=204,high=256"}


def test_wait_law_hand_computed() -> None:
    # every pass: no wait
    assert float(admit_wait_passes(1, 0.3)) == 0.0
    # a cohort waits the phase of the cycle: (30 - 1) / 2 = 14.5 passes
    assert float(admit_wait_passes(30, 5.0, cohort=True)) == 14.5
    # spread arrivals at light load: N (N - 1) / 2 / (N + e^0) = 30 * 29 / 2 / 31 = 14.0323
    assert float(admit_wait_passes(30, 0.0)) == pytest.approx(435.0 / 31.0)
    # one arrival per pass on average: 10 * 9 / 2 / (10 + e) = 45 / 12.71828 = 3.5382
    assert float(admit_wait_passes(10, 1.0)) == pytest.approx(45.0 / (10.0 + math.e))
    # per engine (array): 1 -> 0, 10 at r = 0 -> 45 / 11
    out = admit_wait_passes(np.array([1, 10]), np.array([0.0, 0.0]))
    assert out == pytest.approx([0.0, 45.0 / 11.0])


@given(every=st.integers(2, 200), r1=st.floats(0.0, 50.0), r2=st.floats(0.0, 50.0))
def test_wait_law_bounded_and_falls_with_arrivals(every: int, r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    w_lo, w_hi = float(admit_wait_passes(every, lo)), float(admit_wait_passes(every, hi))
    # never more than the cohort's phase wait, never negative; more arrivals per pass
    # chain the polls, so the wait does not grow
    assert 0.0 <= w_hi <= w_lo + 1e-12 <= (every - 1) / 2 + 1e-9


def test_engine_flag_only_where_the_engine_has_it() -> None:
    sglang = load_engine("sglang")
    assert sglang.admit_interval_steps == 1  # SGLang's default: poll every pass
    assert sglang.admit_interval_flag == "--scheduler-recv-interval"
    assert with_args(sglang, {"admit_interval_steps": "30"}).admit_interval_steps == 30
    for engine in ("vllm", "trtllm"):
        with pytest.raises(InputError, match="no admission interval"):
            with_args(load_engine(engine), {"admit_interval_steps": 30})
        assert with_args(load_engine(engine), {"admit_interval_steps": 1}
                         ).admit_interval_steps == 1
    for bad in (0, 1001, "x", 2.5):
        with pytest.raises(InputError, match="admit_interval_steps"):
            with_args(sglang, {"admit_interval_steps": bad})


def _both(every: int, **load: int) -> tuple[float, float, float, float]:
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang",
              engine_args={"admit_interval_steps": every, "prefill_policy": "mixed"},
              **UNIFORM, **load)
    e = api.estimate(**kw)
    s = api.simulate(**kw, num_requests=3000)
    return e.latency.ttft_ms, s.latency.ttft_ms, e.latency.tpot_ms, s.latency.tpot_ms


@pytest.mark.parametrize("load", [{"concurrency": 32}, {"concurrency": 32, "rounds": 10}])
def test_closed_loop_agrees_with_the_simulator(load: dict[str, int]) -> None:
    base = _both(1, **load)
    polled = _both(10, **load)
    # the wait is there in both models (TTFT several times the every-pass one) ...
    assert polled[0] > 2.0 * base[0] and polled[1] > 2.0 * base[1]
    # ... and they agree on it within 15%; TPOT barely moves
    assert polled[0] == pytest.approx(polled[1], rel=0.15)
    assert polled[2] == pytest.approx(polled[3], rel=0.05)


def test_poisson_load_agrees_with_the_simulator() -> None:
    """An open loop at moderate load (5 requests/s on one H100: about 10 sequences
    decoding, a fifth of its capacity): the wait while others decode, W passes of the law
    (near saturation the estimate runs 20-70% above the simulator, whose polls chain
    through bursts of prefills)."""
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang", rps=5, **UNIFORM,
              engine_args={"admit_interval_steps": 30, "prefill_policy": "mixed"})
    plain = api.estimate(**{**kw, "engine_args": {"prefill_policy": "mixed"}})
    e = api.estimate(**kw)
    s = api.simulate(**kw, num_requests=3000)
    assert e.latency.ttft_ms > 1.5 * plain.latency.ttft_ms
    assert e.latency.ttft_ms == pytest.approx(s.latency.ttft_ms, rel=0.10)


def test_simulator_waits_for_the_poll() -> None:
    """The simulator's scheduler takes a request in at its next poll: at 32 clients
    (spread lengths) the mean wait before scheduling is about W passes."""
    rep = build.replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang",
                        engine_args={"admit_interval_steps": 30, "prefill_policy": "mixed"})
    r = simulate(rep, load=Load(mode="concurrency", value=32),
                 input_dist=parse_dist(UNIFORM["input_len_dist"]),
                 output_dist=parse_dist(UNIFORM["output_len_dist"]), num_requests=3000)
    wait = np.nanmean((r.first_scheduled_s - r.arrival_s - r.request_overhead_s)[500:])
    per_pass = r.horizon_s / r.steps
    # r = lam t ~ 32 clients / ~260 passes a cycle = 0.12: W = 435 / (30 + e^0.12) = 13.9
    assert 0.6 * 13.9 < wait / per_pass < 1.1 * 13.9


@settings(max_examples=8, deadline=None)
@given(every=st.integers(2, 60), rps=st.floats(2.0, 18.0))
def test_polling_never_shortens_ttft(every: int, rps: float) -> None:
    # (up to 18 req/s, below the plain engine's saturation near 22. Close to it the polled
    # engine prefills the prompts of a poll together and the simulator's TTFT falls with
    # polling (21.4 req/s, every 14 passes: 1,633 -> 241 ms), while the estimate's open-loop
    # polling law saturates there: a known gap, not a property)
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="sglang", input_len=1024,
              output_len=256, rps=rps)
    plain = api.estimate(**kw)
    polled = api.estimate(**kw, engine_args={"admit_interval_steps": every})
    assume(not plain.load.saturated)  # (a saturated load reports TPOT at its capacity,
    # which a request waiting outside its slot lowers a little)
    assert polled.latency.ttft_ms >= plain.latency.ttft_ms - 1e-9
    assert polled.latency.tpot_ms == pytest.approx(plain.latency.tpot_ms, rel=1e-6)


def test_balance_law_hand_computed() -> None:
    # one rank, or a cohort spread over every rank (held the batching wait only)
    assert float(balance_wait_passes(1, 60, 0, 0.5)) == 0.0
    assert float(balance_wait_passes(8, 60, 3, 0.5, cohort=True)) == 3.0
    # prompts so rare that every hold runs to the timeout: L = 60 every time, and a
    # prompt of each rank waits on average E[L^2] / (2 E[L]) - 1/2 = 60 / 2 - 0.5 = 29.5
    assert float(balance_wait_passes(8, 60, 0, 1e-6)) == pytest.approx(29.5, abs=0.01)
    # prompts on every rank every pass: released at once
    assert float(balance_wait_passes(8, 60, 0, 800.0)) < 0.01


@given(r1=st.floats(1e-4, 20.0), r2=st.floats(1e-4, 20.0), ranks=st.integers(2, 16))
@settings(max_examples=30, deadline=None)
def test_balance_law_bounded_and_falls_with_arrivals(r1: float, r2: float,
                                                     ranks: int) -> None:
    lo, hi = sorted((r1, r2))
    w_lo = float(balance_wait_passes(ranks, 60, 0, lo))
    w_hi = float(balance_wait_passes(ranks, 60, 0, hi))
    assert 0.0 <= w_hi <= w_lo + 0.05 <= 30.0


def test_balance_flag_only_on_tensorrt_llm() -> None:
    trt = load_engine("trtllm")
    assert not trt.adp_balance and (trt.adp_timeout_iters, trt.adp_wait_iters) == (50, 10)
    on = with_args(trt, {"adp_balance": "true", "adp_timeout_iters": 60,
                         "adp_wait_iters": 0})
    assert on.adp_balance and on.adp_timeout_iters == 60 and on.adp_wait_iters == 0
    for engine in ("vllm", "sglang"):
        with pytest.raises(InputError, match="no attention-DP balancing"):
            with_args(load_engine(engine), {"adp_balance": True})
    with pytest.raises(InputError, match="adp_timeout_iters"):
        with_args(trt, {"adp_timeout_iters": 0})


def test_balance_benchmark_run_agrees_with_the_simulator() -> None:
    """Attention DP over 8 ranks with TensorRT-LLM's balancing as InferenceX launches it:
    a 10-round benchmark run of spread lengths, estimate against simulator."""
    kw = dict(model="Qwen3-235B-A22B", gpu="H200", tp=1, dp=8, ep=8, weights="fp8",
              engine="trtllm", concurrency=64, rounds=10, **UNIFORM)
    args = {"adp_timeout_iters": 60, "adp_wait_iters": 0}
    off = api.estimate(**kw, engine_args={**args, "adp_balance": False})
    e = api.estimate(**kw, engine_args={**args, "adp_balance": True})
    s = api.simulate(**kw, engine_args={**args, "adp_balance": True}, num_requests=640)
    assert e.latency.ttft_ms > 2.0 * off.latency.ttft_ms  # prompts held for the ranks
    assert e.latency.ttft_ms == pytest.approx(s.latency.ttft_ms, rel=0.15)
    # (no balancing without attention DP)
    tp8 = dict(kw, tp=8, dp=1)
    assert api.estimate(**tp8, engine_args={**args, "adp_balance": True}).latency.ttft_ms == (
        api.estimate(**tp8).latency.ttft_ms)


def test_batch_wait_law_hand_computed() -> None:
    # one prompt at a time (no other arrivals): held the whole timeout, 20 passes
    assert float(batch_wait_passes(20, 100, 0.0)) == pytest.approx(20.0)
    # enough tokens with one prompt (needed <= 1): never held
    assert float(batch_wait_passes(20, 1, 0.3)) == 0.0
    # a cohort of 5 when 8 are needed waits the timeout; of 8, not at all
    assert float(batch_wait_passes(20, 8, 0.0, cohort=True, cohort_size=5.0)) == 20.0
    assert float(batch_wait_passes(20, 8, 0.0, cohort=True, cohort_size=8.0)) == 0.0
    # timeout 2, two prompts needed, one arrival per pass: the first waits
    # int_0^L dt, L = min(2, S_1): held = 2 P(N(2) >= 1) / 2 = 1 - e^-2 = 0.86466 passes
    # in all over 1 + P(N(2) >= 1) = 1.86466 prompts, the second half a pass less:
    # (0.86466 - 0.5 * 0.86466) / 1.86466 = 0.23187
    p = 1.0 - math.exp(-2.0)
    assert float(batch_wait_passes(2, 2, 1.0)) == pytest.approx(0.5 * p / (1.0 + p))
    # off (timeout 0)
    assert float(batch_wait_passes(0, 100, 0.3)) == 0.0
    # no reachable threshold: held to the timeout, 1,000 passes at 30 arrivals each: the
    # first waits 1000, the 30,000 others 1000 - t - 1/2 on average, (1000 (1 + 15,000)
    # - 15,000) / 30,001 = 499.517 passes (beyond the Poisson sums' reach, in closed form)
    assert float(batch_wait_passes(1000, 1e9, 30.0)) == pytest.approx(14_986_000 / 30_001)


@pytest.mark.parametrize(("timeout", "needed", "rate"),
                         [(20, 100, 0.05), (20, 100, 0.5), (20, 3, 0.2), (60, 10, 0.3)])
def test_batch_wait_law_against_the_rule(timeout: int, needed: int, rate: float) -> None:
    """The law against TensorRT-LLM's rule (BatchWait) pass by pass on Poisson arrivals of
    one-token prompts (``needed`` of them reach the threshold)."""
    rng = np.random.default_rng(7)
    hold = BatchWait(timeout, needed - 0.5)
    waiting: list[int] = []
    waits: list[int] = []
    for k in range(200_000):
        waiting += [k] * int(rng.poisson(rate))
        if waiting and hold.release(float(len(waiting)), True):
            waits += [k - a for a in waiting]
            waiting = []
    law = float(batch_wait_passes(timeout, needed, rate))
    assert law == pytest.approx(float(np.mean(waits)), rel=0.05, abs=0.15)


def test_batch_wait_flag_only_on_tensorrt_llm() -> None:
    trt = load_engine("trtllm")
    assert not trt.batch_waits  # off by default, as in TensorRT-LLM
    assert with_args(trt, {"batch_wait_timeout_iters": 20,
                           "batch_wait_max_tokens_ratio": 0.9}).batch_waits
    with pytest.raises(InputError, match="vllm has no batch waiting"):
        with_args(load_engine("vllm"), {"batch_wait_timeout_iters": 20})
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        with_args(trt, {"batch_wait_max_tokens_ratio": 1.5})
    # a zero keeps it off and is allowed everywhere
    assert not with_args(load_engine("sglang"), {"batch_wait_timeout_iters": 0}).batch_waits


BATCH_WAIT = {"max_num_batched_tokens": 16384, "batch_wait_timeout_iters": 20,
              "batch_wait_max_tokens_ratio": 0.9}


@pytest.mark.parametrize("conc", [4, 16, 64])
def test_batch_wait_agrees_with_the_simulator(conc: int) -> None:
    """Llama-3.1-70B FP8 on two H200 with TensorRT-LLM's batch waiting as InferenceX
    launches it (timeout 20, ratio 0.9 of 16,384 tokens), spread lengths: a 10-round
    benchmark run and the steady closed loop, estimate against simulator."""
    kw = dict(model="Llama-3.1-70B", gpu="H200", tp=2, weights="fp8", kv_dtype="fp8",
              engine="trtllm", concurrency=conc, input_len_dist="uniform:low=819,high=1024",
              output_len_dist="uniform:low=819,high=1024")
    off = api.estimate(**kw, rounds=10, engine_args={"max_num_batched_tokens": 16384})
    e = api.estimate(**kw, rounds=10, engine_args=BATCH_WAIT)
    s = api.simulate(**kw, rounds=10, engine_args=BATCH_WAIT, num_requests=10 * conc)
    assert e.latency.ttft_ms > off.latency.ttft_ms + 100.0  # ~20 passes of ~12 ms held
    assert e.latency.ttft_ms == pytest.approx(s.latency.ttft_ms, rel=0.10)
    steady = api.estimate(**kw, engine_args=BATCH_WAIT)
    long_run = api.simulate(**kw, engine_args=BATCH_WAIT, num_requests=40 * conc)
    assert steady.latency.ttft_ms == pytest.approx(long_run.latency.ttft_ms, rel=0.15)


@settings(max_examples=6, deadline=None)
@given(timeout=st.integers(1, 100), ratio=st.floats(0.05, 1.0),
       load=st.one_of(st.builds(lambda c: {"concurrency": c}, st.integers(2, 256)),
                      st.builds(lambda r: {"rps": r}, st.floats(0.5, 25.0))))
def test_batch_wait_never_shortens_ttft(timeout: int, ratio: float,
                                        load: dict[str, float]) -> None:
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm", input_len=1024,
              output_len=256, **load)
    plain = api.estimate(**kw)
    held = api.estimate(**kw, engine_args={"batch_wait_timeout_iters": timeout,
                                           "batch_wait_max_tokens_ratio": ratio})
    assume(not plain.load.saturated)
    assert held.latency.ttft_ms >= plain.latency.ttft_ms - 1e-9


def test_balance_releases_when_some_rank_has_nothing_to_decode() -> None:
    """Fewer closed-loop clients than attention-DP ranks leave some rank with nothing to
    decode, and TensorRT-LLM then releases every hold: the steady closed loop waits nothing
    (as the simulator: 4 clients on 8 ranks)."""
    kw = dict(model="Qwen3-235B-A22B", gpu="H200", tp=1, dp=8, ep=8, weights="fp8",
              engine="trtllm", concurrency=4, **UNIFORM)
    args = {"adp_timeout_iters": 60, "adp_wait_iters": 0}
    on = api.estimate(**kw, engine_args={**args, "adp_balance": True})
    off = api.estimate(**kw, engine_args={**args, "adp_balance": False})
    assert on.latency.ttft_ms == pytest.approx(off.latency.ttft_ms, rel=1e-9)
    s = api.simulate(**kw, engine_args={**args, "adp_balance": True}, num_requests=160)
    assert on.latency.ttft_ms == pytest.approx(s.latency.ttft_ms, rel=0.10)
