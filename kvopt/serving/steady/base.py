"""The analytic steady state's inputs for one replica and length mix: the replica's slots
(max_num_seqs, KV blocks), token budget, prefix-cache and speculative-decoding parameters,
and the engine step it prices (:meth:`SteadyBase.step`). The rest of the model builds on
it: :mod:`.fixed_point` (step time and capacity), :mod:`.ttft` (the TTFT core),
:mod:`.tails` (per-request draws and slot waits), :mod:`.closed` (closed loops),
:mod:`.offline` (offline runs) and :mod:`.model` (the whole model)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from kvopt.serving.admission import admit_wait_passes, balance_wait_passes, batch_wait_passes
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import LengthDist
from kvopt.serving.steady.draws import D, dist_draws
from kvopt.serving.stepcost import StepCost

Array = npt.NDArray[np.float64]
COHORT_Z = 2.33  # a cohort overflows the budget in < 1% of its cycles (normal quantile)
MAX_STEP_S = 30.0  # no fixed point below this: the replica cannot keep up


class SteadyBase:
    """Steady-state solver for one replica, one length mix: its parameters and step."""

    def __init__(self, sc: StepCost, input_dist: LengthDist, output_dist: LengthDist, *,
                 prefix: PrefixCache | None = None, spec: SpecDecode | None = None,
                 draft: StepCost | None = None, prompt_cached: bool = False,
                 max_num_seqs: int | None = None) -> None:
        self.sc = sc
        rep = sc.replica
        self.req_s = rep.request_overhead_s  # outside the engine: TTFT and E2E only
        self.admit_every = rep.engine.admit_interval_steps  # decode passes between polls
        # attention-DP balancing holds prompts until every rank has one (TensorRT-LLM)
        self.adp = rep.balances_ranks
        self.dp = rep.dp
        # batch waiting holds prompts while others decode (TensorRT-LLM, without attention DP)
        self.bw = rep.batch_waits
        self.i_mean = input_dist.mean
        self.i_m2 = input_dist.second_moment
        self.i_var = max(self.i_m2 - self.i_mean**2, 0.0)
        self.i_cv2 = self.i_var / max(self.i_mean, 1e-12) ** 2  # prompt length's CV^2
        self.o_mean = output_dist.mean
        self.inp = input_dist
        self.out = output_dist
        self.ctx = self.i_mean + self.o_mean / 2
        # prefix caching: hits skip min(shared, I - 1) prompt tokens. ``prompt_cached``: the
        # whole prompt arrives with its KV (the decode pool of disaggregated serving)
        if prompt_cached:
            prefix = PrefixCache(shared_len=input_dist.max, hit_rate=1.0)
        bs = rep.engine.block_size
        self.hit = prefix.hit_rate if prefix else 0.0
        # engines reuse whole KV blocks only: the usable prefix is block-aligned
        self.shared = float((prefix.shared_len // bs) * bs) if prefix else 0.0
        skipped = float(np.dot(np.minimum(self.shared, input_dist.values - 1), input_dist.probs))
        self.skip_mean = skipped
        self.i_new = self.i_mean - self.hit * skipped  # prompt tokens prefilled per request
        self._prompt_mix = ((1.0 - self.hit, self.i_mean, 0.0),
                            (self.hit, max(self.i_mean - skipped, 1.0), skipped))
        # speculative decoding: tokens per target step, verify width, drafter cost
        self.spec = spec
        self.E = spec.expected_tokens if spec else 1.0
        self.verify = float(spec.k + 1) if spec else 1.0
        self.draft = draft
        self.dec_steps = max(self.o_mean - 1.0, 0.0) / self.E
        eng = rep.engine
        # SGLang's default: a batch of waiting prompts runs as its own forward pass and the
        # running decodes wait for it (the budget is all prompt tokens)
        self.prefill_first = eng.prefill_policy == "prefill_first"
        self.budget = float(eng.step_tokens if eng.chunked_prefill
                            else max(eng.step_tokens, input_dist.max))
        bs = eng.block_size
        private = 0.0 if prompt_cached else self.hit * skipped  # KV shared across requests
        # a sequence holds its tokens in blocks, half a block wasted on average (at its
        # mean length, or at its full length when the engine reserves the whole sequence at
        # admission); prefix hits point at the shared blocks instead of holding their own
        held = self.o_mean if eng.kv_admission == "full_sequence" else self.o_mean / 2
        # windowed layers hold at most their window and a fixed state counts whole
        # (Replica.seq_blocks: (I + held) / bs for a model with full attention only)
        blocks_per_seq = rep.seq_blocks(self.i_mean + held) + 0.5 - private / bs
        # (a windowed model holds at most its window of the prompt, shared or not: the
        # shared tokens cannot take more than that away; its own output it holds anyway)
        blocks_per_seq = max(blocks_per_seq, rep.seq_blocks(held) + 0.5)
        shared_blocks = 0.0
        if self.hit > 0 and not prompt_cached:
            # cached blocks are evictable; they are pinned only while some running sequence
            # uses them: P(at least one of the ~N running sequences is a hit)
            n_est = rep.kv_capacity_blocks / blocks_per_seq
            shared_blocks = math.ceil(self.shared / bs) * (1.0 - (1.0 - self.hit) ** n_est)
        # a draft model's weights and KV are in the replica's memory already
        # (kvopt.serving.replica.with_draft: the pool is what is left after both)
        pool = max(rep.kv_capacity_blocks - shared_blocks, 0)
        self.kv_seqs = pool / blocks_per_seq  # sequences the pool holds at their mean length
        self.kv_slots = self.kv_seqs
        if eng.kv_admission == "on_demand":
            # blocks are taken as tokens are written, so N sequences of varied, growing
            # lengths overflow the pool whenever their sum does, and the engine preempts
            # (recomputes) the newest: sequences whose KV overflows in under 1% of steps
            # (normal sum: N m + z sqrt(N) sd <= pool, m and sd the blocks one holds at a
            # random point of its life: prompt + a uniform share of its output)
            held_var = self.i_var + output_dist.second_moment / 3 - self.o_mean**2 / 4
            sd = math.sqrt(max(held_var, 0.0)) / bs
            root = (-COHORT_Z * sd + math.sqrt((COHORT_Z * sd) ** 2
                                                + 4 * blocks_per_seq * pool)) / (2 * blocks_per_seq)
            self.kv_slots = root * root
        self.max_seqs = int(max_num_seqs or eng.max_num_seqs)  # the engine's (or a plan's) cap
        self.slots = min(float(self.max_seqs), self.kv_slots)
        self.limit_slots = "max_num_seqs" if self.max_seqs <= self.kv_slots else "kv_cache"
        self._cap: tuple[float, str] | None = None
        self._disp_table: tuple[Array, Array] | None = None
        self._draws: tuple[Array, Array] | None = None
        self._phys_key = (id(sc), input_dist.label, output_dist.label, prefix, spec,
                          id(draft), prompt_cached)

    @property
    def _i_draws(self) -> Array:
        """The request's own prompt length on the fixed quadrature draws (computed once)."""
        return self._own_draws()[0]

    @property
    def _o_draws(self) -> Array:
        return self._own_draws()[1]

    def _own_draws(self) -> tuple[Array, Array]:
        if self._draws is None:
            self._draws = (dist_draws(self.inp, D.prompt), dist_draws(self.out, D.output))
        return self._draws

    # -- core fixed point -------------------------------------------------------------------
    def step(self, n_decode: Array | float, prefill_tokens: Array | float,
             ctx: float | None = None) -> Array:
        """One engine step: ``n_decode`` sequences decoding (verifying ``k + 1`` tokens each
        under speculative decoding, plus the drafter's passes) and ``prefill_tokens`` new
        prompt tokens (a mix of prefix-cache hits and misses). Under a prefill-first
        scheduler the prompts run as a forward pass of their own before the decodes: the
        step is the two passes."""
        n = np.asarray(n_decode, dtype=np.float64)
        if not self.prefill_first:
            return self._pass(n, prefill_tokens, ctx)
        p = np.asarray(prefill_tokens, dtype=np.float64)
        dec = np.where(n > 0, self._pass(n, 0.0, ctx), 0.0)
        pre = np.where(p > 0, self._pass(np.zeros_like(n), p, ctx), 0.0)
        return np.asarray(np.where((n > 0) | (p > 0), dec + pre, self._pass(n, 0.0, ctx)))

    def prefill_done(self, n_decode: Array | float, prefill_tokens: Array | float) -> Array:
        """Time from the start of a step to the first token of a prompt it completes: the
        whole step, or under a prefill-first scheduler its prefill pass alone."""
        if not self.prefill_first:
            return self.step(n_decode, prefill_tokens)
        n = np.zeros_like(np.asarray(n_decode, dtype=np.float64))
        return self._pass(n, prefill_tokens, None)

    def free_budget(self, n_decode: Array | float, per_decoder: float = 1.0) -> Array:
        """Prompt tokens a step can take beside ``n_decode`` decoding sequences (at least 1):
        the budget less ``per_decoder`` tokens each, or all of it when prompts run alone."""
        n = np.asarray(n_decode, dtype=np.float64)
        if self.prefill_first:
            return np.full_like(n, self.budget)
        return np.asarray(np.maximum(self.budget - n * per_decoder, 1.0))

    def _pass(self, n: Array, prefill_tokens: Array | float, ctx: float | None) -> Array:
        t = self.sc.mean_step_s(n_decode=n, mean_context=self.ctx if ctx is None else ctx,
                                prefill_tokens=prefill_tokens, prompt_len=self.i_mean,
                                decode_tokens=self.verify, prompt_mix=self._prompt_mix)
        if self.spec is not None and self.spec.k:
            t = t + self.spec.k * self._draft_step(n)
        return np.asarray(t)

    def _draft_step(self, n: Array) -> Array:
        """One drafter pass over ``n`` sequences (no engine overhead: inside the step)."""
        if self.draft is not None:
            return np.asarray(np.where(n > 0, self.draft.mean_step_s(
                n_decode=n, mean_context=self.ctx, prefill_tokens=0.0, prompt_len=self.i_mean)
                - self.draft.overhead_s, 0.0))
        layers = self.sc.replica.model.num_layers
        return np.asarray(np.where(n > 0, self.sc.linear(n) / layers + self.sc.head(n), 0.0))

    @property
    def admits_late(self) -> bool:
        """Whether an arrived request may wait for the scheduler to take it in (it polls
        every few passes, attention-DP balancing or batch waiting holds prompts)."""
        return self.admit_every > 1 or self.adp or self.bw

    def wait_passes(self, arrivals_per_pass: Array | float, cohort: bool = False,
                    cohort_size: float = 0.0, clients: Array | float = math.inf) -> Array:
        """Mean passes an arrived request waits to be taken in (:mod:`kvopt.serving.admission`):
        the scheduler's next poll, or attention-DP balancing's hold (a cohort smaller than
        the ranks leaves some rank without a prompt: it is held to the timeout, half of it
        on average; fewer closed-loop ``clients`` than ranks leave some rank with nothing to
        decode, which releases every hold), or batch waiting's (prompts of the mean length,
        counted whole, needed beside the requests decoding, ``arrivals_per_pass`` times the
        decode passes of one)."""
        w = admit_wait_passes(self.admit_every, arrivals_per_pass, cohort=cohort)
        if self.adp:
            eng = self.sc.replica.engine
            if cohort and cohort_size < self.dp:
                held = np.asarray((eng.adp_timeout_iters - 1.0) / 2.0)
            else:
                held = balance_wait_passes(self.dp, eng.adp_timeout_iters,
                                           eng.adp_wait_iters, arrivals_per_pass,
                                           cohort=cohort)
            w = w + np.where(np.asarray(clients) >= self.dp, held, 0.0)
        if self.bw:
            eng = self.sc.replica.engine
            room = eng.batch_wait_tokens - np.asarray(arrivals_per_pass) * self.dec_steps
            needed = np.where(room > 0.0, np.ceil(room / max(self.i_mean, 1.0)), 0.0)
            w = w + batch_wait_passes(eng.batch_wait_timeout_iters, needed, arrivals_per_pass,
                                      cohort=cohort, cohort_size=cohort_size)
        return np.asarray(w)

    def admit_wait(self, lam: Array | float, t: Array | float, *, closed: bool = False,
                   clients: Array | float = 0.0, cohorts: bool = False) -> Array:
        """Mean time (s) an arrived request waits for the scheduler to take it in
        (:meth:`wait_passes`; passes of ``t`` seconds, ``lam`` requests/s). Only while others
        decode: an idle engine takes it at once. Closed loops: the others always decode (one
        client: never); cohorts of fixed-output requests wait as a cohort unless the cohort
        is all the clients (the engine is idle when it comes back). Open loops: when the
        replica is busy (probability ``1 - exp(-n)``, ``n`` sequences decoding on average)."""
        lam_a = np.asarray(lam, dtype=np.float64)
        t_a = np.asarray(t, dtype=np.float64)
        zero = np.zeros(np.broadcast(lam_a, t_a).shape)
        if not self.admits_late:
            return zero
        if closed:
            c = np.asarray(clients, dtype=np.float64)
            if np.all(c <= 1.0):
                return zero
            if cohorts:  # the cohorts that come back beside others decoding
                out = zero
                for g, w in self.cohort_mix(float(clients)):
                    if float(clients) - g >= 1.0:
                        out = out + w * self.wait_passes(lam_a * t_a, cohort=True,
                                                         cohort_size=g, clients=c) * t_a
                return np.asarray(out)
            return np.asarray(np.where(c > 1.0, self.wait_passes(lam_a * t_a, clients=c)
                                       * t_a, 0.0))
        with np.errstate(over="ignore"):
            busy = 1.0 - np.exp(-lam_a * self.dec_steps * t_a)
        return np.asarray(busy * self.wait_passes(lam_a * t_a) * t_a)

    def cohort_size(self, clients: Array | float) -> Array:
        """Clients of a closed loop of fixed-output requests that move together: those
        prefilled in one step finish together and come back at the same step end. A
        cohort is as many prompts as the budget prefills beside the other cohorts'
        decodes: when its prompts vary in length it sheds the clients that overflow to the
        next step until it overflows in fewer than 1% of its cycles (``k`` prompts of mean
        ``I`` and sd ``s``: ``k (I - 1) + 2.33 s sqrt(k) <= budget - clients``); at least 1,
        at most all clients."""
        c = np.asarray(clients, dtype=np.float64)
        room = self.budget if self.prefill_first else np.maximum(self.budget - c, 0.0)
        a = max(self.i_new - 1.0, 1.0)
        zs = COHORT_Z * math.sqrt(self.i_var)
        root = (-zs + np.sqrt(zs**2 + 4.0 * a * room)) / (2.0 * a)
        return np.asarray(np.clip(np.floor(root**2 + 1e-9), 1.0, np.maximum(c, 1.0)))

    def cohort_mix(self, clients: float) -> tuple[tuple[float, float], ...]:
        """(cohort size, share of the clients in such cohorts): full cohorts, and one
        smaller cohort of the clients left over."""
        c = max(float(clients), 1.0)
        g = float(self.cohort_size(c))
        rest = c - g * math.floor(c / g)
        if rest < 1.0:
            return ((g, 1.0),)
        return ((g, 1.0 - rest / c), (rest, rest / c))
