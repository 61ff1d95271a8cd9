"""Screenshots of the web app's four views (benchmarks/screenshots/ui_*.png) and the static
Pareto PNG export (benchmarks/screenshots/pareto_front.png), for the README.

    .venv/bin/python benchmarks/ui_screenshots.py

Serves `kvopt ui` on 127.0.0.1 and drives Debian's headless Chromium (packages chromium and
chromium-driver); a small study is run into a temporary folder for the study browser.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "screenshots"

STUDY = """solve: plan
base: {model: Llama-3.1-8B, input_len: 1024, output_len: 256, gpus: [H100-SXM, L40S, A100-SXM-80GB],
       tp_options: [1, 2], precisions: [fp8/fp8, bf16/bf16], batches: [64, 256],
       slo_ttft_p99_ms: 500}
axes: {rps: [2, 10, 40, 80], slo_tpot_p99_ms: [5, 25, 60]}
"""


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from kvopt.study.run import run_study
    from kvopt.study.spec import load_study
    from tests.ops.browser import driver, fill, serve, wait

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "study.yaml").write_text(STUDY)
        run_study(load_study(root / "study.yaml"), root / "capacity-sweep", progress=False)
        with serve(root) as url, driver(1400, 1250) as d:
            d.get(f"{url}/estimate")
            fill(d, "#estimate-form", {"model": "Llama-3.1-70B", "gpu": "H100-SXM", "tp": "4",
                                       "weights": "fp8", "load_value": "8"})
            wait(d, lambda d: "Llama-3.1-70B" in d.find_element(
                By.ID, "estimate-json").get_attribute("textContent"))
            time.sleep(0.5)
            d.save_screenshot(str(OUT / "ui_estimate.png"))

            d.get(f"{url}/plan")
            fill(d, "#plan-form", {"gpus": "H100-SXM,A100-SXM-80GB,L40S,L4",
                                   "kv_offload_gib": "32"})
            d.find_element(By.ID, "plan-run").click()
            wait(d, lambda d: d.find_element(By.ID, "plan-json").get_attribute("textContent"))
            time.sleep(0.5)
            d.save_screenshot(str(OUT / "ui_plan.png"))
            d.find_element(By.ID, "compare-run").click()
            wait(d, lambda d: d.find_element(By.ID, "compare-json").get_attribute(
                "textContent"), timeout=300)
            time.sleep(0.5)
            d.save_screenshot(str(OUT / "ui_compare.png"))

            d.get(f"{url}/pareto")
            fill(d, "#pareto-form", {"rps": "5", "slo_ttft_p99_ms": "1000",
                                     "slo_tpot_p99_ms": "60", "pop": "40", "gens": "20"})
            d.find_element(By.ID, "pareto-run").click()
            wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#pareto-chart .point"),
                 timeout=300)
            point = d.find_elements(By.CSS_SELECTOR, "#pareto-chart .scatterlayer .point")[3]
            ActionChains(d).move_to_element(point).click().perform()
            wait(d, lambda d: d.find_elements(By.ID, "pareto-point-title"))
            d.execute_script("document.querySelector('.axes').scrollIntoView()")
            time.sleep(0.5)
            d.save_screenshot(str(OUT / "ui_pareto.png"))

            d.get(f"{url}/studies")
            wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#study-list li[data-path]"))
            d.find_element(By.CSS_SELECTOR, "#study-list li[data-path]").click()
            wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#study-table tbody tr"))
            time.sleep(0.5)
            d.save_screenshot(str(OUT / "ui_studies.png"))
    from kvopt import api
    from kvopt.pareto import export

    res = api.pareto(model="Llama-3.1-8B", rps=5, input_len=1024, output_len=256,
                     slo_ttft_p99_ms=1000, slo_tpot_p99_ms=60, pop=40, gens=20)
    data = export.rows(res.front, res.table, res.objectives, res.norm)
    export.write_png(data, res.objectives, OUT / "pareto_front.png", title=export.front_title(
        "Llama-3.1-8B", 5, {"slo_ttft_p99_ms": 1000, "slo_tpot_p99_ms": 60}))
    print("wrote", ", ".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    main()
