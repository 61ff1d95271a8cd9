"""The accuracy benchmarks on real serving runs (benchmarks/accuracy_silicon.py,
accuracy_vllm_serving.py): rows map to kvopt questions or to the reason they cannot, and
predictions are finite."""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any

import pytest

from tests.paths import BENCHMARKS

if not (BENCHMARKS / "accuracy_common.py").exists():
    pytest.skip("source checkout only", allow_module_level=True)
sys.path.insert(0, str(BENCHMARKS))
ac: Any = importlib.import_module("accuracy_common")
silicon: Any = importlib.import_module("accuracy_silicon")
serving: Any = importlib.import_module("accuracy_vllm_serving")


@pytest.fixture(scope="module")
def silicon_rows() -> dict[str, dict[str, str]]:
    return {r["id"]: r for r in ac.read_csv(silicon.DATA)}


@pytest.fixture(scope="module")
def serving_rows() -> list[dict[str, str]]:
    return ac.read_csv(serving.DATA)


REASONS = {
    "kimik2_5_gb200_trtllm_fp4_disagg_1024x1024_c4_cfg759": ac.DISAGG,
    "2026_04_06_deepseek_r1_gb200_trtllm_fp4_agg_1024x1024_c512_tp20_ep1_13": ac.HEADS,
    "2026_03_25_deepseek_r1_b200_sxm_sglang_fp8_agg_8192x1024_c8_tp4_0_ep1_0_277": ac.FIT,
    "qwen_qwen3_235b_a22b_fp8_qwen_qwen3_235b_a22b_fp8_h200_sxm_vllm_agg_2000x100_c5_tp1_"
    "epnone_11": ac.MOE_TP,
}
PREDICTED = ("qwen_qwen3_32b_qwen_qwen3_32b_h100_sxm_vllm_agg_1024x128_c8_tp4_epnone_2",
             "dsr1_b200_trtllm_fp8_agg_1024x1024_c16_cfg473")


def test_silicon_rows_kvopt_cannot_express_say_why(
        silicon_rows: dict[str, dict[str, str]]) -> None:
    for row_id, reason in REASONS.items():
        out = silicon.predict_row(silicon_rows[row_id])
        assert (out["status"], out["reason"]) == ("cannot_express", reason), row_id
    base = silicon_rows[PREDICTED[0]]
    for change, reason in (({"moe_ep_size": "2.0"}, ac.LAYOUT), ({"system": "tpu_v5e"}, ac.GPU),
                           ({"backend": "llama-server"}, ac.ENGINE),
                           ({"model_path": "tiiuae/falcon-180B"}, ac.MODEL),
                           ({"gemm_quant_mode": "mxfp6"}, ac.PRECISION),
                           ({"tp_size": "many"}, ac.UNREADABLE)):
        out = silicon.predict_row({**base, **change})  # a bad cell never raises
        assert (out["status"], out["reason"]) == ("cannot_express", reason), change


def test_silicon_predictions_are_finite(silicon_rows: dict[str, dict[str, str]]) -> None:
    vllm, trt = (silicon.predict_row(silicon_rows[i]) for i in PREDICTED)
    for out in (vllm, trt):
        assert out["status"] == "ok"
        for key in ("pred_ttft_ms", "pred_tpot_ms", "pred_e2e_ms"):
            assert math.isfinite(out[key]) and out[key] > 0
    assert (vllm["q_model"], vllm["q_gpu"], vllm["q_tp"], vllm["q_concurrency"]) == (
        "Qwen3-32B", "H100-SXM", 4, 8)
    assert (vllm["q_weights"], vllm["q_kv_dtype"], trt["q_weights"], trt["q_kv_dtype"]) == (
        "bf16", "bf16", "fp8", "fp8")  # --kv auto: fp8 KV for TensorRT-LLM's fp8 checkpoints
    assert trt["q_model"] == "DeepSeek-V3"  # DeepSeek-R1: a catalog alias
    assert silicon.predict_row(silicon_rows[PREDICTED[1]], kv="bf16")["q_kv_dtype"] == "bf16"


