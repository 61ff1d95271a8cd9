"""The analytic steady state against the discrete-event simulator: open loops below and above
saturation, closed loops, offline runs."""

from __future__ import annotations

import pytest

from kvopt.serving.lengths import fixed, parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import (
    estimate_under_load,
    simulate_under_load,
    steady_model,
)

CASES = [
    ("Llama-3.1-8B", "H100-SXM", 1, "vllm", "lognormal:mean=800,sigma=0.6",
     "lognormal:mean=200,sigma=0.5"),
    ("Llama-3.1-8B", "L40S", 1, "vllm", "fixed:512", "fixed:128"),
    ("Qwen3-30B-A3B", "H100-SXM", 1, "vllm", "uniform:low=200,high=1500", "fixed:256"),
    ("Llama-3.1-70B", "H100-SXM", 4, "trtllm", "lognormal:mean=1000,sigma=0.4", "fixed:200"),
    ("Mistral-7B", "A100-SXM-80GB", 1, "sglang", "fixed:1024", "lognormal:mean=300,sigma=0.4"),
]


KNOWN: dict[tuple[str, float], str] = {}  # (model, load fraction): why the analytic


CHECKS = (("latency", "ttft_ms", 0.10), ("latency", "tpot_ms", 0.10),
          ("throughput", "output_tok_s", 0.10), ("latency", "ttft_p99_ms", 0.20),
          ("latency", "tpot_p99_ms", 0.20))  # the tolerances: 10% means, 20% p99s


def _agree(case, load, requests, checks=CHECKS):
    """The analytic and simulated JSON of ``case`` under ``load`` (``requests`` simulated),
    after asserting that they agree on ``checks``."""
    m, g, tp, eng, i, o = case
    rep = build_replica(model=m, gpu=g, tp=tp, engine=eng)
    kw = {"load": load, "input_dist": parse_dist(i), "output_dist": parse_dist(o)}
    a = estimate_under_load(rep, **kw).to_dict()
    s = simulate_under_load(rep, num_requests=requests, **kw).to_dict()
    for block, key, tol in checks:
        assert a[block][key] == pytest.approx(s[block][key], rel=tol), key
    return a, s


def _pair(case, frac):
    m, g, tp, eng, i, o = case
    rep = build_replica(model=m, gpu=g, tp=tp, engine=eng)
    inp, out = parse_dist(i), parse_dist(o)
    cap, _ = steady_model(rep, inp, out).capacity()
    load = Load(mode="rps", value=cap * frac)
    a = estimate_under_load(rep, load=load, input_dist=inp, output_dist=out).to_dict()
    s = simulate_under_load(rep, load=load, input_dist=inp, output_dist=out,
                            num_requests=4000).to_dict()
    return a, s


@pytest.mark.parametrize("frac", [0.15, 0.35, 0.6, 0.8])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_analytic_matches_simulator_below_saturation(case, frac, request) -> None:
    reason = KNOWN.get((case[0], frac))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    a, s = _pair(case, frac)
    assert not a["load"]["saturated"] and not s["load"]["saturated"]
    for block, key, tol in CHECKS:
        err = abs(a[block][key] - s[block][key]) / s[block][key]
        assert err <= tol, (key, a[block][key], s[block][key])


@pytest.mark.parametrize("case", [("Llama-3.1-70B", "H100-SXM", 4, "trtllm"),
                                  ("Llama-3.1-8B", "H100-SXM", 1, "sglang")],
                         ids=lambda c: f"{c[0]}-{c[3]}")
@pytest.mark.parametrize("clients", [4, 16])
def test_closed_loop_of_identical_requests_matches_simulator(case, clients) -> None:
    """Identical requests in a closed loop move in cohorts (prefilled together, finished
    together): the analytic model agrees with the simulator, which it did not while it
    assumed desynchronized clients (TTFT 60-80% low), and keeps Little's law (the batch is
    the clients)."""
    a, _ = _agree((*case, "fixed:1000", "fixed:200"), Load(mode="concurrency", value=clients),
                  2000, CHECKS[:4])
    assert a["load"]["steady_state_batch"] == pytest.approx(clients)


@pytest.mark.parametrize("case", [CASES[2], CASES[3]], ids=lambda c: f"{c[0]}-{c[4]}")
def test_closed_loop_of_varied_prompts_and_fixed_outputs_matches_simulator(case) -> None:
    """A fixed output length keeps clients in cohorts even when prompts vary; a cohort
    sheds the clients whose prompts overflow the budget until it rarely does (8 clients:
    5 + 3 for the 70B lognormal prompts, 6 + 2 for Qwen3's uniform ones in the simulator).
    Treated as desynchronized, TTFT came out 36-75% low; as one cohort of all 8 clients,
    27-86% high."""
    a, _ = _agree(case, Load(mode="concurrency", value=8), 4000)
    assert a["load"]["steady_state_batch"] == pytest.approx(8, rel=0.01)


