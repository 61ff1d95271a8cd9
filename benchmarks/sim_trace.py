"""Where the analytic tails come from: a step-level trace of the simulator against the
analytic model's draws, for one configuration at one load.

Every simulated step is recorded (decoders, prompt tokens, duration; no fast-forwarding),
so for each request the trace gives the life-average of the decoders beside it and of the
prompt tokens prefilled per step, and its TTFT split into the wait for admission and the
prefill phase. The analytic side prints its draws of the same quantities. Run:
``python benchmarks/sim_trace.py [--case 8b|70b|mistral|qwen3] [--load 0.8] [--requests 12000]``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import numpy.typing as npt

from kvopt.serving.lengths import parse_dist
from kvopt.serving.load import Load
from kvopt.serving.replica import build_replica
from kvopt.serving.serve import steady_model, step_cost_for
from kvopt.serving.sim import simulate

CASES = {
    "8b": (dict(model="Llama-3.1-8B", gpu="H100-SXM"), "lognormal:mean=800,sigma=0.6",
           "lognormal:mean=200,sigma=0.5"),
    "70b": (dict(model="Llama-3.1-70B", gpu="H100-SXM", tp=4, engine="trtllm"),
            "lognormal:mean=1000,sigma=0.4", "fixed:200"),
    "mistral": (dict(model="Mistral-7B", gpu="A100-SXM-80GB", engine="sglang"), "fixed:1024",
                "lognormal:mean=300,sigma=0.4"),
    "qwen3": (dict(model="Qwen3-30B-A3B", gpu="H100-SXM"), "uniform:low=200,high=1500",
              "fixed:256"),
}


def _q(x: npt.NDArray[np.float64]) -> str:
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return f"mean {x.mean():8.2f} sd {x.std():7.2f} p50 {p50:8.2f} p90 {p90:8.2f} p99 {p99:8.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), default="8b")
    ap.add_argument("--load", type=float, default=0.8, help="fraction of the capacity")
    ap.add_argument("--requests", type=int, default=12000)
    args = ap.parse_args(argv)
    kw, i_spec, o_spec = CASES[args.case]
    rep = build_replica(**kw)  # type: ignore[arg-type]
    inp, out = parse_dist(i_spec), parse_dist(o_spec)
    sc = step_cost_for(rep)
    model = steady_model(rep, inp, out)
    lam = model.capacity()[0] * args.load
    steps: list[tuple[int, float, float]] = []

    class Trace:  # prices like the step-cost model and records every step
        overhead_s = sc.overhead_s

        def step_s(self, **k: npt.NDArray[np.float64]) -> float:
            dt = sc.step_s(**k)  # type: ignore[arg-type]
            steps.append((len(k["decode_contexts"]), float(np.sum(k["prefill_new"])), dt))
            return dt

    r = simulate(rep, load=Load(mode="rps", value=lam), input_dist=inp, output_dist=out,
                 num_requests=args.requests, step_cost=Trace(),  # type: ignore[arg-type]
                 fast_forward=False)
    a = np.array(steps)
    nd, pf, dt = a[:, 0], a[:, 1], a[:, 2]
    ends = np.cumsum(dt)
    sel = np.arange(args.requests // 10, args.requests)  # skip the warm-up
    sel = sel[r.output_len[sel] > 1]
    lo = np.searchsorted(ends, r.first_token_s[sel], side="right")
    hi = np.searchsorted(ends, r.finish_s[sel], side="right")
    keep = hi > lo  # decode steps recorded (a run's last request may end on its first)
    sel, lo, hi = sel[keep], lo[keep], hi[keep]
    life = hi - lo

    def life_mean(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        c = np.concatenate([[0.0], np.cumsum(x)])
        return np.asarray((c[hi] - c[lo]) / life)

    tpot = (r.finish_s[sel] - r.first_token_s[sel]) / (r.output_len[sel] - 1)
    ttft = r.first_token_s[sel] - r.arrival_s[sel]
    admit = r.first_scheduled_s[sel] - r.arrival_s[sel]
    w = dt / dt.sum()
    mean_nd = float((nd * w).sum())
    print(f"{args.case} at {args.load:g} of capacity ({lam:.3f} req/s), {args.requests} "
          f"requests, {a.shape[0]} steps, {r.preemptions} preemptions")
    print(f"sim: decoders per step, time-weighted: mean {mean_nd:.2f}, var/mean "
          f"{float(((nd - mean_nd) ** 2 * w).sum()) / mean_nd:.2f}")
    print(f"sim: life decoders        {_q(life_mean(nd))}")
    print(f"sim: life prompt tok/step {_q(life_mean(pf))}")
    print(f"sim: TPOT ms              {_q(tpot * 1e3)}")
    print(f"sim: TTFT ms              {_q(ttft * 1e3)}")
    print(f"sim: admission wait ms    {_q(admit * 1e3)}")
    print(f"sim: prefill phase ms     {_q((ttft - admit) * 1e3)}")
    print(f"sim: corr(TPOT, life decoders) {np.corrcoef(life_mean(nd), tpot)[0, 1]:.2f}, "
          f"corr(TPOT, life prompt tokens) {np.corrcoef(life_mean(pf), tpot)[0, 1]:.2f}")
    lams = np.array([lam])
    t = model.step_times(lams)
    rows = model.rows(lams, t)
    slot = model.slot_wait(rows)
    print(f"analytic: step {t[0] * 1e3:.2f} ms, decoders n = {lam * model.dec_steps * t[0]:.2f}, "
          f"elasticity {model.elasticity(lams)[0]:.3f}")
    print(f"analytic: TPOT ms         {_q(rows.tpot[0] * 1e3)}")
    print(f"analytic: TTFT ms         {_q((rows.ttft_core + rows.budget_wait + slot)[0] * 1e3)}")
    print(f"analytic: budget wait ms  {_q(rows.budget_wait[0] * 1e3)}")
    print(f"analytic: slot wait ms    {_q(slot[0] * 1e3)}")
    print(f"analytic: TTFT core ms    {_q(rows.ttft_core[0] * 1e3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