def test_silicon_parallel_rows_map_to_layouts(silicon_rows: dict[str, dict[str, str]]) -> None:
    """EP, attention-DP and PP rows are asked with their layout; a DP row's clients are the
    source's concurrency (batch_size is per rank); rows recorded with the world twice
    (tp16 mtp4 ep4) are asked as the runs they are (tp4 ep4)."""
    dp_row = silicon_rows["2026_03_25_deepseek_r1_b200_sxm_trtllm_fp4_agg_1024x1024_c256_tp8_0_"
                          "ep8_0_1084"]
    q = silicon.question(dp_row)
    assert (q["tp"], q["ep"], q["dp"], q["pp"], q["concurrency"]) == (1, 8, 8, 1, 256)
    assert dict(q["engine_args"])["max_num_seqs"] == 32  # aiconfigurator's per-rank batch
    assert silicon.group(dp_row) == "dp+ep"
    twice = silicon_rows["dsr1_b200_sglang_fp4_agg_1024x1024_c4_cfg202"]
    assert silicon.layout(twice) == (4, 4, 1, 1, 1, True)
    assert silicon.group(twice) == "ep (relabelled)"
    q = silicon.question(twice)
    assert (q["tp"], q["ep"], q["concurrency"]) == (4, 4, 4) and "dp" in q
    genuine = {**twice, "tp_size": "4.0", "moe_tp_size": "2.0", "moe_ep_size": "2.0"}
    assert silicon.layout(genuine) == (4, 2, 1, 1, 2, False)  # moe_tp 2 x ep 2 = tp 4
    out = silicon.predict_row(dp_row)
    assert out["status"] == "ok" and math.isfinite(out["pred_tpot_ms"])
    same, other = silicon.recorded_twice_evidence(list(silicon_rows.values()))
    assert same >= 10 and same > other


def test_checkpoint_names_map_to_their_architecture() -> None:
    assert ac.catalog_model("nvidia/Llama-3.1-8B-Instruct-FP8") == "Llama-3.1-8B"
    assert ac.catalog_model("nvidia/DeepSeek-V3.1-NVFP4") == "DeepSeek-V3"
    assert ac.catalog_model("Qwen/Qwen3-235B-A22B-FP8") == "Qwen3-235B-A22B"
    assert ac.catalog_model("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic") == (
        "Llama-4-Scout")
    assert ac.catalog_model("MiniMaxAI/MiniMax-M2.5") == "MiniMax-M2"
    assert ac.catalog_model("moonshotai/Kimi-K2.5") == "Kimi-K2.5"  # its text model


def test_every_silicon_row_maps_or_says_why(silicon_rows: dict[str, dict[str, str]]) -> None:
    """The mapping alone (no prediction) over the whole file: a question or a reason."""
    asked = 0
    for row in silicon_rows.values():
        try:
            silicon.question(row)
            asked += 1
        except ac.Inexpressible as exc:
            assert exc.reason in silicon.ORDER
    assert 600 < asked < len(silicon_rows)


def test_identical_configurations_count_once(silicon_rows: dict[str, dict[str, str]]) -> None:
    row = silicon_rows[PREDICTED[0]]
    again = {**row, "id": "repeat", "silicon_ttft_ms": "300", "silicon_tpot_ms": "30"}
    other = {**row, "id": "other", "batch_size": "16.0", "silicon_ttft_ms": "123"}
    out = silicon.unique_rows([row, again, other])
    assert [r["repeats"] for r in out] == ["2", "1"]
    assert float(out[0]["silicon_ttft_ms"]) == pytest.approx(
        (float(row["silicon_ttft_ms"]) + 300) / 2)


