"""Engine flags in plans and Pareto fronts (``--engine-arg``, fleet.yaml ``engine_args``):
every candidate runs with them, the plan records them, and ``kvopt export`` writes them as
each engine spells them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvopt import InputError, api
from kvopt.export.engines import engine_config

# one GPU, one precision, one TP: each plan has a single candidate replica per batch level
ASK = dict(model="Llama-3.1-8B", rps=4.0, input_len=1024, output_len=128,
           gpus=("H100-SXM",), tp_options=(1,), precisions=(("bf16", "bf16"),),
           batches=(64,), explain=False)
WAIT = {"batch_wait_timeout_iters": 20, "batch_wait_max_tokens_ratio": 0.9}


def test_a_plan_runs_its_candidates_with_the_engine_args() -> None:
    """TensorRT-LLM batch waiting holds each prompt up to 20 passes: the plan's predicted
    TTFT is the one api.estimate gives that replica at the same rate and flags, and is
    longer than without them (the decode steps are the same)."""
    plain = api.plan(**ASK, engine="trtllm").to_dict()
    held = api.plan(**ASK, engine="trtllm", engine_args=WAIT).to_dict()
    assert "engine_args" not in plain["inputs"]["space"]
    assert held["inputs"]["space"]["engine_args"] == WAIT
    [p], [h] = plain["fleet"], held["fleet"]
    assert h["predicted"]["ttft_mean_ms"] > p["predicted"]["ttft_mean_ms"] + 20
    assert h["predicted"]["tpot_mean_ms"] == pytest.approx(p["predicted"]["tpot_mean_ms"],
                                                           rel=0.02)
    est = api.estimate(model="Llama-3.1-8B", gpu="H100-SXM", tp=1, weights="bf16",
                       kv_dtype="bf16", engine="trtllm", input_len=1024, output_len=128,
                       rps=h["rate_per_replica_rps"],
                       engine_args={**WAIT, "max_num_seqs": h["max_batch"]})
    assert h["predicted"]["ttft_mean_ms"] == pytest.approx(est.latency.ttft_ms, rel=1e-3)


def test_command_line_text_is_recorded_as_typed_values(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "4", "--input-len", "1024",
                  "--output-len", "128", "--gpu", "H100-SXM", "--tp-options", "1",
                  "--precisions", "bf16/bf16", "--batches", "64", "--engine", "trtllm",
                  "--engine-arg", "batch_wait_timeout_iters=20",
                  "--engine-arg", "batch_wait_max_tokens_ratio=0.9",
                  "--engine-arg", "chunked_prefill=true", "--no-explain",
                  "--output", str(out))
    assert res.exit_code == 0, res.output
    space = json.loads(out.read_text())["inputs"]["space"]
    assert space["engine_args"] == {**WAIT, "chunked_prefill": True}
    # and the TensorRT-LLM launch config carries them
    res = run_cli("export", str(out), "--format", "trtllm")
    assert res.exit_code == 0, res.output
    assert "#   batch_wait_timeout_iters: 20" in res.output
    assert "#   batch_wait_max_tokens_ratio: 0.9" in res.output
    assert "#   enable_chunked_prefill: true" in res.output
    # another engine's launch line does not get TensorRT-LLM's flags, and says so
    res = run_cli("export", str(out), "--format", "vllm")
    assert res.exit_code == 0, res.output
    assert "batch_wait" not in res.output.split("are trtllm's")[1]
    assert "not written for vllm" in res.output


@pytest.mark.parametrize(("engine", "args", "why"), [
    ("vllm", {"batch_wait_timeout_iters": 20}, "vllm has no batch waiting"),
    ("vllm", {"max_num_seqs": 64}, "the plan chooses each candidate's max batch"),
    ("vllm", {"no_such_flag": 1}, "unknown engine argument"),
    ("sglang", {"max_num_batched_tokens": "many"}, "must be an integer"),
])
def test_bad_engine_args_are_refused_before_solving(engine: str, args: dict, why: str
                                                     ) -> None:
    with pytest.raises(InputError, match=why):
        api.plan(**ASK, engine=engine, engine_args=args)
    with pytest.raises(InputError, match=why):
        api.pareto(**{k: v for k, v in ASK.items() if k != "explain"}, engine=engine,
                   engine_args=args, method="exact")


def test_pareto_points_run_with_the_engine_args() -> None:
    """The front's TTFT of the one configuration moves with the flags as the plan's does."""
    kw = {k: v for k, v in ASK.items() if k != "explain"}
    plain = api.pareto(**kw, engine="trtllm", method="exact", max_replicas=1)
    held = api.pareto(**kw, engine="trtllm", engine_args=WAIT, method="exact", max_replicas=1)
    col = plain.objectives.index("ttft_p99")
    assert held.front.F[:, col].min() > plain.front.F[:, col].min() + 20


def test_engine_args_in_fleet_files(tmp_path: Path) -> None:
    from kvopt.fleet.fleetfile import FleetFileError, load_fleet_file

    doc = {"engine": "sglang", "gpus": ["H100-SXM"],
           "workloads": [{"name": "a", "model": "Llama-3.1-8B", "rate_rps": 3,
                          "input_len": 100, "output_len": 10}]}
    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump({**doc, "engine_args": {"admit_interval_steps": 10}}))
    space = load_fleet_file(f).space
    assert space.engine_args == (("admit_interval_steps", 10),)
    _, eng = space.hardware("H100-SXM")
    assert not isinstance(eng, str) and eng.admit_interval_steps == 10
    f.write_text(yaml.safe_dump({**doc, "engine_args": {"batch_wait_timeout_iters": 5}}))
    with pytest.raises(FleetFileError, match=r"engine_args.*sglang has no batch waiting"):
        load_fleet_file(f)
    f.write_text(yaml.safe_dump({**doc, "engine_args": {"max_num_seqs": 64}}))
    with pytest.raises(FleetFileError, match=r"engine_args: max_num_seqs=64: the plan chooses "
                       r"each candidate's max batch; give the levels with batches$"):
        load_fleet_file(f)


def _entry(**over: object) -> dict:
    return {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "tp": 1, "weights": "bf16",
            "kv_dtype": "bf16", "max_batch": 64, **over}


def test_export_spells_each_engines_flags() -> None:
    sg = engine_config(_entry(), engine="sglang", max_model_len=2048,
                       engine_args={"admit_interval_steps": 30, "prefill_policy": "mixed"})
    cmd = sg.command
    assert cmd[cmd.index("--scheduler-recv-interval") + 1] == "30"
    assert "--enable-mixed-chunk" in cmd
    unchunked = engine_config(_entry(), engine="sglang", max_model_len=2048,
                              engine_args={"chunked_prefill": False}).command
    assert unchunked[unchunked.index("--chunked-prefill-size") + 1] == "-1"
    assert unchunked.count("--chunked-prefill-size") == 1
    vl = engine_config(_entry(), engine="vllm", max_model_len=2048,
                       engine_args={"chunked_prefill": False, "request_overhead_ms": 20})
    assert "--no-enable-chunked-prefill" in vl.command
    assert yaml.safe_load(vl.config_yaml)["enable-chunked-prefill"] is False
    assert any("request_overhead_ms is a setting of kvopt's model" in n for n in vl.notes)
    # settings with no flag of that engine are said, not dropped silently
    noted = engine_config(_entry(), engine="vllm", max_model_len=2048,
                          engine_args={"prefill_policy": "prefill_first",
                                       "fp8_scaling": "static"})
    assert any("prefill_policy=prefill_first has no vllm flag" in n for n in noted.notes)
    assert any("fp8_scaling=static is the checkpoint's scaling" in n for n in noted.notes)
    # attention-DP balancing needs attention DP; batch waiting needs none
    trt = engine_config(_entry(model="Qwen3-30B-A3B", tp=1, dp=8, ep=8, gpu="H200"),
                        engine="trtllm", max_model_len=2048,
                        engine_args={"adp_balance": True, "adp_timeout_iters": 60})
    extra = yaml.safe_load(trt.config_yaml)
    assert extra["enable_attention_dp"] is True
    assert extra["attention_dp_config"] == {"enable_balance": True, "timeout_iters": 60,
                                            "batching_wait_iters": 10}
    flat = engine_config(_entry(), engine="trtllm", max_model_len=2048,
                         engine_args={"adp_balance": True})
    assert "attention_dp_config" not in yaml.safe_load(flat.config_yaml)
    assert any("attention DP only" in n for n in flat.notes)
    # no engine args: no flags beyond the plan's own (the golden configs pin the rest)
    assert "--scheduler-recv-interval" not in engine_config(
        _entry(), engine="sglang", max_model_len=2048).command
