"""The web app in headless Chromium (Debian's chromium + chromium-driver, as .ci/run
installs them): fill each form like a person, read the result off the page and check it is
the CLI's JSON for the command the page shows; bad input shows the CLI's one-line error;
a click on the Pareto chart selects that point; the study browser opens a study."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.ops import browser

pytest.importorskip("fastapi")
pytestmark = pytest.mark.skipif(not browser.available(), reason=(
    "Debian chromium + chromium-driver not installed (.ci/run installs them)"))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from kvopt.study.run import run_study
    from kvopt.study.spec import Study

    root = tmp_path_factory.mktemp("ui-studies")
    study = Study(solve="plan", base={"model": "Llama-3.1-8B", "input_len": 500,
                                      "output_len": 100, "gpus": ["H100-SXM", "L40S"],
                                      "tp_options": [1], "precisions": ["fp8/fp8"],
                                      "batches": [64]},
                  axes={"rps": [40, 2, 10], "slo_tpot_p99_ms": [50, 3]})
    run_study(study, root / "rate-sweep", progress=False)
    with browser.serve(root) as url, browser.driver() as d:
        yield d, url


def _cli(run_cli, command: str) -> tuple[int, str, str]:
    res = run_cli(*shlex.split(command)[1:])
    return res.exit_code, res.stdout, res.stderr


def _json_of(d, css: str) -> dict:  # type: ignore[no-untyped-def]
    browser.wait(d, lambda d: browser.text(d, css).strip())
    return json.loads(browser.text(d, css))


def test_estimate_updates_as_inputs_change_and_equals_the_cli(page, run_cli) -> None:
    d, url = page
    d.get(f"{url}/estimate")
    browser.wait(d, lambda d: '"model": "Llama-3.1-8B"' in browser.text(d, "#estimate-json"))
    browser.fill(d, "#estimate-form", {"gpu": "L40S", "weights": "fp8", "load_mode": "rps",
                                       "load_value": "3", "output_len": "128"})


    def updated(d) -> bool:  # type: ignore[no-untyped-def]
        shown = browser.text(d, "#estimate-json")
        if not shown.strip() or "--output-len 128" not in browser.text(d, "#estimate-cli"):
            return False
        r = json.loads(shown)
        return bool(r["gpu"] == "L40S" and r["weights"] == "fp8" and r["load"]["value"] == 3)

    browser.wait(d, updated)
    shown = json.loads(browser.text(d, "#estimate-json"))
    code, out, _ = _cli(run_cli, browser.text(d, "#estimate-cli"))
    assert code == 0 and shown == json.loads(out)
    # the cards show the same numbers
    cards = browser.text(d, "#estimate-cards")
    assert "$/h" in cards and "TTFT p99 (ms)" in cards
    # a model the catalog does not know: the CLI's one-line error, no result
    browser.fill(d, "#estimate-form", {"model": "Llama-3.1-8Bx"})
    browser.wait(d, lambda d: browser.text(d, "#estimate-error").strip())
    code, _, err = _cli(run_cli, "kvopt estimate --model Llama-3.1-8Bx --gpu L40S "
                                 "--input-len 1024 --output-len 128 --rps 3")
    assert code == 1 and err == f"kvopt: error: {browser.text(d, '#estimate-error')}\n"
    assert browser.severe_console_errors(d) == []


def test_plan_form_equals_the_cli_and_offers_downloads(page, run_cli) -> None:
    from selenium.webdriver.common.by import By

    d, url = page
    d.get(f"{url}/plan")
    browser.wait(d, lambda d: d.find_element(By.NAME, "gpus").get_attribute("value"))
    browser.fill(d, "#plan-form", {"rps": "12", "input_len": "500", "output_len": "100",
                                   "gpus": "H100-SXM,L40S", "tp_options": "1,2",
                                   "precisions": "fp8/fp8", "batches": "64,256",
                                   "kv_offload_gib": "16"})
    d.find_element(By.ID, "plan-run").click()
    shown = _json_of(d, "#plan-json")
    command = browser.text(d, "#plan-cli")
    assert "--kv-offload-gib 16" in command and "--no-explain" in command
    code, out, _ = _cli(run_cli, command)
    cli = json.loads(out)
    for p in (shown, cli):
        for k in ("build_s", "solve_s"):
            p["solver"].pop(k)
    assert code == 0 and shown == cli
    fleet = d.find_elements(By.CSS_SELECTOR, "#plan-fleet tbody tr")
    assert len(fleet) == len(cli["fleet"])
    assert fleet[0].find_elements(By.TAG_NAME, "td")[1].text == cli["fleet"][0]["gpu"]
    assert browser.text(d, "#plan-binding") == "".join(cli["binding"])
    labels = [b.text for b in d.find_elements(By.CSS_SELECTOR, "#plan-downloads button")]
    assert labels == ["Plan JSON", "Markdown", "CSV", "vLLM", "SGLang", "TensorRT-LLM",
                      "Kubernetes", "LMCache"]
    # bad input in the form: the one-line error the CLI prints for it
    browser.fill(d, "#plan-form", {"precisions": "fp9/fp8"})
    d.find_element(By.ID, "plan-run").click()
    browser.wait(d, lambda d: browser.text(d, "#plan-error").strip())
    code, _, err = _cli(run_cli, "kvopt plan --model Llama-3.1-8B --rps 12 --input-len 500 "
                                 "--output-len 100 --precisions fp9/fp8")
    assert code == 1 and err == f"kvopt: error: {browser.text(d, '#plan-error')}\n"


def test_pareto_click_selects_a_point(page, run_cli) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d, url = page
    d.get(f"{url}/pareto")
    browser.wait(d, lambda d: d.find_element(By.NAME, "gpus").get_attribute("value"))
    browser.fill(d, "#pareto-form", {"rps": "10", "gpus": "H100-SXM,L40S", "tp_options": "1,2",
                                     "precisions": "fp8/fp8,bf16/bf16", "pop": "12",
                                     "gens": "4"})
    d.find_element(By.ID, "pareto-run").click()
    points = browser.wait(d, lambda d: d.find_elements(
        By.CSS_SELECTOR, "#pareto-chart .scatterlayer .trace:first-child .point"))
    front = d.execute_script("return window.kvopt.state.pareto.front")
    first_gpu = sorted({r["gpu"] for r in front})[0]
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", points[0])
    ActionChains(d).move_to_element(points[0]).click().perform()
    title = browser.wait(d, lambda d: d.find_elements(By.ID, "pareto-point-title"))[0].text
    picked = d.execute_script("return window.kvopt.state.point")
    row = front[picked]
    assert row["gpu"] == first_gpu  # the first trace is the first GPU's
    assert title == f"Point {picked + 1}: {row['replicas']}x {row['gpu']} TP{row['tp']}"
    assert "engine flags" in browser.text(d, "#pareto-point")
    legend = browser.text(d, "#pareto-chart .legend")
    assert first_gpu in legend and "TP 1" in legend
    assert browser.severe_console_errors(d) == []


def test_study_browser_opens_a_study(page) -> None:
    from selenium.webdriver.common.by import By

    d, url = page
    d.get(f"{url}/studies")
    item = browser.wait(d, lambda d: d.find_elements(By.CSS_SELECTOR,
                                                      "#study-list li[data-path]"))[0]
    assert item.get_attribute("data-path") == "rate-sweep"
    item.click()
    rows = browser.wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#study-table tbody tr"))
    assert len(rows) == 6
    rps = [float(r.find_elements(By.TAG_NAME, "td")[0].text) for r in rows]
    assert rps == sorted(rps)  # ordered by the swept value
    legend = browser.text(d, "#study-chart .legend")
    assert "infeasible" in legend  # the 3 ms TPOT SLO cannot be met
    assert browser.severe_console_errors(d) == []


def test_no_request_leaves_the_machine(page) -> None:
    d, url = page
    d.get(f"{url}/estimate")
    browser.wait(d, lambda d: browser.text(d, "#estimate-json").strip())
    hosts = d.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
    assert set(hosts) <= {url.removeprefix("http://")}, hosts
    assert d.execute_script("return typeof Plotly") == "object"