def test_a_run_recorded_twice_counts_once(silicon_rows: dict[str, dict[str, str]]) -> None:
    """InferenceX's DB dump and a day's CSV both hold some runs, under other ids and model
    names (the dump relabels DeepSeek-R1 as DeepSeek-V3) or version spellings: one run, one
    measurement. A real repeat (other measurements) still counts."""
    dump = silicon_rows["dsr1_h200_sglang_fp8_agg_1024x8192_c4_cfg81"]
    csv_ = silicon_rows["2026_03_25_deepseek_r1_h200_sxm_sglang_fp8_agg_1024x8192_c4_tp8_0_"
                        "ep1_0_309"]
    assert dump["model_path"].endswith("DeepSeek-V3") and csv_["model_path"].endswith("R1")
    assert (dump["silicon_ttft_ms"], dump["silicon_tpot_ms"]) == (
        csv_["silicon_ttft_ms"], csv_["silicon_tpot_ms"])
    kept, dropped = silicon.same_runs([dump, csv_])
    assert (kept, dropped) == ([dump], 1)
    assert len(silicon.unique_rows([dump, csv_])) == 1
    # the same setup measured again is a repeat; another setup with equal numbers is not
    again = {**csv_, "id": "again", "silicon_tpot_ms": "99.5"}
    other = {**csv_, "id": "other", "isl": "2048"}
    assert silicon.same_runs([dump, csv_, again, other])[1] == 1
    # copies may differ in the last bit of a measurement (the dump's 15.855620048654977 is
    # the CSV's ...975); a row recorded with the world twice (TP 16 = 4 x EP 4) is its twin
    assert silicon.same_runs([dump, {**csv_, "silicon_tpot_ms": csv_["silicon_tpot_ms"][:-1]
                                     + "1"}])[1] == 1
    plain = silicon_rows["2026_03_25_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x8192_c4_tp4_0_"
                         "ep4_0_287"]
    twice = silicon_rows["2026_04_06_deepseek_r1_b200_sxm_sglang_fp4_agg_1024x8192_c4_tp4_ep4_"
                         "1018"]
    assert (plain["tp_size"], twice["tp_size"]) == ("4", "16")
    assert silicon.same_runs([plain, twice]) == ([plain], 1)
    # a row missing a measurement is never matched
    blank = {**dump, "id": "blank", "silicon_tpot_ms": ""}
    assert silicon.same_runs([blank, {**blank, "id": "blank2"}])[1] == 0


def test_speculative_decoding_runs_are_told_apart_and_not_asked(
        silicon_rows: dict[str, dict[str, str]]) -> None:
    """InferenceX ran TensorRT-LLM release:1.2.0rc6.post3 only in its DeepSeek-R1 MTP configs,
    and the sweep of 2026-01-14 was its MTP pull request's: those rows are refused with the
    reason; the same image on another day, or another image, is asked. A speculative run is
    never a repeat of a plain one."""
    mtp = [r for r in silicon_rows.values() if "release:1.2.0rc6.post3" in r["silicon_data_source"]
           and r["mode"] == "agg"]
    assert mtp
    for row in mtp:
        out = silicon.predict_row(row)
        assert (out["status"], out["reason"]) == ("cannot_express", ac.SPEC), row["id"]
        assert "dsr1-fp8-b200-trt-mtp" in out["detail"]
    row = mtp[0]
    plain = {**row, "id": "plain", "silicon_data_source": row["silicon_data_source"].replace(
        "1.2.0rc6.post3", "1.2.0rc6.post2")}
    assert silicon.predict_row(plain)["status"] == "ok"
    src = "x; measured={}T00:00:00Z; image=nvcr.io#nvidia/tensorrt-llm/release:1.1.0rc2.post2"
    day = {**row, "backend_version": "1.1.0rc2.post2",
           "silicon_data_source": src.format("2026-01-14")}
    assert silicon.predict_row(day)["reason"] == ac.SPEC
    assert silicon.predict_row({**day, "silicon_data_source": src.format("2025-12-15")}
                               )["status"] == "ok"
    assert len(silicon.unique_rows([row, {**plain, "backend_version": row["backend_version"]}
                                    ])) == 2
    # where the plain and the MTP key ran one image on one day, the layout decides: SGLang's
    # TP 8 DeepSeek-R1 FP8 runs of 2026-03-25 on B200 may be either, its TP 4 ones are plain
    # (and H200 had no MTP key)
    day = [r for r in silicon_rows.values() if r["backend"] == "sglang"
           and r["system"] == "b200_sxm" and "sglang:v0.5.9-cu130" in r["silicon_data_source"]
           and "measured=2026-03-25" in r["silicon_data_source"]
           and r["precision"] == "fp8" and r["model_path"].endswith("DeepSeek-R1")]
    by_tp: dict[float, set[str]] = {}
    for r in day:
        by_tp.setdefault(float(r["tp_size"]), set()).add(silicon.predict_row(r)["reason"])
    assert set(by_tp) == {4.0, 8.0}
    assert by_tp[8.0] == {ac.SPEC} and ac.SPEC not in by_tp[4.0]


