"""Planning speed (issue 23): whole `kvopt` processes, this tree against a baseline commit
and against AIConfigurator, run side by side.

Each figure is a command run as a fresh process (cold: nothing cached in memory; both trees
byte-compiled first, as an installed package is), ``--runs`` times, the trees alternating
(and AIConfigurator in the same rotation), so that load from other work on this shared
machine falls on all of them alike. Printed: the median wall time and the median user+sys
CPU time of each, and their ratios. The plan commands' JSON (fleet, totals, SLO
sensitivity lines) and the fronts are compared between the trees: the same plans.

Run: ``python benchmarks/plan_speed.py [--runs 5] [--base PATH] [--only NAME]``. ``--base``
is a checkout of the baseline (default: a worktree of :data:`BASE_COMMIT` at
``/tmp/speed-base-<commit>``, added with ``git worktree add`` when missing).
AIConfigurator 0.12.0 is looked for in ``--aic`` (default
``/work/aic/venv/bin/aiconfigurator``); without it its ratio is not printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE_COMMIT = "87bb45b"  # main before the speed work merged (same physics: the plans must match)
AIC = "/work/aic/venv/bin/aiconfigurator"
ALL = ["--gpus", "all", "--input-len", "1024", "--output-len", "256", "--rps", "20"]
QWEN = ["plan", "--model", "Qwen3-32B", "--gpus", "H200", "--engine", "trtllm",
        "--input-len", "4000", "--output-len", "1000", "--rps", "8",
        "--slo-ttft-p99-ms", "600", "--slo-tpot-p99-ms", "50"]
PARETO = ["pareto", "--model", "Llama-3.1-8B", "--rps", "20", "--input-len", "1000",
          "--output-len", "200", "--gpus", "H100-SXM,L40S", "--objectives", "cost,tpot_p99",
          "--slo-tpot-p99-ms", "60", "--out", "{tmp}/front.csv", "--html", "{tmp}/front.html"]


@dataclass(frozen=True)
class Figure:
    name: str
    args: list[str]
    target_s: float | None
    compare: str = ""  # "plan" (JSON) or "front" (CSV): checked to be the same in both trees
    aic: bool = False  # also AIConfigurator's `cli default` for the same question


FIGURES = [
    Figure("plan Llama-3.1-8B all GPUs --no-explain",
           ["plan", "--model", "Llama-3.1-8B", *ALL, "--no-explain", "--json"], 1.0, "plan"),
    Figure("plan Llama-3.1-70B all GPUs --no-explain",
           ["plan", "--model", "Llama-3.1-70B", *ALL, "--no-explain", "--json"], 1.0, "plan"),
    Figure("plan Llama-3.1-70B all GPUs, TTFT 1000 / TPOT 50 ms, SLO sensitivity lines",
           ["plan", "--model", "Llama-3.1-70B", *ALL, "--slo-ttft-p99-ms", "1000",
            "--slo-tpot-p99-ms", "50", "--json"], 2.0, "plan"),
    Figure("plan Qwen3-32B H200 TRT-LLM 4000/1000, TTFT 600 / TPOT 50 ms, 8 req/s",
           [*QWEN, "--json"], None, "plan", aic=True),
    Figure("pareto README example (NSGA-II, CSV + HTML)", PARETO, 3.0, "front"),
    Figure("pareto README example --method exact", [*PARETO, "--method", "exact"], 1.0,
           "front"),
    Figure("kvopt --help", ["--help"], 0.3),
]
AIC_ARGS = ["cli", "default", "--model-path", "Qwen/Qwen3-32B", "--total-gpus", "8",
            "--system", "h200_sxm", "--backend", "trtllm", "--isl", "4000", "--osl", "1000",
            "--ttft", "600", "--tpot", "50"]


def _run(cmd: list[str], env: dict[str, str], out: Path | None, cwd: Path
         ) -> tuple[float, float]:
    """(wall s, user+sys CPU s) of one child process (run in ``cwd``: ``python -c`` puts
    the working directory first on the import path)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(out or os.devnull, "w") as sink:
        subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.DEVNULL, check=True,
                       cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _kvopt(tree: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    code = ("import sys, kvopt; from kvopt.cli.main import main; "
            f"assert kvopt.__file__.startswith({str(tree)!r}), kvopt.__file__; "
            "sys.argv[0] = 'kvopt'; sys.exit(main())")
    return [sys.executable, "-c", code, *args], env


def _same_plan(a: Path, b: Path) -> bool:
    def key(p: Path) -> dict[str, object]:
        d = json.loads(p.read_text())
        return {k: d[k] for k in ("fleet", "totals", "slo_marginal_cost")}
    return _close(key(a), key(b))


def _same_front(a: Path, b: Path) -> bool:
    def rows(p: Path) -> list[dict[str, str]]:
        with open(p, newline="") as f:
            return list(csv.DictReader(f))
    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return False
    return all(_close(x, y) for x, y in zip(ra, rb, strict=True))


def _close(x: object, y: object) -> bool:
    """Equal, numbers to 1e-9 relative (the special functions moved off scipy differ from
    it in the last digits)."""
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_close(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, bool) or isinstance(y, bool) or x is None or y is None:
        return x == y
    try:
        fx, fy = float(x), float(y)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return x == y
    return fx == fy or (math.isfinite(fx) and abs(fx - fy) <= 1e-9 * max(abs(fx), abs(fy)))


def _base(path: str | None) -> Path:
    base = Path(path or f"/tmp/speed-base-{BASE_COMMIT}")
    if not (base / "kvopt").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        BASE_COMMIT], check=True, capture_output=True)
    return base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--base", help="checkout of the baseline (default: worktree of "
                                   f"{BASE_COMMIT} at /tmp/speed-base-{BASE_COMMIT})")
    ap.add_argument("--aic", default=AIC)
    ap.add_argument("--only", help="run the figures whose name contains this")
    a = ap.parse_args()
    base = _base(a.base)
    trees = {"this tree": ROOT, f"main@{BASE_COMMIT}": base}
    for tree in trees.values():  # byte-compile, as an installed package is
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "kvopt")],
                       check=True, capture_output=True)
    aic = Path(a.aic) if Path(a.aic).is_file() else None
    print(f"{a.runs} runs each, alternating; median wall s (median user+sys CPU s)")
    for fig in FIGURES:
        if a.only and a.only not in fig.name:
            continue
        times: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
        if fig.aic and aic is not None:
            times["AIConfigurator cli default"] = []
        same = True
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(a.runs):
                outs = {}
                for label, tree in trees.items():
                    work = Path(tmp) / label.replace(" ", "_").replace("@", "_")
                    work.mkdir(exist_ok=True)
                    args = [x.format(tmp=work) for x in fig.args]
                    cmd, env = _kvopt(tree, args)
                    out = work / "out.json" if fig.compare == "plan" else None
                    times[label].append(_run(cmd, env, out, work))
                    outs[label] = work / ("out.json" if fig.compare == "plan" else "front.csv")
                if fig.aic and aic is not None:
                    env = dict(os.environ)
                    times["AIConfigurator cli default"].append(
                        _run([str(aic), *AIC_ARGS], env, None, Path(tmp)))
                if i == 0 and fig.compare:
                    new, old = outs.values()
                    same = (_same_plan(new, old) if fig.compare == "plan"
                            else _same_front(new, old))
        med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for k, v in times.items()}
        new_w, new_c = med["this tree"]
        print(f"\n{fig.name}")
        for label, (w, c) in med.items():
            ratio = "" if label == "this tree" else (
                f"  this tree / it: wall {new_w / w:.2f}, CPU {new_c / c:.2f}")
            print(f"  {label:28s} {w:6.2f} s ({c:5.2f} s CPU){ratio}")
        if fig.target_s is not None:
            print(f"  target <= {fig.target_s:g} s: wall ratio {new_w / fig.target_s:.2f} "
                  f"({'met' if new_w <= fig.target_s else 'not met'}), CPU ratio "
                  f"{new_c / fig.target_s:.2f}")
        if fig.compare:
            print(f"  same {'plan' if fig.compare == 'plan' else 'front'} as the baseline: "
                  f"{'yes' if same else 'NO'}")
        if fig.aic and aic is None:
            print(f"  AIConfigurator not found at {a.aic}: no ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
