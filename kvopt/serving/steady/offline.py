"""Offline runs: N requests submitted at once, a deterministic recurrence over engine
steps (admission as slots free up, first come first served prefill in budget-sized steps
beside the decodes)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.limits import check_run_steps
from kvopt.serving.admission import BalanceHold, BatchWait
from kvopt.serving.steady.closed import ClosedLoop
from kvopt.serving.steady.draws import SEED, dist_draws, stats
from kvopt.serving.steady.state import SteadyState

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RunDraws:
    """Per request of an offline run (seconds; lengths in tokens)."""

    ttft: Array
    tpot: Array
    e2e: Array
    start: Array  # when it was admitted
    o_len: Array
    i_len: Array
    sent: Array  # when it was sent (0; with ``resend``, when its slot came free)


class Offline(ClosedLoop):
    """Offline runs of N requests."""

    def offline(self, n: int) -> SteadyState:
        """N requests submitted at once, at most as many in flight as the slots hold: the
        step recurrence of :meth:`_run` (against the simulator it gives the same throughput
        within 0.3% on TensorRT-LLM runs of 3,000 requests, where lock-step waves were 2-6%
        low, and it carries the prefill ramp that sets the TPOT p99 of long runs)."""
        # the pool at the mean occupancy (not the 1%-overflow ``kv_slots`` of open and closed
        # loops): a run that keeps it full overflows and recomputes, and the simulator's
        # throughput follows the mean (the 1% rule puts Qwen3 below it and 8B TPOT lower)
        slots = max(1.0, math.floor(min(float(self.max_seqs), self.kv_seqs)))
        return self._run(n, int(min(n, slots)))

    def run_draws(self, n: int, conc: int, *, resend: bool = False) -> RunDraws:
        """``n`` requests submitted at once, at most ``conc`` in flight: a deterministic
        recurrence over engine steps on stratified lengths. Each step decodes one token for
        every prefilled sequence, and prefills first come, first served with the rest of the
        token budget (whole prompts when the engine does not chunk); a request is admitted
        when a slot frees up, and holds it until its last token. The schedule is counted in
        steps, so all steps are priced in one call at the end: the ramp (prefill-heavy steps
        while the first ``conc`` are admitted), the steady middle and the drain (the batch
        shrinking) all come out of it. ``resend``: a request beyond the first ``conc`` is
        sent when a slot comes free (a benchmark client's next one), and the scheduler takes
        it in at its next poll, or when attention-DP balancing or batch waiting releases it
        (:mod:`kvopt.serving.admission`); otherwise all are sent at the start and wait in
        the scheduler's queue."""
        check_run_steps(n, conc, n * max(self.dec_steps, 1.0) / max(conc, 1)
                        + n * self.i_new / self.budget)  # bounded work (kvopt.limits)
        q = (np.arange(n) + 0.5) / n
        rng = np.random.default_rng(SEED)
        i_len = dist_draws(self.inp, q)[rng.permutation(n)] * (self.i_new / self.i_mean)
        o_len = dist_draws(self.out, q)[rng.permutation(n)]
        nd = np.ceil(np.maximum(o_len - 1.0, 0.0) / self.E).astype(np.intp)  # decode steps
        need = np.cumsum(i_len)  # prefill tokens due before request i has its first token
        chunked = self.sc.replica.engine.chunked_prefill
        first = np.zeros(n, dtype=np.intp)  # step that ends each prefill
        admit = np.zeros(n, dtype=np.intp)  # step that starts it
        delta: dict[int, int] = {}  # change in the sequences decoding at each step
        freed: dict[int, list[int]] = {}  # ranks of the slots freed after each step
        dec_at: list[float] = []
        take_at: list[float] = []
        done = admitted = in_flight = decoding = 0
        tokens = 0.0
        # the scheduler takes requests in at a poll: every pass, or every ``admit_every``
        # decode passes and right after a pass that prefilled, and at once when idle; with
        # attention-DP balancing, when it releases them (BalanceHold).
        # A client's next request goes to its previous one's rank (its freed slot);
        # ``slots_at``: (step a slot came free, its rank) in order
        every, last_poll = self.admit_every, 0
        adp = resend and self.adp
        dp = self.dp if adp else 1
        eng = self.sc.replica.engine
        hold = BalanceHold.of(eng)
        # batch waiting: the prompts taken in now are held while others decode (BatchWait;
        # their tokens counted whole)
        bw = self.bw
        bw_hold = BatchWait.of(eng)
        whole = self.i_mean / max(self.i_new, 1e-12)
        slots_at: deque[tuple[int, int]] = deque((0, j % dp) for j in range(conc))
        pend = [len(range(r, conc, dp)) for r in range(dp)]  # slots waiting, per rank
        rank_of = [0] * n
        sent_at = [0] * n
        while done < n:
            k = len(dec_at)
            decoding += delta.pop(k, 0)
            freed_now = freed.pop(k - 1, [])
            if freed_now:
                in_flight -= len(freed_now)
                slots_at.extend((k, r) for r in freed_now)
                if adp:
                    for r in freed_now:
                        pend[r] += 1
            take_in = (not resend or every <= 1 or in_flight == 0 or k - last_poll >= every
                       or (k > 0 and take_at[-1] > 0))
            if adp and take_in:
                take_in = hold.release(min(pend) > 0, decoding >= dp)
            if bw and take_in and admitted < n and in_flight < conc:
                last = admitted + min(n - admitted, conc - in_flight) - 1
                new = float(need[last]) - (float(need[admitted - 1]) if admitted else 0.0)
                take_in = bw_hold.release(min(new * whole, float(self.budget)) + decoding,
                                          decoding > 0)
            if take_in:
                last_poll = k
                while admitted < n and in_flight < conc:
                    admit[admitted] = k
                    sent_at[admitted], rank = slots_at.popleft()
                    rank_of[admitted] = rank
                    pend[rank] -= 1
                    admitted += 1
                    in_flight += 1
            room = float(self.free_budget(float(decoding), self.verify))
            avail = float(need[admitted - 1]) - tokens if admitted else 0.0
            if chunked:
                take = min(room, avail)
            else:  # whole prompts only, at least one
                last = max(int(np.searchsorted(need, tokens + room, side="right")), done + 1)
                take = float(need[min(last, admitted) - 1]) - tokens if admitted > done else 0.0
            dec_at.append(float(decoding))
            take_at.append(take)
            tokens += take
            now = min(int(np.searchsorted(need, tokens * (1 + 1e-12), side="right")), admitted)
            for j in range(done, now):
                first[j] = k
                steps_j = int(nd[j])
                if steps_j:  # it decodes in steps k + 1 .. k + steps_j
                    delta[k + 1] = delta.get(k + 1, 0) + 1
                    delta[k + 1 + steps_j] = delta.get(k + 1 + steps_j, 0) - 1
                freed.setdefault(k + steps_j, []).append(rank_of[j])
            done = now
        # decode steps after the last prefill: the batch shrinks as requests finish
        finish = first + nd  # step of each last token
        ks = np.arange(len(dec_at), int(finish.max()) + 1)
        tail = n - np.searchsorted(np.sort(finish), ks, side="left")
        dec_all = np.concatenate([np.asarray(dec_at), tail.astype(np.float64)])
        take_all = np.concatenate([np.asarray(take_at), np.zeros(ks.size)])
        steps = self.step(dec_all, take_all)
        ends = np.cumsum(steps)
        ttft = ends[first] + self.req_s
        if self.prefill_first:  # the prompt's pass runs first in its step
            ttft = ttft - steps[first] + self.prefill_done(dec_all[first], take_all[first])
        e2e = ends[finish] + self.req_s
        tpot = (e2e - ttft) / np.maximum(o_len - 1.0, 1.0)
        start = np.where(admit > 0, ends[np.maximum(admit - 1, 0)], 0.0)  # admitted
        sent_k = np.asarray(sent_at, dtype=np.intp)
        sent = np.where(sent_k > 0, ends[np.maximum(sent_k - 1, 0)], 0.0) if resend else (
            np.zeros(n))
        return RunDraws(ttft=ttft, tpot=tpot, e2e=e2e, start=start, o_len=o_len, i_len=i_len,
                        sent=sent)

    def _run(self, n: int, conc: int) -> SteadyState:
        """:meth:`run_draws` as a steady state (throughput over the whole run)."""
        cap, limit = self.capacity()
        d = self.run_draws(n, conc)
        makespan = float(d.e2e.max())
        e2e = stats(d.e2e)
        return SteadyState(
            mode="offline", value=float(n), saturated=False, capacity_rps=cap,
            throughput_rps=n / makespan, output_tok_s=float(d.o_len.sum()) / makespan,
            total_tok_s=float(d.o_len.sum() + d.i_len.sum()) / makespan,
            steady_state_batch=float(np.sum(d.e2e - self.req_s - d.start) / makespan),
            utilization=1.0, queue_s=float(np.mean(d.start)), ttft_s=stats(d.ttft),
            tpot_s=stats(d.tpot), e2e_mean_s=float(np.mean(d.e2e)), e2e_p99_s=e2e[3],
            e2e_s=e2e, limit=limit)
