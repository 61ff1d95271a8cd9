"""The analytic steady state of continuous batching under a load (no simulation): one
replica and length mix under Poisson arrivals, a closed loop or an offline run.

TTFT = residual of the running step (if busy) + the step that prefills the prompt (more
steps when the prompt exceeds the free token budget) + queueing for a free sequence slot
(M/G/c over ``min(max_num_seqs, KV capacity)`` slots: Erlang C with the Allen-Cunneen wait)
or for token budget (M/D/1). TPOT from the step-time fixed point, per request from its
correlated steps. The pieces: :mod:`.base` (parameters and the engine step),
:mod:`.fixed_point`, :mod:`.ttft`, :mod:`.tails`, :mod:`.closed`, :mod:`.offline`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kvopt.serving.load import Load
from kvopt.serving.steady.draws import mixed_stats, p99_rows, stats
from kvopt.serving.steady.offline import Offline
from kvopt.serving.steady.state import SteadyState

Array = npt.NDArray[np.float64]


class SteadyModel(Offline):
    """Steady-state solver for one replica, one length mix."""

    def poisson_p99_ms(self, lam: Array) -> tuple[Array, Array]:
        """(TTFT p99, TPOT p99) in ms at many Poisson rates below capacity, as
        :meth:`poisson` gives them one by one (inf TTFT where the queue never drains)."""
        cap, _ = self.capacity()
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        if lam.size and not lam.max() < cap:
            raise ValueError("poisson_p99_ms takes rates below capacity")
        rows = self.rows(lam, self.step_times(lam))
        ttft = rows.ttft_core + rows.budget_wait + self.slot_wait(rows)
        tpot = p99_rows(rows.tpot)
        full = ~np.isfinite(ttft).all(axis=1)
        if full.any():  # saturated there: poisson() reports the TPOT at capacity
            tpot[full] = self.poisson(cap).tpot_s[3]
        return p99_rows(ttft) * 1e3, tpot * 1e3

    def benchmark(self, clients: int, rounds: int) -> SteadyState:
        """A benchmark run at a fixed concurrency, as aiperf, genai-perf and ``vllm bench
        serve --max-concurrency`` drive a server: ``clients`` start together and each sends
        ``rounds`` requests back to back; the statistics are over all of them. The first
        round is a burst (all prompts at once: :meth:`run_draws` of ``clients`` requests),
        the others the closed loop's steady state (:meth:`closed_draws`), weighted 1 and
        ``rounds - 1``; rates and the running batch are the steady state's."""
        cap, limit = self.capacity()
        slots = max(1.0, math.floor(min(float(self.max_seqs), self.kv_seqs)))
        if not self.prefill_first and clients <= slots:
            return self._benchmark_run(clients, rounds, cap, limit)
        burst = self.run_draws(clients, int(min(clients, slots)))
        w = 1.0 / rounds
        if rounds == 1:
            parts = [(burst.ttft, burst.tpot, burst.e2e, 1.0)]
            lam = clients / float(burst.e2e.max())
            batch, queue = float(min(clients, slots)), float(np.mean(burst.start))
        else:
            d = self.closed_draws(clients)
            parts = [(burst.ttft, burst.tpot, burst.e2e, w), (d.ttft, d.tpot, d.e2e, 1.0 - w)]
            lam, batch = d.lam, d.batch
            queue = w * float(np.mean(burst.start)) + (1.0 - w) * d.queue
        e2e = mixed_stats([(p[2], p[3]) for p in parts])
        return SteadyState(
            mode="concurrency", value=float(clients), saturated=False, capacity_rps=cap,
            throughput_rps=lam, output_tok_s=lam * self.o_mean,
            total_tok_s=lam * (self.i_mean + self.o_mean), steady_state_batch=batch,
            utilization=min(1.0, lam / cap) if cap > 0 else 1.0, queue_s=queue,
            ttft_s=mixed_stats([(p[0], p[3]) for p in parts]),
            tpot_s=mixed_stats([(p[1], p[3]) for p in parts]), e2e_mean_s=e2e[0],
            e2e_p99_s=e2e[3], e2e_s=e2e, limit=limit)

    def _benchmark_run(self, clients: int, rounds: int, cap: float, limit: str
                       ) -> SteadyState:
        """A benchmark run whose clients all hold a slot: the step recurrence of
        :meth:`run_draws` over all ``clients x rounds`` requests, a request sent (and
        admitted) when the client's previous one ends, so the burst and the rounds that
        settle after it are both in it; times from each request's send (its slot comes free
        then; the scheduler may take it in later: :mod:`kvopt.serving.admission`)."""
        n = clients * rounds
        d = self.run_draws(n, clients, resend=True)
        ttft, e2e = d.ttft - d.sent, d.e2e - d.sent
        makespan = float(d.e2e.max())
        e2e_s = stats(e2e)
        return SteadyState(
            mode="concurrency", value=float(clients), saturated=False, capacity_rps=cap,
            throughput_rps=n / makespan, output_tok_s=float(d.o_len.sum()) / makespan,
            total_tok_s=float(d.o_len.sum() + d.i_len.sum()) / makespan,
            steady_state_batch=float(np.sum(d.e2e - self.req_s - d.start) / makespan),
            utilization=min(1.0, n / makespan / cap) if cap > 0 else 1.0, queue_s=0.0,
            ttft_s=stats(ttft), tpot_s=stats(d.tpot), e2e_mean_s=e2e_s[0],
            e2e_p99_s=e2e_s[3], e2e_s=e2e_s, limit=limit)

    # -- loads --------------------------------------------------------------------------------
    def _step_at(self, lam: float) -> float:
        """Step time at rate ``lam`` below capacity: log-log interpolation on the shared
        curve (exact at its 96 points, smooth and monotone between them)."""
        return self._t_interp(lam)

    def poisson(self, lam: float) -> SteadyState:
        cap, limit = self.capacity()
        if lam >= cap:
            return self._saturated("rps", lam, cap, limit)
        t = self._step_at(lam)
        st = self._metrics("rps", lam, lam, t, cap, limit, closed=False)
        if not math.isfinite(st.ttft_s[0]):  # slots always full: the queue grows
            return self._saturated("rps", lam, cap, limit)
        return st

    def _saturated(self, mode: str, value: float, cap: float, limit: str) -> SteadyState:
        inf = (math.inf,) * 4
        at_cap = None
        if cap > 0:  # the operating point at capacity (its queue may not drain)
            lam = cap * 0.999
            at_cap = self._metrics(mode, lam, lam, self._step_at(lam), cap, limit,
                                   closed=False)
        return SteadyState(
            mode=mode, value=value, saturated=True, capacity_rps=cap, throughput_rps=cap,
            output_tok_s=cap * self.o_mean, total_tok_s=cap * (self.i_mean + self.o_mean),
            # the engine runs at most its slots; the rest of the offered load queues
            steady_state_batch=min(at_cap.steady_state_batch, self.slots) if at_cap else 0.0,
            utilization=1.0,
            queue_s=math.inf, ttft_s=inf, tpot_s=at_cap.tpot_s if at_cap else inf,
            e2e_mean_s=math.inf, limit=limit)


