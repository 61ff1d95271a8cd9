"""Replicas with expert, attention-data and pipeline parallelism in the serving model: the
layout tp-only reproduces today's numbers exactly, the step decomposes into a rank's and the
expert group's work, attention DP multiplies the slots and KV, pipeline stages trade a
bubble for memory, and the planner, exports and CLI carry the layout through."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from kvopt import api, build
from kvopt.errors import InputError
from kvopt.serving.parallel_step import ParallelStepCost
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import step_cost_for
from kvopt.serving.stepcost import StepCost

LEN = {"input_len": 1000, "output_len": 200}


@pytest.mark.parametrize("model", ["Llama-3.1-8B", "Qwen3-30B-A3B"])
def test_tp_only_layout_reproduces_todays_numbers_exactly(model: str) -> None:
    a = build_replica(model=model, gpu="H100-SXM", tp=2)
    b = build_replica(model=model, gpu="H100-SXM", tp=2, ep=1, dp=1, pp=1)
    assert a == b and type(step_cost_for(b)) is StepCost
    for load in ({"rps": 3.0}, {"concurrency": 16}, {"batch": 8}):
        x = api.estimate(model=model, gpu="H100-SXM", tp=2, **LEN, **load)
        y = api.estimate(model=model, gpu="H100-SXM", tp=2, ep=1, dp=1, pp=1, **LEN, **load)
        assert x == y
        assert (x.ep, x.dp, x.pp) == (1, 1, 1)


@pytest.mark.parametrize("model", ["Llama-3.1-8B", "Qwen3-30B-A3B"])
def test_the_parallel_step_decomposes_the_tensor_parallel_step(model: str) -> None:
    """A rank's dense ops + the expert group's work at ep = dp = pp = 1 is the TP step."""
    rep = build_replica(model=model, gpu="H100-SXM", tp=2)
    base = StepCost(rep, 4096)
    split = ParallelStepCost(rep, 4096)
    assert np.allclose(split.linear_s, base.linear_s, rtol=1e-12)
    n, p = np.array([0.0, 1.0, 17.0, 300.0]), np.array([512.0, 0.0, 900.0, 2048.0])
    kw = {"mean_context": 1100.0, "prompt_len": 1000.0}
    assert np.allclose(split.mean_step_s(n_decode=n, prefill_tokens=p, **kw),
                       base.mean_step_s(n_decode=n, prefill_tokens=p, **kw), rtol=1e-12)
    ctx = np.array([900.0, 1200.0, 3000.0])
    step = {"decode_contexts": ctx, "prefill_new": np.array([300.0]),
            "prefill_past": np.array([100.0]), "prefill_rows": 1}
    assert split.step_s(**step) == pytest.approx(base.step_s(**step), rel=1e-12)


def test_attention_dp_multiplies_slots_and_kv_and_splits_the_work() -> None:
    """DeepSeek-V3's latent KV is replicated on every TP rank: 8 attention-DP ranks of one
    GPU hold 8x the sequences of TP 8; the engine is served with 8x a rank's slots and
    budget; the experts' weights spread over the 8 GPUs either way."""
    tp = build_replica(model="DeepSeek-V3", gpu="H200", tp=8, weights="fp8", engine="trtllm")
    dp = build_replica(model="DeepSeek-V3", gpu="H200", tp=1, dp=8, ep=8, weights="fp8",
                       engine="trtllm")
    assert (dp.n_gpus, dp.parallel.label) == (8, "tp1ep8dp8")
    assert dp.engine.max_num_seqs == 8 * tp.engine.max_num_seqs
    assert dp.engine.max_num_batched_tokens == 8 * tp.engine.max_num_batched_tokens
    per_rank = int(dp.kv_pool_bytes // dp.kv_bytes_per_token)
    assert dp.kv_capacity_tokens == 8 * per_rank
    assert dp.kv_capacity_tokens > 4 * tp.kv_capacity_tokens
    assert dp.weights_bytes > tp.weights_bytes  # attention and dense layers replicated
    sc = step_cost_for(dp)
    assert isinstance(sc, ParallelStepCost)
    steps = sc.mean_step_s(n_decode=np.array([1.0, 8.0, 64.0, 512.0]), mean_context=1500.0,
                           prefill_tokens=0.0, prompt_len=1024.0)
    assert np.all(np.diff(steps) > 0)
    # fewer decodes than ranks: the busiest rank still decodes one sequence
    one = sc.mean_step_s(n_decode=1.0, mean_context=1500.0, prefill_tokens=0.0,
                         prompt_len=1024.0)
    four = sc.mean_step_s(n_decode=4.0, mean_context=1500.0, prefill_tokens=0.0,
                          prompt_len=1024.0)
    assert float(four) >= float(one)


def test_pipeline_stages_trade_a_bubble_for_memory() -> None:
    """Llama-3.1-70B tp4 pp2 (8 GPUs) against tp4: half the layers' weights and KV per GPU;
    one sequence crosses both stages (the same latency as tp4, half the GPUs idle); a full
    pipeline of micro-batches serves more at high load."""
    tp4 = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=4)
    pp2 = build_replica(model="Llama-3.1-70B", gpu="H100-SXM", tp=4, pp=2)
    assert pp2.weights_bytes < 0.6 * tp4.weights_bytes
    assert pp2.layers_per_gpu == 40 and pp2.kv_bytes_per_token == tp4.kv_bytes_per_token / 2
    lo = [api.estimate(model="Llama-3.1-70B", gpu="H100-SXM", tp=4, pp=pp, **LEN,
                       concurrency=1) for pp in (1, 2)]
    assert lo[1].latency.tpot_ms == pytest.approx(lo[0].latency.tpot_ms, rel=0.05)
    hi = [api.estimate(model="Llama-3.1-70B", gpu="H100-SXM", tp=4, pp=pp, **LEN,
                       concurrency=256) for pp in (1, 2)]
    assert hi[1].throughput.output_tok_s > 1.2 * hi[0].throughput.output_tok_s
    assert lo[1].cost.usd_per_hour == pytest.approx(2 * lo[0].cost.usd_per_hour)


