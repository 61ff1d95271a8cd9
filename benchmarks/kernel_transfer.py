"""Leave one GPU out: how well kvopt's transfer rules predict a measured GPU's kernels.

For each GPU with aiconfigurator tables, its curves are predicted as if it had none: a GPU
whose family has other measured members takes the family refitted without it (the same-die /
same-architecture rule, e.g. H200 from H100 SXM, GB200 from B200 and B300); a family's only
member takes the family its architecture rules or the default name next (A100, L40S -> the
default hopper; RTX PRO 6000 -> datacenter blackwell). The median / p90 absolute % error on
the left-out GPU's rows is printed beside its error under the shipped fit (which saw it).

Needs the aiconfigurator package (like fit_efficiency.py); ~2 minutes on 2 cores.
Run: ``python benchmarks/kernel_transfer.py [--gpus H200,B300] [--markdown]``.
The same check on a small shipped sample without aiconfigurator:
``tests/physics/test_efficiency_fit.py::test_leaving_h200_out_predicts_its_decode_gemms``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aic_tables as aic
import efficiency_file
import fit_efficiency as fe

SECTIONS = ("gemm", "attention", "mla", "moe", "elementwise")


def fallback_family(family: str, gpu: str) -> str:
    """The family the transfer rules give ``gpu`` when ``family`` has no measurements."""
    card = aic.load_gpu(gpu)
    for rule in efficiency_file.ARCHITECTURE:
        if (rule["architecture"] == card.architecture and rule["use"] != family
                and card.form_factor in rule.get("form_factors", (card.form_factor,))):
            return str(rule["use"])
    return efficiency_file.DEFAULT_FAMILY


def leave_out(system: str, shipped: dict[str, Any],
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Rows of (curve, own error, transferred error) for the GPU of ``system``."""
    family = next(f for f, m in aic.FAMILIES.items() if system in m)
    gpu = aic.SYSTEMS[system]
    others = tuple(s for s in aic.FAMILIES[family] if s != system)
    source = family if others else fallback_family(family, gpu)
    out = []
    for engine in aic.ENGINES:
        for fn in (fe.fit_gemm, fe.fit_attention, fe.fit_moe, fe.fit_elementwise):
            mine = {f.path: f for f in fn(family, engine, (system,))}
            if others:
                without = {f.path: f.params for f in fn(family, engine, others)}
            else:
                without = {}
                for path in mine:
                    node = efficiency_file.curve_node(shipped, (source, *path[1:]))
                    if node is not None:
                        without[path] = {k: float(node[k]) for k in mine[path].params}
            for path, f in mine.items():
                if path not in without:
                    continue
                own = efficiency_file.curve_node(shipped, path)
                pred = f.predict(without[path])
                med, p90 = aic.ape(pred, f.measured)
                own_med, own_p90 = (own or {}).get("per_gpu", {}).get(gpu, [np.nan, np.nan])
                row = {"gpu": gpu, "from": source if not others else
                       "+".join(aic.SYSTEMS[s] for s in others), "engine": engine,
                       "section": path[2], "curve": path[3], "rows": len(f.measured),
                       "own_med": own_med, "own_p90": own_p90, "med": med, "p90": p90}
                out.append(row)
                log(f"{gpu:14s} <- {row['from']:22s} {engine:7s} {path[2]:9s} {path[3]:18s} "
                    f"own {own_med:6.1f}/{own_p90:6.1f}  transferred {med:6.1f}/{p90:6.1f}")
    return out


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """Median over curves of the median errors, per GPU x section."""
    lines = ["| GPU | from | section | curves | own median % | transferred median % |",
             "|---|---|---|---|---|---|"]
    for gpu in dict.fromkeys(r["gpu"] for r in rows):
        for section in SECTIONS:
            sel = [r for r in rows if r["gpu"] == gpu and r["section"] == section]
            if sel:
                lines.append(f"| {gpu} | {sel[0]['from']} | {section} | {len(sel)} | "
                             f"{np.median([r['own_med'] for r in sel]):.1f} | "
                             f"{np.median([r['med'] for r in sel]):.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpus", default=",".join(aic.SYSTEMS.values()),
                    help="kvopt GPU ids to leave out, one at a time")
    ap.add_argument("--markdown", action="store_true", help="only the summary table")
    a = ap.parse_args(argv)
    shipped = yaml.safe_load(fe.OUT.read_text())
    by_gpu = {v: k for k, v in aic.SYSTEMS.items()}
    log = (lambda s: None) if a.markdown else (lambda s: print(s, flush=True))
    rows: list[dict[str, Any]] = []
    for gpu in a.gpus.split(","):
        rows += leave_out(by_gpu[gpu], shipped, log)
    print("\n".join(summary(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