def _run(rows: list[dict[str, str]], exp: str, stage: str) -> dict[str, dict[str, str]]:
    return {r["metric"]: r for r in rows if r["exp_id"] == exp and r["stage_index"] == stage}


def test_vllm_serving_rows(serving_rows: list[dict[str, str]]) -> None:
    stage0, stage1, whole = (_run(serving_rows, "60", s) for s in ("0", "1", "-1"))
    preds = {m: serving.predict_row(r) for m, r in stage1.items()}
    for m in ("ttft_mean", "ttft_p90", "ttft_p99", "itl_mean", "e2e_mean", "e2e_p99"):
        assert preds[m]["status"] == "ok" and math.isfinite(preds[m]["pred"]), m
        assert math.isfinite(preds[m]["err"])
    q = preds["ttft_mean"]
    # the 572-token prompt's whole 16-token blocks short of its last token: 35 x 16 = 560
    assert (q["q_model"], q["q_tp"], q["q_rps"], q["q_prefix_len"]) == ("Llama-3.1-70B", 4,
                                                                        6.0, 560)
    assert q["q_input_len"] == round(547 * serving.PROMPT_GROWTH) == 572
    # a whole run of two stages: request-weighted means, no percentiles
    mixed = serving.predict_row(whole["ttft_mean"])
    first = serving.predict_row(stage0["ttft_mean"])["pred"]
    assert mixed["pred"] == pytest.approx((2.5 * first + 6.0 * q["pred"]) / 8.5)
    assert serving.predict_row(whole["ttft_p99"])["reason"] == ac.STAGE_MIX
    # the measured mean lengths where the data records them (this run's outputs ended
    # before max_tokens), else the configured ones
    measured = _run(serving_rows, "20260217-155451", "0")["e2e_mean"]
    assert serving.lengths(measured) == {"input_len": round(591.6), "output_len": round(
        float(measured["measured_output_mean"]))} == {"input_len": 592, "output_len": 194}
    assert serving.lengths(stage1["e2e_mean"]) == {
        "input_len": round(547 * serving.PROMPT_GROWTH), "output_len": 248}
    yi = serving.predict_row(_run(serving_rows, "65", "0")["ttft_mean"])
    assert (yi["status"], yi["q_model"], yi["q_weights"]) == ("ok", "Yi-34B", "fp16")
    bad = {**_run(serving_rows, "65", "0")["ttft_mean"], "model": "tiiuae/falcon-180B"}
    assert serving.predict_row(bad)["reason"] == ac.MODEL