def capacities(models: list[SteadyModel]) -> list[tuple[float, str]]:
    """:meth:`SteadyModel.capacity` of models that differ only in ``max_num_seqs`` (the
    max-batch levels of one replica), their full-occupancy closed loops solved together."""
    todo = [m for m in models if m._cap is None and m.slots >= 1]
    if todo:
        if len({m._phys_key for m in todo}) > 1:
            raise ValueError("capacities() takes models that differ only in max_num_seqs")
        lam, _ = todo[0].closed_points(np.array([m.full_run for m in todo]))
        for m, rate in zip(todo, lam, strict=True):
            m._cap = m._capacity_from(float(rate))
    return [m.capacity() for m in models]


def p99_curves(models: list[SteadyModel], fractions: Array
               ) -> list[tuple[float, Array, Array]]:
    """Of models that differ only in ``max_num_seqs`` (a replica's max-batch levels): each
    one's capacity and its TTFT and TPOT p99 (ms) at ``fractions`` (< 1) of it, as
    :meth:`SteadyModel.capacity` and :meth:`SteadyModel.poisson_p99_ms` give them one by
    one — the capacities solved together (:func:`capacities`), levels with the same slots
    once, and every level's draws (and the TPOT at capacity that saturated rows report)
    in one :meth:`rows` call: the draws do not depend on the slots, row by row."""
    caps = capacities(models)
    by_slots: dict[tuple[float, str], int] = {}
    for i, m in enumerate(models):
        by_slots.setdefault((m.slots, m.limit_slots), i)
    live = [i for i in dict.fromkeys(by_slots.values()) if caps[i][0] > 0]
    empty = np.full(fractions.size, np.inf)
    found: dict[int, tuple[float, Array, Array]] = {
        i: (caps[i][0], empty, empty) for i in by_slots.values() if i not in live}
    if live:
        # per level: its rates, then 0.999 x its capacity (poisson(cap)'s operating point)
        lam = np.concatenate([np.append(caps[i][0] * fractions, caps[i][0] * 0.999)
                              for i in live])
        base = models[live[0]]
        rows = base.rows(lam, base.step_times(lam))
        width = fractions.size + 1
        for n, i in enumerate(live):
            m = models[i]
            part = rows.take(np.arange(n * width, n * width + fractions.size))
            ttft = part.ttft_core + part.budget_wait + m.slot_wait(part)
            tpot = p99_rows(part.tpot)
            full = ~np.isfinite(ttft).all(axis=1)
            if full.any():  # saturated there: poisson() reports the TPOT at capacity
                at_cap = rows.take(np.array([n * width + fractions.size]))
                tpot[full] = p99_rows(at_cap.tpot)[0]
            found[i] = (caps[i][0], p99_rows(ttft) * 1e3, tpot * 1e3)
    return [found[by_slots[(m.slots, m.limit_slots)]] for m in models]


def solve(model: SteadyModel, load: Load) -> SteadyState:
    """Steady state of ``model`` under ``load`` (rps, concurrency or offline)."""
    if load.mode == "rps":
        return model.poisson(load.value)
    if load.mode == "concurrency":
        if load.rounds is not None:
            return model.benchmark(int(load.value), load.rounds)
        return model.closed(int(load.value))
    if load.mode == "offline":
        return model.offline(int(load.value))
    raise ValueError(f"steady state is not defined for load mode {load.mode}")
