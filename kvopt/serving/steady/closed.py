"""Closed loops of C clients with no think time (how benchmark clients at a fixed
concurrency drive a server): ``lambda = C / E2E``. Fixed-output requests move in cohorts
(prefilled together, they finish together; a cohort sheds the clients whose prompts overflow
the budget); others are desynchronized."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.serving.steady.base import MAX_STEP_S
from kvopt.serving.steady.draws import stats
from kvopt.serving.steady.state import SteadyState
from kvopt.serving.steady.tails import Tails

Array = npt.NDArray[np.float64]


class ClosedLoop(Tails):
    """Closed-loop operating points and metrics, and the capacity (the closed loop with
    every slot busy bounds it)."""

    def capacity(self) -> tuple[float, str]:
        """Highest Poisson rate the replica sustains, and what binds it (cached): the least
        of the rate where step times diverge, where sequences in flight fill the slots
        (max_num_seqs or KV cache) and where prompt tokens fill the token budget."""
        if self._cap is None:
            self._cap = self._capacity_from(
                self._closed_point(self.full_run)[0] if self.slots >= 1 else None)
        return self._cap

    @property
    def full_run(self) -> float:
        """Sequences running when every slot is busy."""
        return max(1.0, math.floor(self.slots))

    def _capacity_from(self, slot_rate: float | None) -> tuple[float, str]:
        """The capacity given the closed-loop rate with every slot busy (None: no slot)."""
        lam_div, _, _ = self.step_curve()
        limits = [(lam_div, "step time (compute/memory)")]
        # all slots busy: the closed-loop rate at full occupancy (a Poisson stream can
        # only do worse, it also queues)
        if slot_rate is not None:
            limits.append((slot_rate, self.limit_slots))
        if lam_div > 0 and self._budget_excess(lam_div * (1 - 1e-9)) >= 0:
            limits.append((self._budget_root(lam_div), "token budget"))
        return min(limits, key=lambda v: v[0])


    def _closed_point(self, run: float, cohorts: bool = False) -> tuple[float, float]:
        """(request rate, step time) of a closed loop keeping ``run`` sequences busy."""
        lam, t = self.closed_points(np.array([run], dtype=np.float64), cohorts=cohorts)
        return float(lam[0]), float(t[0])

    def closed_points(self, runs: Array, cohorts: bool = False) -> tuple[Array, Array]:
        """(request rates, step times) of closed loops keeping ``runs`` sequences busy:
        lambda = C / E2E, with the others decoding = (C - 1) x the decode share of E2E.
        Solved as a fixed point in the step time t on vectorized grids, all loops at once
        (they share everything but C: the max-batch levels of one replica). ``cohorts``:
        the clients move in cohorts (:meth:`cohort_size`), each prefilled in one step
        beside the others' decodes; otherwise they are desynchronized."""
        dec = self.dec_steps
        run = np.asarray(runs, dtype=np.float64)[:, None]
        others_max = np.maximum(run - 1.0, 0.0)
        req = self.req_s  # each client's cycle: request overhead + TTFT + decode
        if cohorts:  # each cohort's prefill step, beside the other cohorts' decodes
            cohort_ttft = np.zeros_like(run)
            for r, c in enumerate(run[:, 0]):
                for g, share in self.cohort_mix(float(c)):
                    cohort_ttft[r] += share * float(self.prefill_done(
                        float(c) - g, min(g * self.i_new, self.budget)))

        def excess(t: Array, sel: slice | npt.NDArray[np.intp] = slice(None),
                   ttft0: Array | None = None) -> tuple[Array, Array, Array]:
            """(step seen - t, rate, TTFT) at step times ``t`` for the loops ``sel``; the
            TTFT-rate loop starts from ``ttft0`` when given (a nearby step time's)."""
            c, o_max = run[sel], others_max[sel]
            ttft = (np.broadcast_to(cohort_ttft[sel], t.shape) if cohorts
                    else t if ttft0 is None else ttft0)
            if cohorts and self.admits_late:  # and the wait for the scheduler to take it in
                ttft = ttft + np.stack([self.admit_wait(0.0, t[i], closed=True, clients=float(
                    c[i, 0]), cohorts=True) for i in range(c.shape[0])])
            lam = c / (ttft + dec * t + req)
            if not cohorts:
                for _ in range(4 if ttft0 is None else 2):
                    # a closed-loop request arrives at a step end and is prefilled in the
                    # next step with the others that finished in this one (lam t of them),
                    # once the scheduler polls (:meth:`admit_wait`)
                    ttft = self.prefill_done(o_max * dec * t / (dec * t + ttft + req),
                                      np.minimum(self.i_new * (1.0 + lam * t), self.budget))
                    if self.admits_late:
                        ttft = ttft + self.admit_wait(lam, t, closed=True, clients=c)
                    lam = c / (ttft + dec * t + req)
            others = o_max * dec * t / (ttft + dec * t + req)
            return self.step_seen(lam, t, others) - t, lam, np.asarray(ttft)

        n = run.shape[0]
        rows = np.arange(n)
        base = float(self.step(1.0, 0.0))
        # a geometric grid brackets the first step time the loop keeps up with, then
        # regula falsi (Illinois) on log(step seen / t) in log t, all loops at once
        grid = np.tile(np.geomspace(base * 0.25, MAX_STEP_S, 16), (n, 1))
        h, lam, ttft = excess(grid)
        neg = h <= 0
        i = np.argmax(neg, axis=1)
        out_t = grid[rows, i]  # exact at the grid's first point, or its last if never
        out_lam = lam[rows, np.where(neg.any(axis=1), i, -1)]
        todo = neg.any(axis=1) & (i > 0)
        warm = np.broadcast_to(ttft, grid.shape)[rows, i].copy()  # TTFT near the root
        a, b = np.log(grid[rows, np.maximum(i - 1, 0)]), np.log(out_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            fa = np.log1p(h[rows, np.maximum(i - 1, 0)] / grid[rows, np.maximum(i - 1, 0)])
            fb = np.log1p(np.maximum(h[rows, i] / out_t, -1.0 + 1e-300))
        side = np.zeros(n)
        for _ in range(40):
            if not todo.any():
                break
            k = np.nonzero(todo)[0]
            denom = fb[k] - fa[k]
            c = np.where(denom < 0, b[k] - fb[k] * (b[k] - a[k]) / np.where(denom < 0, denom,
                                                                          -1.0),
                         (a[k] + b[k]) / 2)
            tc = np.exp(c)
            hc, lc, tt = excess(tc[:, None], k, warm[k, None])
            warm[k] = tt[:, 0]
            fc = np.log1p(np.maximum(hc[:, 0] / tc, -1.0 + 1e-300))
            move_b = fc <= 0
            fa[k] = np.where(move_b & (side[k] == -1), fa[k] / 2, np.where(move_b, fa[k], fc))
            fb[k] = np.where(~move_b & (side[k] == 1), fb[k] / 2, np.where(move_b, fc, fb[k]))
            a[k] = np.where(move_b, a[k], c)
            b[k] = np.where(move_b, c, b[k])
            side[k] = np.where(move_b, -1.0, 1.0)
            out_t[k], out_lam[k] = tc, lc[:, 0]
            todo[k[(np.abs(fc) < 1e-6) | (b[k] - a[k] < 1e-6)]] = False
        return out_lam, out_t

    def closed(self, clients: int, mode: str = "concurrency", value: float | None = None,
               slots: float | None = None, cohorts: bool | None = None) -> SteadyState:
        """Closed loop of ``clients`` with no think time: requests with a fixed output
        length move in cohorts (:meth:`cohort_mix`), others are desynchronized. Where the
        cohorts merge into one (:attr:`_one_cohort`): :meth:`synchronized`."""
        cap, limit = self.capacity()
        run = self._running(clients, slots)
        if cohorts is None:
            cohorts = self._cohorts()
        if cohorts and self._one_cohort:
            return self.synchronized(clients, run).state(
                self, mode, float(value if value is not None else clients), cap, limit)
        lam, t = self._closed_point(run, cohorts=cohorts)
        queue = max(0.0, clients - run) / lam if lam > 0 else 0.0
        return self._metrics(mode, float(value if value is not None else clients), lam, t, cap,
                             limit, closed=True, extra_wait=queue, running=run,
                             cohorts=cohorts)

    def closed_draws(self, clients: int) -> ClosedDraws:
        """Per-request draws of the closed loop :meth:`closed` describes."""
        run = self._running(clients, None)
        cohorts = self._cohorts()
        if cohorts and self._one_cohort:
            return self.synchronized(clients, run)
        lam, t = self._closed_point(run, cohorts=cohorts)
        queue = max(0.0, clients - run) / lam if lam > 0 else 0.0
        rows = self.rows(np.array([lam]), np.array([t]), closed=True, running=run,
                         cohorts=cohorts)
        ttft = rows.ttft_core[0] + rows.budget_wait[0] + queue
        tpot = rows.tpot[0]
        return ClosedDraws(ttft=ttft, tpot=tpot, e2e=ttft + rows.out_tokens * tpot, lam=lam,
                           t=t, batch=lam * float(rows.e2e_core[0]),
                           queue=queue + float(np.mean(rows.resid[0])))

    def _running(self, clients: int, slots: float | None) -> float:
        return min(float(clients), slots if slots is not None else math.floor(self.slots))

    def _cohorts(self) -> bool:
        return self.out.is_fixed and (self.spec is None or not self.spec.k)

    @property
    def _one_cohort(self) -> bool:
        """Whether fixed-output cohorts merge into one: under a prefill-first scheduler
        (the decodes wait while any cohort's prompts run, so all finish together), and when
        the scheduler polls only every few passes (cohorts that come back within one poll
        window are taken in, prefilled and finished together; the simulator shows them
        merging within a few rounds)."""
        return self.prefill_first or self.admit_every > 1

    def synchronized(self, clients: int, run: float) -> ClosedDraws:
        """A closed loop whose clients move as one cohort (a prefill-first scheduler with
        fixed outputs): each cycle its ``run`` prompts are prefilled first come, first
        served in passes of the token budget (whole prompts when the engine does not
        chunk) while no one decodes, then all decode together. A prompt's TTFT is the end
        of its pass; until the last pass ends it waits (its decode stalls), then it decodes
        at ``run`` sequences a step; ``lambda = run / cycle``; clients beyond the slots wait
        for them."""
        c = max(int(run), 1)
        i = max(self.i_new, 1.0)
        if self.sc.replica.engine.chunked_prefill:
            ends_tok = i * np.arange(1, c + 1)
            passes = np.ceil(ends_tok / self.budget - 1e-12)
            total = float(ends_tok[-1])
            n_pass = int(passes[-1])
            sizes = np.full(n_pass, self.budget)
            sizes[-1] = total - (n_pass - 1) * self.budget
        else:
            per = max(int(self.budget // i), 1)
            passes = np.ceil(np.arange(1, c + 1) / per)
            n_pass = int(passes[-1])
            sizes = np.full(n_pass, per * i)
            sizes[-1] = (c - (n_pass - 1) * per) * i
        pass_end = np.cumsum(self.prefill_done(0.0, sizes))
        first = pass_end[passes.astype(np.intp) - 1]
        dec = float(self.step(float(c), 0.0))
        cycle = float(pass_end[-1]) + self.dec_steps * dec + self.req_s
        lam = c / cycle
        queue = max(0.0, clients - c) / lam
        ttft = first + self.req_s + queue
        e2e = pass_end[-1] + self.dec_steps * dec + self.req_s + queue
        tpot = (e2e - ttft) / max(self.o_mean - 1.0, 1.0)
        return ClosedDraws(ttft=ttft, tpot=tpot, e2e=np.full(ttft.size, e2e), lam=lam, t=dec,
                           batch=float(c), queue=queue)


@dataclass(frozen=True)
class ClosedDraws:
    """Per-request TTFT, TPOT and E2E draws (seconds) of a closed loop, and its operating
    point: the request rate, the step time, the sequences running and the mean wait before
    a request is first scheduled."""

    ttft: Array
    tpot: Array
    e2e: Array
    lam: float
    t: float
    batch: float
    queue: float

    def state(self, m: ClosedLoop, mode: str, value: float, cap: float, limit: str
              ) -> SteadyState:
        e2e = stats(self.e2e)
        return SteadyState(
            mode=mode, value=value, saturated=False, capacity_rps=cap,
            throughput_rps=self.lam, output_tok_s=self.lam * m.o_mean,
            total_tok_s=self.lam * (m.i_mean + m.o_mean), steady_state_batch=self.batch,
            utilization=min(1.0, self.lam / cap) if cap > 0 else 1.0, queue_s=self.queue,
            ttft_s=stats(self.ttft),
            tpot_s=stats(self.tpot), e2e_mean_s=e2e[0], e2e_p99_s=e2e[3], e2e_s=e2e,
            limit=limit)