def test_the_runs_cycle_100_prompts_that_stay_cached_while_100_requests_fit(
        serving_rows: list[dict[str, str]]) -> None:
    """inference-perf e8e0aa9 sent 10 x 10 fixed prompts in turn: a prompt hits vLLM's cache
    from its second send, unless 100 requests' blocks outgrow the KV cache (LRU then evicts
    each prompt before it comes round). Llama-3.1-70B general-lite (572 + 248 tokens, 30,251
    blocks): 100 x ceil(820 / 16) = 100 x 52 = 5,200 blocks fit, hit rate 1 - 100 / (2.5 x
    600 + 6 x 600) = 1 - 100 / 5100. Llama-4-Scout reasoning-lite (round(1034 x 1.045) = 1081
    + 1448 tokens, 8,253 blocks): 100 x ceil(2529 / 16) = 15,900 blocks do not: no hits."""
    q = serving.predict_row(_run(serving_rows, "60", "1")["ttft_mean"])
    assert q["q_prefix_hit_rate"] == pytest.approx(1 - 100 / 5100)
    r = _run(serving_rows, "48", "0")["ttft_mean"]
    assert float(r["gpu_kv_blocks"]) == 8253
    q = serving.predict_row(r)
    assert (q["q_input_len"], q["q_output_len"]) == (1081, 1448)
    assert (q["q_prefix_len"], q["q_prefix_hit_rate"]) == (1072, 0.0)
    # the same run with the KV blocks of 100 such requests would keep them
    fits = serving.predict_row({**r, "gpu_kv_blocks": "15900"})
    assert fits["q_prefix_hit_rate"] == pytest.approx(1 - 100 / 1200)


def test_a_one_stage_whole_run_counts_once(serving_rows: list[dict[str, str]]) -> None:
    rows = [r for r in serving_rows if r["exp_id"] in ("64", "60")]  # one stage, two stages
    kept = serving.unique_rows(rows)
    assert len(kept) == len(rows) - 7
    assert not any(r["exp_id"] == "64" and r["stage_index"] == "-1" for r in kept)


def test_error_statistics_keep_saturated_predictions() -> None:
    s = ac.error_stats([0.1, -0.2, math.inf])
    assert (s["n"], s["median_abs_pct"], s["p90_abs_pct"]) == (3, 20.0, math.inf)
    assert s["bias_pct"] == pytest.approx(10.0)
    assert ac.relative_error(110.0, 100.0) == pytest.approx(0.1)
    assert ac.relative_error(None, 100.0) is None


def test_rows_ask_for_their_engine_release() -> None:
    """A row is asked with its engine release (first three numbers) where overheads are
    fitted at or below it; Dynamo runtime tags recorded as the version, nightly builds and
    releases older than every fit keep the profile's own figures."""
    assert ac.release("1.2.0rc6.post2") == "1.2.0"
    assert ac.release("0.5.10.post1") == "0.5.10"
    assert ac.release("0.19.0", "vllm/vllm-openai:v0.19.0") == "0.19.0"
    assert ac.release("0.8.0", "nvcr.io/nvidia/ai-dynamo/sglang-runtime:0.8.0") == ""
    assert ac.release("0.8.1.post1", "x; nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:"
                      "0.8.1.post1") == ""
    # a Dynamo image's row that records the engine's own version
    assert ac.release("1.2.0rc6.post1", "x; nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:"
                      "0.8.0") == "1.2.0"
    assert ac.release("nightly-dev-20260216-d3bae71e") == ac.release("glm5-hopper") == ""
    assert ac.fitted_release("sglang", "0.5.10.post1") == "0.5.10"
    assert ac.fitted_release("sglang", "0.0.1") is None
    row = {"mode": "agg", "model_path": "Qwen/Qwen3-32B", "system": "h100_sxm",
           "backend": "sglang", "backend_version": "0.5.9", "precision": "",
           "gemm_quant_mode": "", "moe_quant_mode": "", "isl": "1024", "osl": "128",
           "batch_size": "8", "tp_size": "4", "silicon_data_source": ""}
    assert silicon.question(row)["engine_version"] == "0.5.9"
    assert "engine_version" not in silicon.question(row, versions=False)