@pytest.mark.parametrize("case,clients", [(CASES[4], 8), (CASES[0], 64)],
                         ids=lambda v: str(v[0]) if isinstance(v, tuple) else str(v))
def test_closed_loop_of_varied_outputs_matches_simulator(case, clients) -> None:
    """Varied output lengths desynchronize the clients, but those that finish in the same
    step still come back together (K ~ Poisson(lam t) of them) and share a prefill step:
    without them the TTFT p99 came out 50-63% low (Mistral) and the mean 18% low (8B at 64
    clients). 250 requests per client, so that the run reaches its steady state."""
    _agree(case, Load(mode="concurrency", value=clients), max(4000, 250 * clients))


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[4]],
                         ids=lambda c: f"{c[0]}-{c[1]}")
def test_offline_batch_within_the_slots_matches_simulator(case) -> None:
    """200 requests submitted at once that all fit the slots: prefilled first come first
    served beside the decodes, then drained without replacement. The analytic
    model agrees with the simulator (it was up to 59% off in throughput while it treated
    the batch as a closed loop that keeps replacing finished requests)."""
    _agree(case, Load(mode="offline", value=200), 200)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]], ids=lambda c: c[0] + "-" + c[1])
def test_offline_run_beyond_the_slots_matches_simulator(case) -> None:
    """2,000 requests at once, more than the slots: requests are admitted as slots free up.
    The first ones decode beside the prefill-heavy ramp, which sets the TPOT p99 (it was
    25-33% low while the run was a closed loop at the engine's concurrency). The 70B case
    runs TensorRT-LLM, which reserves KV for whole sequences and never preempts."""
    _agree(case, Load(mode="offline", value=2000), 2000)


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: c[0])
def test_both_agree_above_saturation(case) -> None:
    a, s = _pair(case, 1.6)
    assert a["load"]["saturated"] and s["load"]["saturated"]


def test_offline_run_that_fills_the_kv_cache_says_the_tpot_is_optimistic() -> None:
    """vLLM over-admits and preempts once N requests fill the KV cache; the analytic run
    does not model that, and says so. TensorRT-LLM reserves whole sequences: no note."""
    kw = dict(input_dist=parse_dist("uniform:low=200,high=1500"), output_dist=fixed(256))
    vllm = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM")
    notes = estimate_under_load(vllm, load=Load(mode="offline", value=2000), **kw).notes
    assert any("preempts" in n and "optimistic" in n for n in notes)
    few = estimate_under_load(vllm, load=Load(mode="offline", value=20), **kw).notes
    assert not any("preempts" in n for n in few)  # 20 fit at once
    trt = build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", engine="trtllm")
    notes = estimate_under_load(trt, load=Load(mode="offline", value=2000), **kw).notes
    assert not any("preempts" in n for n in notes)


@pytest.mark.parametrize("case,args", [
    (("Llama-3.1-70B", "H100-SXM", 4, "vllm"), {"max_num_batched_tokens": 2560}),
    (("Llama-3.1-70B", "H100-SXM", 4, "vllm"), {}),
    (("Qwen3-32B", "H100-SXM", 2, "sglang"), {}),
    (("Llama-3.1-8B", "H100-SXM", 1, "trtllm"), {}),
], ids=["vllm-2560", "vllm-default", "sglang-prefill-first", "trtllm"])
@pytest.mark.parametrize("clients", [8, 32])
def test_benchmark_runs_match_the_simulator(case, args, clients) -> None:
    """A benchmark run (every client sends 10 requests, all starting together; statistics
    over all 10 x C requests, the first-round burst included): the analytic mixture of the
    burst and the steady state agrees with the simulator, which runs exactly that, for
    mixed and prefill-first schedulers, chunked and whole-prompt prefills."""
    from kvopt.catalog.engine_args import with_args
    from kvopt.catalog.engines import load_engine
    from kvopt.catalog.gpus import load_gpu

    m, g, tp, eng = case
    rep = build_replica(model=m, gpu=g, tp=tp, weights="fp8", kv_dtype="fp8",
                        engine=with_args(load_engine(eng, load_gpu(g)), args))
    kw = {"load": Load(mode="concurrency", value=clients, rounds=10),
          "input_dist": fixed(1024), "output_dist": fixed(512)}
    a = estimate_under_load(rep, **kw).to_dict()["latency"]
    s = simulate_under_load(rep, **kw).to_dict()["latency"]
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        assert a[key] == pytest.approx(s[key], rel=0.10), key