def test_expert_parallel_estimates_simulate_and_cost_every_gpu() -> None:
    kw = {"model": "Qwen3-30B-A3B", "gpu": "H100-SXM", **LEN}
    ep = api.estimate(tp=4, ep=4, rps=4.0, **kw)
    assert (ep.tp, ep.ep, ep.dp, ep.pp) == (4, 4, 1, 1)
    sim = api.simulate(tp=4, ep=4, rps=4.0, num_requests=300, **kw)
    assert sim.latency.tpot_ms == pytest.approx(ep.latency.tpot_ms, rel=0.15)
    dp = api.estimate(tp=2, dp=2, ep=4, concurrency=32, **kw)
    assert math.isfinite(dp.latency.tpot_ms) and dp.cost.usd_per_hour == pytest.approx(
        4 * api.estimate(tp=1, batch=1, **kw).cost.usd_per_hour)
    cap = api.capacity(tp=2, dp=2, ep=4, slo_tpot_p99_ms=100, **kw)
    assert cap.to_dict()["gpus"] == 4 and cap.result.goodput_rps > 0
    with pytest.raises(InputError, match="draft model"):
        api.estimate(tp=2, dp=2, ep=4, rps=1.0, spec_k=2, spec_acceptance=0.6,
                     spec_draft="Qwen3-4B", **kw)


def test_the_planner_enumerates_layouts_and_writes_them() -> None:
    sp = build.space(gpus="H100-SXM", tp_options="2,4", ep_options="1,4", dp_options="1,2",
                     precisions="fp8/fp8", batches="64")
    assert [x.label for x in sp.parallel_layouts] == [
        "tp2", "tp2dp2", "tp2ep4dp2", "tp4", "tp4ep4", "tp4dp2", "tp4ep4dp2"]
    plan = api.plan(model="Qwen3-30B-A3B", rps=4, **LEN, gpus=("H100-SXM",),
                    tp_options=(2,), parallel="tp2,tp1ep2dp2,tp2pp2", precisions="fp8/fp8",
                    batches=(64,), slo_tpot_p99_ms=60, explain=False)
    d = plan.to_dict()
    assert d["inputs"]["space"]["parallel"] == ["tp2", "tp1ep2dp2", "tp2pp2"]
    for e in d["fleet"]:
        gpus = e["tp"] * e["dp"] * e["pp"]
        assert e["gpus"] == gpus * e["replicas"]
        assert e["usd_per_hour"] == pytest.approx(e["usd_per_gpu_hour"] * e["gpus"])
    cands = build.workload(model="Qwen3-30B-A3B", rps=4, **LEN)
    from kvopt.space import evaluate

    cs = evaluate(cands, build.space(gpus="H100-SXM", parallel="tp1ep2dp2,tp2",
                                     precisions="fp8/fp8", batches="64"))
    dp = [c for c in cs.candidates if c.dp == 2]
    assert dp and dp[0].gpus == 2 and dp[0].layout == "tp1ep2dp2"
    assert "tp1ep2dp2" in dp[0].label