def _trt_sweep(**over: str) -> dict[str, str]:
    row = {"mode": "agg", "model_path": "meta-llama/Llama-3.1-70B",
           "system": "h200_sxm", "backend": "trtllm", "backend_version": "",
           "precision": "fp8", "gemm_quant_mode": "", "moe_quant_mode": "", "isl": "1024",
           "osl": "1024", "batch_size": "16", "tp_size": "2", "attention_dp_size": "",
           "silicon_data_source": "source_file=2026-04-06.csv; model=Llama-3.1-70B; "
           "measured=2025-10-29T00:00:00.000Z; wip=False"}
    row.update(over)
    return row


def test_sweeps_ask_with_their_launch_scripts() -> None:
    """A TensorRT-LLM sweep gets its InferenceX script's token budget and batch waiting, and
    the release of the image it ran when it records none; other rows keep theirs."""
    q = silicon.question(_trt_sweep())
    args = dict(q["engine_args"])
    # 70b_fp8_h200_trt_slurm.sh: --max_num_tokens 16384; 1k/1k at TP < 8: 20 passes, 0.9
    assert args["max_num_batched_tokens"] == 16384
    assert (args["batch_wait_timeout_iters"], args["batch_wait_max_tokens_ratio"]) == (20, 0.9)
    assert q["engine_version"] == "1.1.0"  # its image, release:1.1.0rc2.post2
    assert "batch_wait_timeout_iters" not in dict(silicon.question(
        _trt_sweep(tp_size="8"))["engine_args"])
    # DeepSeek-R1 FP8 on B200 after ec7bafa (2026-01-29): (64 + 1024 + 64 + 63) // 64 * 64
    # = 1152 tokens, floored at 8192; 1k/1k at 64 clients or more: 40 passes, 0.8
    dsr1 = _trt_sweep(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm",
                      batch_size="64", tp_size="8", moe_ep_size="8", moe_tp_size="1",
                      backend_version="1.2.0rc6.post2", silicon_data_source=(
                          "db-dump/2026-04-27; config_id=1; measured=2026-02-10T00:00:00Z"))
    args = dict(silicon.question(dsr1)["engine_args"])
    assert args["max_num_batched_tokens"] == 8192
    assert args["batch_wait_timeout_iters"] == 40
    before = dict(dsr1, silicon_data_source="x; measured=2025-11-02T00:00:00Z")
    assert dict(silicon.question(before)["engine_args"])["max_num_batched_tokens"] == 1152
    # a gap-analysis row keeps its recorded version and the engine's defaults but the token
    # budget aiconfigurator's generator wrote: clients + ISL + 1500 = 16 + 1024 + 1500
    gap = _trt_sweep(backend_version="1.0.0rc3", silicon_data_source="aic-auto-gap-analysis")
    assert dict(silicon.question(gap)["engine_args"]) == {"max_num_batched_tokens": 2540}
    assert silicon.version(gap) == "1.0.0rc3"
    assert dict(silicon.question(dict(gap, backend="vllm", backend_version="0.12.0"))[
        "engine_args"]) == {"max_num_batched_tokens": 2540}
    assert "engine_args" not in silicon.question(dict(gap, backend="sglang",
                                                      backend_version="0.5.6.post2"))


def test_unversioned_vllm_sweeps_take_their_image() -> None:
    """A vLLM sweep that records no version ran the image InferenceX's template or config
    named on its day (vllm/vllm-openai:v0.10.2 for Llama-70B; gpt-oss moved to v0.11.0 on
    2025-11-04 and v0.11.2 late on 2025-12-05, a day left ambiguous)."""
    llama = _trt_sweep(backend="vllm", backend_version="")
    assert silicon.version(llama) == "0.10.2"
    oss = _trt_sweep(backend="vllm", backend_version="", model_path="openai/gpt-oss-120b",
                     precision="", system="b200_sxm")
    day = "x; measured={}T00:00:00Z".format
    assert silicon.version(dict(oss, silicon_data_source=day("2025-11-02"))) == "0.10.2"
    assert silicon.version(dict(oss, silicon_data_source=day("2025-11-20"))) == "0.11.0"
    assert silicon.version(dict(oss, silicon_data_source=day("2025-12-05"))) == ""
    assert silicon.version(dict(oss, silicon_data_source=day("2025-12-10"))) == "0.11.2"
    assert silicon.version(dict(llama, backend_version="0.12.0")) == "0.12.0"  # recorded
    # SGLang images are not tabulated: an unversioned SGLang sweep stays unversioned
    assert silicon.version(dict(llama, backend="sglang")) == ""


