"""Scripted fleet-sizing studies: scenarios swept from a base, solved in-process, on local
processes or on Dask, stored by content hash so a re-run skips finished work.

    from kvopt.study import Study, load_results
    study = Study(solve="plan", base={"model": "Llama-3.1-8B", "input_len": 1024,
                                      "output_len": 256, "gpus": ["H100-SXM", "L40S"]},
                  axes={"rps": [5, 10, 20], "slo_tpot_p99_ms": [30, 60]})
    df = study.run("out/study", workers=2)     # a pandas DataFrame, one row per scenario

The study file and every scenario key, per solve, with its default: ``kvopt schema study``
(kvopt/schemas/study.schema.json); the CLI: ``kvopt study --help``.
"""

from kvopt.study.run import RunSummary, run_study
from kvopt.study.scenarios import Scenario, make_scenarios, scenario_key
from kvopt.study.spec import Study, load_study
from kvopt.study.store import Store, export, load_arrow, load_results

__all__ = [
    "RunSummary",
    "Scenario",
    "Store",
    "Study",
    "export",
    "load_arrow",
    "load_results",
    "load_study",
    "make_scenarios",
    "run_study",
    "scenario_key",
]