def test_exports_spell_each_engines_flags() -> None:
    from kvopt.export.engines import engine_config

    entry = {"model": "Qwen3-30B-A3B", "gpu": "H100-SXM", "tp": 2, "ep": 4, "dp": 2, "pp": 2,
             "weights": "fp8", "kv_dtype": "fp8", "max_batch": 32}
    v = engine_config(entry, engine="vllm", max_model_len=4096).command
    assert v[v.index("--tensor-parallel-size") + 1] == "2"
    assert v[v.index("--data-parallel-size") + 1] == "2"
    assert v[v.index("--pipeline-parallel-size") + 1] == "2"
    assert "--enable-expert-parallel" in v and v[v.index("--max-num-seqs") + 1] == "32"
    s = engine_config(entry, engine="sglang", max_model_len=4096).command
    assert s[s.index("--tp-size") + 1] == "4" and s[s.index("--dp-size") + 1] == "2"
    assert s[s.index("--ep-size") + 1] == "4" and s[s.index("--pp-size") + 1] == "2"
    assert "--enable-dp-attention" in s and s[s.index("--max-running-requests") + 1] == "64"
    t = engine_config({**entry, "tp": 1, "dp": 4}, engine="trtllm", max_model_len=4096)
    assert t.command[t.command.index("--tp_size") + 1] == "4"
    assert t.command[t.command.index("--pp_size") + 1] == "2"
    import yaml

    extra = yaml.safe_load(t.config_yaml)
    assert (extra["moe_expert_parallel_size"], extra["moe_tensor_parallel_size"],
            extra["enable_attention_dp"]) == (4, 1, True)
    with pytest.raises(InputError, match="one GPU per attention rank"):
        engine_config(entry, engine="trtllm", max_model_len=4096)
    plain = engine_config({**entry, "ep": 1, "dp": 1, "pp": 1}, engine="vllm",
                          max_model_len=4096).command
    assert not {"--data-parallel-size", "--enable-expert-parallel"} & set(plain)


def test_cli_takes_the_layout() -> None:
    from kvopt.cli.main import cli

    res = CliRunner().invoke(cli, [
        "estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM", "--tp", "2", "--dp", "2",
        "--ep", "4", "--input-len", "500", "--output-len", "50", "--rps", "2", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert (d["tp"], d["ep"], d["dp"], d["pp"]) == (2, 4, 2, 1)
    res = CliRunner().invoke(cli, [
        "estimate", "--model", "Qwen3-30B-A3B", "--gpu", "H100-SXM", "--tp", "2", "--dp", "2",
        "--ep", "4", "--input-len", "500", "--output-len", "50", "--rps", "2"])
    assert res.exit_code == 0 and "4x (tp2 ep4 dp2)" in res.output


def test_the_screen_sends_dp_and_pp_replicas_to_the_exact_search() -> None:
    from kvopt.serving.capacity import capacity_levels
    from kvopt.serving.lengths import fixed
    from kvopt.serving.results import Slo
    from kvopt.serving.screen import screen_levels

    reps = [build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", tp=2, dp=2, ep=4),
            build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", tp=2, pp=2),
            build_replica(model="Qwen3-30B-A3B", gpu="H100-SXM", tp=2, ep=2)]
    slo = Slo(tpot_p99_ms=80.0)
    got = screen_levels(reps, input_dist=fixed(1000), output_dist=fixed(200), slo=slo,
                        batches=[64])
    for rep, res in zip(reps[:2], got[:2], strict=True):
        exact = capacity_levels(rep, input_dist=fixed(1000), output_dist=fixed(200), slo=slo,
                                batches=[64])
        assert res[0].goodput_rps == exact[0].goodput_rps
    assert got[2][0].goodput_rps > 0  # EP over one TP group: the screen itself


def test_k8s_refuses_a_replica_wider_than_a_node() -> None:
    from kvopt.export.k8s import manifests

    plan = api.plan(model="Qwen3-30B-A3B", rps=2, **LEN, gpus=("H100-SXM",),
                    parallel="tp8dp2ep16", precisions="fp8/fp8", batches=(64,),
                    explain=False).to_dict()
    with pytest.raises(InputError, match="spans NVLink domains"):
        manifests(plan, engine="vllm")