def test_dated_sglang_nightlies_ask_for_the_release_they_hold() -> None:
    """An SGLang nightly built on a recorded day (its version or its image tag) holds the
    newest release InferenceX had named before that day (v0.5.8 from 2026-02-05, v0.5.9 from
    2026-03-03, v0.5.10 from 2026-04-14); undated, model-named and other engines' builds
    stay unversioned."""
    row = {"mode": "agg", "model_path": "Qwen/Qwen3.5-397B-A17B", "system": "b200_sxm",
           "backend": "sglang", "backend_version": "nightly-dev-20260216-d3bae71e",
           "precision": "", "gemm_quant_mode": "", "moe_quant_mode": "", "isl": "1024",
           "osl": "1024", "batch_size": "4", "tp_size": "8", "attention_dp_size": "",
           "moe_tp_size": "8", "moe_ep_size": "1",
           "silicon_data_source": "db-dump/2026-04-27; config_id=1; "
                                  "measured=2026-02-20T00:00:00.000Z"}
    assert silicon.release(row) == "0.5.8"  # built 2026-02-16: v0.5.8, not yet v0.5.9
    on_day = dict(row, backend_version="nightly-dev-20260303-0123abcd")
    assert silicon.release(on_day) == "0.5.8"  # named that day: maybe after the build
    image = dict(row, backend_version="nightly-dev", silicon_data_source=(
        "source_file=x.csv; image=lmsysorg/sglang:nightly-dev-cu13-20260328-a27651d5"))
    assert silicon.release(image) == "0.5.9"
    assert silicon.release(dict(row, backend_version="nightly-dev-20260420-d7256eb6")) \
        == "0.5.10"
    assert silicon.version(image) == "nightly-dev"  # reported as it ran
    for other in (dict(row, backend_version="nightly-dev"),
                  dict(row, backend_version="glm5-hopper"),
                  dict(row, backend="vllm", backend_version="nightly-dev-20260402-d7256eb6")):
        assert silicon.release(other) == ""
    assert silicon.question(image)["engine_version"] == "0.5.9"


def test_sglang_and_vllm_sweeps_ask_with_their_launch_scripts() -> None:
    """SGLang sweeps run prefill-first batches (no script passes --enable-mixed-chunk) with
    their scripts' budgets, running caps and KV dtype; vLLM's likewise."""
    dsr1 = _trt_sweep(model_path="deepseek-ai/DeepSeek-R1", system="b200_sxm", backend="sglang",
                      backend_version="0.5.9", batch_size="32", tp_size="8", moe_tp_size="8",
                      silicon_data_source="x; measured=2026-03-01T00:00:00Z")
    q = silicon.question(dsr1)
    args = dict(q["engine_args"])
    # dsr1_fp8_b200.sh at TP 8: 32768 / 32768, 128 running, fp8_e4m3 KV, recv interval 30
    assert (args["prefill_policy"], args["max_num_batched_tokens"], args["max_num_seqs"],
            args["admit_interval_steps"]) == ("prefill_first", 32768, 128, 30)
    assert q["kv_dtype"] == "fp8"
    assert silicon.question(dsr1, kv="bf16")["kv_dtype"] == "bf16"  # --kv overrides
    llama = _trt_sweep(backend="vllm", system="b200_sxm", tp_size="4")
    q = silicon.question(llama)
    # 70b_fp8_b200_docker.sh: max-num-batched-tokens 8192, kv fp8, --max-num-seqs 512
    assert dict(q["engine_args"]) == {"max_num_batched_tokens": 8192, "max_num_seqs": 512}
    assert q["kv_dtype"] == "fp8"
