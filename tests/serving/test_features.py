"""Prefix caching, speculative decoding and disaggregated prefill/decode."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt import InputError
from kvopt.serving.capacity import capacity
from kvopt.serving.disagg import kv_transfer_s, plan_pools
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import estimate_under_load, simulate_under_load, steady_model

REP = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
INP = parse_dist("lognormal:mean=2000,sigma=0.4")
OUT = fixed(200)


def test_expected_tokens_formula() -> None:
    # k = 3, a = 0.5: 1 + 0.5 + 0.25 + 0.125 = 1.875 = (1 - 0.5^4) / (1 - 0.5)
    assert SpecDecode(k=3, acceptance=0.5).expected_tokens == pytest.approx(1.875)
    assert SpecDecode(k=4, acceptance=0.0).expected_tokens == 1.0


@settings(max_examples=15, deadline=None)
@given(hit=st.floats(0.0, 1.0), shared=st.integers(1, 1900), frac=st.floats(0.05, 0.6))
def test_prefix_caching_never_hurts_ttft(hit: float, shared: int, frac: float) -> None:
    base = steady_model(REP, INP, OUT)
    cached = steady_model(REP, INP, OUT, prefix=PrefixCache(shared_len=shared, hit_rate=hit))
    lam = base.capacity()[0] * frac
    # within the solver's interpolation precision (0.1%)
    assert cached.capacity()[0] >= base.capacity()[0] * (1 - 1e-3)
    a, b = base.poisson(lam), cached.poisson(lam)
    assert b.ttft_s[0] <= a.ttft_s[0] * (1 + 1e-3)
    # the p99 is an order statistic of the quadrature's 1,024 draws: it jumps when a
    # parameter moves a draw across a state boundary (idle, prefilling or busy: it waits
    # out no step, a prefill step or a decode step; a Poisson count): +-7% at 18% of
    # capacity as a prefix (hit rate 1) grows from 0 to 64 tokens (one draw goes from
    # prefilling, 184 ms, to idle, 59 ms), within the quadrature's worst p99 error against
    # 131,072 random draws (7.7%, kvopt.serving.steady.draws)
    assert b.ttft_s[3] <= a.ttft_s[3] * 1.08


def test_prefix_caching_saves_prefill_and_blocks() -> None:
    m = steady_model(REP, INP, OUT, prefix=PrefixCache(shared_len=1500, hit_rate=0.8))
    # hits skip min(1488, I - 1) tokens of each prompt: 1500 rounded down to whole
    # 16-token blocks, since engines reuse whole blocks only
    skipped = sum(p * min(1488, v - 1) for v, p in zip(INP.values, INP.probs, strict=True))
    assert m.i_new == pytest.approx(INP.mean - 0.8 * skipped)
    assert m.kv_seqs > steady_model(REP, INP, OUT).kv_seqs


def test_zero_acceptance_spec_decoding_is_slower_than_none() -> None:
    lam = 3.0
    plain = estimate_under_load(REP, load=Load(mode="rps", value=lam), input_dist=INP,
                                output_dist=OUT)
    zero = estimate_under_load(REP, load=Load(mode="rps", value=lam), input_dist=INP,
                               output_dist=OUT, spec=SpecDecode(k=4, acceptance=0.0))
    good = estimate_under_load(REP, load=Load(mode="rps", value=lam), input_dist=INP,
                               output_dist=OUT, spec=SpecDecode(k=3, acceptance=0.8))
    assert zero.latency.tpot_ms > plain.latency.tpot_ms
    assert good.latency.tpot_ms < plain.latency.tpot_ms


def test_spec_decoding_hurts_at_large_batch() -> None:
    # a compute-bound verify pass: big batch of short prompts on a slow-compute GPU
    rep = build_replica(model="Llama-3.1-8B", gpu="L40S")
    inp, out = fixed(64), fixed(512)
    plain = steady_model(rep, inp, out)
    spec = steady_model(rep, inp, out, spec=SpecDecode(k=4, acceptance=0.6))
    assert spec.capacity()[0] < plain.capacity()[0]


def test_spec_and_prefix_analytic_match_simulator() -> None:
    for kw in ({"prefix": PrefixCache(shared_len=1500, hit_rate=0.8)},
               {"spec": SpecDecode(k=3, acceptance=0.7)}):
        a = estimate_under_load(REP, load=Load(mode="rps", value=2.0), input_dist=INP,
                                output_dist=OUT, **kw).to_dict()
        s = simulate_under_load(REP, load=Load(mode="rps", value=2.0), input_dist=INP,
                                output_dist=OUT, num_requests=1200, **kw).to_dict()
        for key in ("ttft_ms", "tpot_ms"):
            assert a["latency"][key] == pytest.approx(s["latency"][key], rel=0.10), (kw, key)


def test_kv_transfer_time_hand_computed() -> None:
    rep = build_replica(model="Llama-3.1-8B", gpu="H100-SXM")
    # 1000 tokens x 131072 B over a 50 GB/s NIC at 0.8 efficiency + 10 us
    t = kv_transfer_s(rep, rep, 1000, same_node=False)
    assert t == pytest.approx(10e-6 + 1000 * 131072 / (50e9 * 0.8))
    # inside an NVLink node: 450 GB/s per direction x 0.8
    assert kv_transfer_s(rep, rep, 1000, same_node=True) == pytest.approx(
        1000 * 131072 / (450e9 * 0.8))


def test_disaggregated_pools_meet_slo_and_scale_with_rate() -> None:
    rep = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=2, weights="fp8")
    inp, out = fixed(4000), fixed(300)
    slo = Slo(ttft_p99_ms=2000, tpot_p99_ms=40)
    best, rows = plan_pools(rep, rep, rate_rps=6, input_dist=inp, output_dist=out, slo=slo,
                            max_replicas=6)
    assert best is not None and best.meets_slo
    assert best.ttft_p99_ms <= 2000 and best.tpot_p99_ms <= 40
    assert all(r.gpus >= best.gpus for r in rows if r.meets_slo)
    more, _ = plan_pools(rep, rep, rate_rps=12, input_dist=inp, output_dist=out, slo=slo,
                         max_replicas=6)
    assert more is not None and more.gpus >= best.gpus
    co = capacity(rep, input_dist=inp, output_dist=out, slo=slo)
    assert co.goodput_rps > 0


def test_bad_feature_input(run_cli) -> None:
    with pytest.raises(InputError):
        PrefixCache(shared_len=10, hit_rate=1.5)
    with pytest.raises(InputError):
        SpecDecode(k=0, acceptance=0.5)
    base = ["estimate", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len", "100",
            "--output-len", "10"]
    res = run_cli(*base, "--rps", "1", "--spec-k", "3")
    assert res.exit_code == 2 and "--spec-acceptance" in res.stderr
    res = run_cli(*base, "--batch", "2", "--prefix-len", "50", "--prefix-hit-rate", "0.5")
    assert res.exit_code == 1 and "under a load" in res.stderr
    res = run_cli(*base, "--rps", "1", "--spec-k", "2", "--spec-acceptance", "0.5",
                  "--spec-draft", "nonexistent-model")
    assert res.exit_code == 1 and "unknown model" in res.stderr


def test_disagg_command(run_cli) -> None:
    res = run_cli("disagg", "--model", "Llama-3.1-8B", "--gpu", "H100-SXM", "--input-len",
                  "3000", "--output-len", "200", "--rps", "4", "--slo-tpot-p99-ms", "20",
                  "--max-replicas", "4", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["meets_slo"] and d["prefill_replicas"] >= 1 and d["colocated_replicas"] >= 1


def test_request_overhead_shifts_ttft_in_every_model() -> None:
    """A per-request overhead outside the engine steps adds to TTFT and E2E, the same in the
    static estimate, the analytic steady state and the simulator; closed-loop clients that
    spend it send less."""
    from dataclasses import replace

    from kvopt.catalog.engines import load_engine
    from kvopt.serving.estimate import estimate
    from kvopt.serving.lengths import fixed
    from kvopt.serving.load import Load
    from kvopt.serving.replica import build_replica
    eng = load_engine("vllm")
    slow = replace(eng, request_overhead_ms=30.0)
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", input_len=500, output_len=100)
    a = estimate(**kw, batch=4, engine=eng).latency
    b = estimate(**kw, batch=4, engine=slow).latency
    assert b.ttft_ms - a.ttft_ms == pytest.approx(30.0)
    assert b.e2e_ms - a.e2e_ms == pytest.approx(30.0)
    assert b.tpot_ms == a.tpot_ms
    inp, out = fixed(500), fixed(100)
    r0 = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine=eng)
    r1 = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine=slow)
    def run(r, load, n, mode):  # type: ignore[no-untyped-def]
        if mode == "analytic":
            return estimate_under_load(r, load=load, input_dist=inp, output_dist=out)
        return simulate_under_load(r, load=load, input_dist=inp, output_dist=out,
                                   num_requests=n)

    for mode in ("analytic", "sim"):
        low = [run(r, Load(mode="rps", value=1.0), 400, mode) for r in (r0, r1)]
        assert low[1].latency.ttft_ms - low[0].latency.ttft_ms == pytest.approx(30.0, abs=1.5)
        assert low[1].latency.queue_ms == pytest.approx(low[0].latency.queue_ms, abs=1.0)
        cl = [run(r, Load(mode="concurrency", value=1), 200, mode) for r in (r0, r1)]
        # one client: a cycle is E2E, so the rate falls to 1 / (E2E + 30 ms)
        e2e0 = cl[0].latency.e2e_ms / 1e3
        assert cl[1].throughput.requests_s == pytest.approx(1 / (e2e0 + 0.030), rel=0.03)


def test_simulate_says_when_a_request_overhead_bunches_a_closed_loop() -> None:
    """The simulator delays a resent request by the request overhead, so fixed-output
    clients bunch up every round, which the estimate does not model: the simulation says so
    (and only then)."""
    from kvopt import api

    ask = dict(model="Llama-3.1-8B", gpu="H100-SXM", input_len=256, output_len=32,
               concurrency=4, num_requests=40)
    with_overhead = api.simulate(**ask, engine_args={"request_overhead_ms": 20.0})
    assert any("bunch up again every round" in n for n in with_overhead.notes)
    assert not any("bunch up" in n for n in api.simulate(**ask).notes)
    spread = api.simulate(**{**ask, "output_len": None}, output_len_dist="uniform:low=16,high=48",
                          engine_args={"request_overhead_ms": 20.0})
    assert not any("bunch up" in n for n in spread.notes)


def test_triton_profile_pays_launches_and_the_ensemble_by_hand() -> None:
    """trtllm-triton (TensorRT engines behind Triton's TensorRT-LLM backend) runs without CUDA
    graphs, so every step pays one 5 us launch per kernel: Llama-3.1-8B at TP 1 has 9 kernels
    a layer (4 GEMMs, attention, 2 norms, the activation, RoPE) x 32 layers + the LM head =
    289 launches -> 1.445 ms, plus the 0.2 ms host time = 1.645 ms per step; at TP 4, 70B
    adds 2 all-reduces per layer: 9 x 80 + 1 + 160 = 881 launches -> 4.405 ms + 0.2 ms. The
    Triton ensemble adds 3.1 ms to every TTFT. The trtllm profile (CUDA graphs) pays only its
    0.2 ms per step; its kernels differ from the TensorRT engine's by RoPE, which it runs
    inside attention (32 launches of the element-wise minimum fewer per step)."""
    from kvopt.physics.efficiency import elementwise_curve
    from kvopt.serving.estimate import estimate

    tri = build_replica(model="Llama-3.1-8B", gpu="H100-SXM", engine="trtllm-triton")
    assert tri.step_overhead_s * 1e3 == pytest.approx(0.2 + 289 * 5e-3)
    assert build_replica(model="Llama-3.1-8B", gpu="H100-SXM",
                         engine="trtllm").step_overhead_s * 1e3 == pytest.approx(0.2)
    tri70 = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=4, weights="fp8",
                          engine="trtllm-triton")
    assert tri70.step_overhead_s * 1e3 == pytest.approx(0.2 + 881 * 5e-3)
    kw = dict(model="Llama-3.1-8B", gpu="H100-SXM", input_len=500, output_len=100, batch=1)
    a = estimate(**kw, engine="trtllm").latency
    b = estimate(**kw, engine="trtllm-triton").latency
    # one prefill step and each decode step pay the launches (and the unfused RoPE); the
    # ensemble adds 3.1 ms
    rope_ms = 32 * elementwise_curve(tri.gpu, "trtllm").floor_s * 1e3
    assert b.tpot_ms - a.tpot_ms == pytest.approx(1.445 + rope_ms, abs=1e-6)
    assert b.ttft_ms - a.ttft_ms == pytest.approx(1.445 + rope_ms + 3.1, abs=1e-6)
    # its TensorRT plugin falls back to NCCL from 1 MB at TP 4 (61 tokens of 16,384 B fit)
    eng = tri70.engine
    assert eng.allreduce_custom(4, 61.0, 61 * 16384.0) and not eng.allreduce_custom(
        4, 62.0, 62 * 16384.0)
    assert eng.allreduce_custom(8, 30.0, 30 * 16384.0) and not eng.allreduce_custom(
        8, 31.0, 31 * 16384.0)
