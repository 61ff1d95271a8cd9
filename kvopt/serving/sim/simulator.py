"""Discrete-event simulator of the engine model: request by request, step by step.

It runs the same scheduler rules the analytic model assumes, in the style of vLLM's V1
scheduler, and prices every step with :class:`kvopt.serving.stepcost.StepCost`:

1. running sequences that finished prefill decode one token each (a new KV block when the
   last one is full; if none is free, the most recently admitted sequence is preempted:
   its blocks are freed and it re-queues at the front to recompute its cached tokens and
   then the rest of its prompt);
2. sequences mid-prefill continue with a chunk of the remaining token budget;
3. unless this step preempted (vLLM V1 ``Scheduler.schedule``: waiting requests are
   scheduled only ``if not preempted_reqs``, so freed blocks go to the running ones first),
   waiting requests are admitted first-come-first-served while fewer than ``max_num_seqs``
   run, budget remains and KV blocks for their first chunk are free (for an engine that
   reserves the whole sequence, ``kv_admission: full_sequence``, blocks for prompt + output
   are taken at admission, so it never preempts);
4. the step takes ``StepCost.step_s``; a sequence whose prompt completes samples its first
   token at the end of that step (TTFT); a sequence is done after its output tokens.

Seeded: the same inputs and seed give the same requests and the same results.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kvopt.errors import InputError
from kvopt.serving.admission import BalanceHold, BatchWait
from kvopt.serving.features import PrefixCache, SpecDecode
from kvopt.serving.lengths import LengthDist
from kvopt.serving.load import Load
from kvopt.serving.replica import Replica
from kvopt.serving.sim.blocks import Footprint
from kvopt.serving.sim.seqs import (
    EMPTY,
    Seq,
    blocks_for,
    decode_only,
    decode_run,
    grant,
    prompts_within,
)
from kvopt.serving.stepcost import StepCost

IntArray = npt.NDArray[np.int64]
Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SimResult:
    """Per-request times (seconds; NaN where a request never got there) and run facts."""

    arrival_s: Array
    first_scheduled_s: Array
    first_token_s: Array
    finish_s: Array
    input_len: IntArray
    output_len: IntArray
    steps: int
    preemptions: int
    mean_running: float  # time-averaged sequences running
    horizon_s: float  # time of the last event
    request_overhead_s: float = 0.0  # spent between sending and reaching the scheduler


def simulate(replica: Replica, *, load: Load, input_dist: LengthDist, output_dist: LengthDist,
             num_requests: int = 2000, seed: int = 0, max_time_s: float = 1e7,
             step_cost: StepCost | None = None, prefix: PrefixCache | None = None,
             spec: SpecDecode | None = None, draft: StepCost | None = None,
             fast_forward: bool = True) -> SimResult:
    """Simulate ``num_requests`` requests (``load.value`` requests for offline/batch;
    ``load.value`` x ``load.rounds`` for a benchmark run at a fixed concurrency).

    Runs of pure decode steps are priced in one go (``fast_forward``: k steps cost k times
    the mean of the first and last, exact for step times linear in the contexts); turn it
    off to see every step through ``step_cost`` (a trace).

    With ``prefix``, each request finds the shared prefix cached with probability
    ``hit_rate`` (the prefix's blocks are held once for the whole run). With ``spec``, each
    decode step verifies ``k + 1`` tokens per sequence and accepts a truncated-geometric
    number of draft tokens (i.i.d. acceptance), after ``k`` drafter passes."""
    if not replica.fits:
        raise InputError("model", replica.model.name, f"does not fit on {replica.tp}x "
                         f"{replica.gpu.id}; nothing to simulate")
    eng = replica.engine
    n_req = int(load.value) if load.mode in ("offline", "batch") else num_requests
    if load.mode == "concurrency" and load.rounds is not None:  # a benchmark run
        n_req = int(load.value) * load.rounds
    if n_req < 1:
        raise InputError("num_requests", n_req, "must be >= 1")
    rng = np.random.default_rng(seed)
    inp = input_dist.sample(n_req, rng)
    out = output_dist.sample(n_req, rng)
    hits = rng.random(n_req) < (prefix.hit_rate if prefix else 0.0)
    bs_ = replica.engine.block_size
    shared = (prefix.shared_len // bs_) * bs_ if prefix else 0  # whole blocks are reused
    acc_rng = np.random.default_rng(seed + 1)
    context = int(inp.max() + out.max())
    if context > replica.model.max_context:
        raise InputError("input + output length", context,
                         f"exceeds {replica.model.name}'s context of "
                         f"{replica.model.max_context} tokens", "shorten the distributions")
    bs = eng.block_size
    total_blocks = replica.kv_capacity_blocks
    if hits.any():
        total_blocks -= -(-shared // bs)  # the shared prefix is cached once
    # a draft model's weights and KV are in the replica's memory already
    # (kvopt.serving.replica.with_draft)
    reserve = eng.kv_admission == "full_sequence"
    extra = spec.k if spec else 0  # draft tokens a last verify step may write
    fp = Footprint(replica)
    need_one = fp.blocks(context + (extra if reserve else 0))
    if need_one > total_blocks:
        raise InputError("input + output length", context, f"one sequence needs {need_one} KV "
                         f"blocks but the pool holds {total_blocks}")
    budget = eng.step_tokens if eng.chunked_prefill else max(eng.step_tokens, context)
    sc = step_cost or StepCost(replica, budget + eng.max_num_seqs)

    arrival = np.full(n_req, np.nan)
    if load.mode == "rps":
        arrival = np.cumsum(rng.exponential(1.0 / load.value, n_req))
    elif load.mode in ("offline", "batch"):
        arrival[:] = 0.0
    first_sched = np.full(n_req, np.nan)
    first_tok = np.full(n_req, np.nan)
    finish = np.full(n_req, np.nan)

    # heap of (time it reaches the engine, request): sent at ``arrival``, it spends the
    # request overhead (HTTP, tokenization) before the scheduler sees it
    req = replica.request_overhead_s
    arrivals: list[tuple[float, int]] = []
    if load.mode == "concurrency":
        clients = min(int(load.value), n_req)
        for i in range(clients):
            arrivals.append((req, i))
            arrival[i] = 0.0
        next_req = clients
    else:
        arrivals = [(float(arrival[i]) + req, i) for i in range(n_req)]
        next_req = n_req
    heapq.heapify(arrivals)

    waiting: deque[Seq] = deque()
    running: list[Seq] = []  # admission order (preempt from the end)
    free = total_blocks
    left = 0
    t = 0.0
    steps = preemptions = 0
    busy_area = 0.0
    done = 0
    width = spec.k + 1 if spec else 1  # tokens each decoder writes a step (at most)
    prefill_first = eng.prefill_policy == "prefill_first"

    def take_decoders() -> tuple[list[Seq], bool]:
        """This step's decoders (their new KV blocks taken) and whether a sequence was
        preempted (LIFO) to find the blocks."""
        nonlocal free, left, preemptions
        chosen = [s for s in running if s.prefill_left == 0][:max(0, left // width)]
        need = sum(blocks_for(s, width, fp) for s in chosen)
        hit = False
        while need > free and running:
            victim = running.pop()
            free += victim.blocks
            preemptions += 1
            hit = True
            if victim in chosen:
                need -= blocks_for(victim, width, fp)
                chosen.remove(victim)
            free -= victim.base_blocks  # shared prefix blocks were never its own
            victim.blocks = victim.base_blocks
            # recompute what it had cached beyond the prefix, then the prompt it had not
            # reached yet (a victim caught mid-prefill)
            victim.prefill_left += victim.stored - victim.base
            victim.stored = victim.base
            waiting.appendleft(victim)
        for s in chosen:
            nb = blocks_for(s, width, fp)
            s.blocks += nb
            free -= nb
        left -= len(chosen) * width
        return chosen, hit

    # the scheduler takes arrived requests in at a poll: every pass, or (SGLang
    # --scheduler-recv-interval) every ``every`` decode passes and right after a pass that
    # prefilled, and at once when idle; ``since``: decode passes since the last poll.
    # TensorRT-LLM's attention-DP balancing holds the prompts it took in (``inbox``) until
    # it releases them (kvopt.serving.admission.BalanceHold)
    every = eng.admit_interval_steps
    since = every
    adp = replica.balances_ranks
    dp = replica.dp if adp else 1
    hold = BalanceHold.of(eng)
    rank = np.arange(n_req) % dp  # a closed-loop client's next request: its previous's rank
    inbox: list[Seq] = []
    # batch waiting (TensorRT-LLM): the prompts a pass would start are held while it decodes
    bw = replica.batch_waits
    bw_hold = BatchWait.of(eng)
    while done < n_req and t < max_time_s:
        if every > 1 and (running or waiting or inbox) and since < every:
            pass  # not polling this pass: arrivals wait in the server
        else:
            since = 0
            while arrivals and arrivals[0][0] <= t:
                _, i = heapq.heappop(arrivals)
                base = min(shared, int(inp[i]) - 1) if hits[i] else 0
                (inbox if adp else waiting).append(Seq(i, int(inp[i]), int(out[i]), base, bs))
                if adp and load.mode != "concurrency":  # the rank with the fewest requests
                    per = np.bincount([rank[q.idx] for q in (*running, *waiting, *inbox[:-1])],
                                      minlength=dp)
                    rank[i] = int(np.argmin(per))
        if adp:  # once per pass
            have = np.bincount([rank[q.idx] for q in inbox], minlength=dp) > 0
            decoding = np.bincount([rank[q.idx] for q in running], minlength=dp) > 0
            if hold.release(bool(have.all()), bool(decoding.all())) and inbox:
                waiting.extend(inbox)
                inbox = []
        if not running and not waiting:
            if not arrivals and not inbox:
                break
            if arrivals and not inbox:
                t = arrivals[0][0]
            continue
        if (fast_forward and spec is None
                and decode_only(running, waiting, eng.max_num_seqs)
                and len(running) <= budget):
            bound = (every - since if every > 1 and arrivals
                     else max(hold.timeout - hold.held, 1) if adp else None)
            k, dt_total = decode_run(
                running, sc, fp, free, t,
                arrivals[0][0] if arrivals and every <= 1 else None,
                max_steps=bound)
            if adp and inbox:
                k = 0  # prompts held: each pass may release them
            if k > 1:
                since += k - 1
                if adp:
                    hold.held += k - 1
                for s in running:
                    new_blocks = fp.blocks(s.stored + k) - s.blocks
                    s.blocks += new_blocks
                    free -= new_blocks
                    s.stored += k - 1
                    s.generated += k - 1
                busy_area += dt_total * len(running) * (k - 1) / k
                t += dt_total * (k - 1) / k
                steps += k - 1
                continue  # the k-th step runs normally (it may complete sequences)
        left = budget
        # 1. decodes (need a block when the last is full); preempt LIFO when out of blocks.
        # A prefill-first engine (SGLang's default) runs a batch of prompts alone while any
        # can be scheduled, and the decodes wait for it
        prefill_now = prefill_first and (any(s.prefill_left > 0 for s in running)
                                         or (bool(waiting) and len(running) < eng.max_num_seqs))
        decoders: list[Seq] = []
        preempted = False
        if not prefill_now:
            decoders, preempted = take_decoders()
        # 2. + 3. prefill chunks: running first, then admissions
        chunks: list[tuple[Seq, int]] = []
        for s in running:
            if s.prefill_left > 0 and left > 0:
                c = grant(s, left, fp, free)
                if c:
                    nb = blocks_for(s, c, fp)
                    free -= nb
                    s.blocks += nb
                    chunks.append((s, c))
                    left -= c
        if bw and waiting and decoders and len(running) < eng.max_num_seqs:
            whole = prompts_within(waiting, eng.max_num_seqs - len(running), left)
            if not bw_hold.release(whole + len(decoders), True):
                left = 0  # held: this pass only decodes
        while (waiting and left > 0 and len(running) < eng.max_num_seqs
               and not preempted):
            s = waiting[0]
            if reserve:  # blocks for the whole sequence, held until it finishes
                whole = fp.blocks(s.base + s.prefill_left + s.out + extra) - s.blocks
                if whole > free:
                    break
                free -= whole
                s.blocks += whole
            c = grant(s, left, fp, free)
            if not c:
                break
            waiting.popleft()
            nb = blocks_for(s, c, fp)
            free -= nb
            s.blocks += nb
            running.append(s)
            if np.isnan(first_sched[s.idx]):
                first_sched[s.idx] = t
            chunks.append((s, c))
            left -= c
        if prefill_now and not chunks:  # no prompt could be scheduled: decode instead
            decoders, preempted = take_decoders()
        if not decoders and not chunks:
            if arrivals:  # blocked: jump to the next arrival (and take it in)
                t = max(t, arrivals[0][0])
                since = every
                continue
            raise InputError("load", load.value, "the engine cannot schedule any request "
                             "(KV pool too small for one prompt chunk)")
        ctx = np.fromiter((s.stored for s in decoders), dtype=np.float64, count=len(decoders))
        news = np.fromiter((c for _, c in chunks), dtype=np.float64, count=len(chunks))
        pasts = np.fromiter((s.stored for s, _ in chunks), dtype=np.float64, count=len(chunks))
        rows = sum(1 for s, c in chunks if c == s.prefill_left)
        starts = sum(1 for s, _ in chunks if s.stored == s.base)  # its images encode now
        dt = sc.step_s(decode_contexts=ctx, prefill_new=news, prefill_past=pasts,
                       prefill_rows=rows, decode_tokens=width, prefill_starts=starts)
        if spec is not None and decoders:
            if draft is not None:
                one = draft.step_s(decode_contexts=ctx, prefill_new=EMPTY, prefill_past=EMPTY,
                                   prefill_rows=0) - draft.overhead_s
            else:
                nd = float(len(decoders))
                one = float(sc.linear(nd)) / replica.model.num_layers + float(sc.head(nd))
            dt += spec.k * one
        busy_area += dt * len(running)
        t += dt
        steps += 1
        since = every if chunks else since + 1  # a pass that prefilled: poll at the next
        finished: list[Seq] = []
        if spec is not None and decoders:
            # accepted draft tokens: j with P(j) = a^j (1 - a) for j < k, a^k for j = k
            acc = np.minimum(np.floor(np.log(acc_rng.random(len(decoders)))
                                      / math.log(spec.acceptance)) if spec.acceptance > 0
                             else np.zeros(len(decoders)), spec.k).astype(int) + 1
        else:
            acc = np.ones(len(decoders), dtype=int)
        for s, got in zip(decoders, acc, strict=True):
            got = min(int(got), s.out - s.generated)
            s.stored += got
            s.generated += got
            if s.generated >= s.out:
                finished.append(s)
        for s, c in chunks:
            s.stored += c
            s.prefill_left -= c
            if s.prefill_left == 0:
                if s.generated == 0:
                    s.generated = 1
                    first_tok[s.idx] = t
                if s.generated >= s.out:
                    finished.append(s)
        for s in finished:
            running.remove(s)
            free += s.blocks - s.base_blocks
            finish[s.idx] = t
            done += 1
            if load.mode == "concurrency" and next_req < n_req:
                arrival[next_req] = t
                rank[next_req] = rank[s.idx]
                heapq.heappush(arrivals, (t + req, next_req))
                next_req += 1
    return SimResult(arrival, first_sched, first_tok, finish, inp, out, steps, preemptions,
                     busy_area / t if t > 0 else 0.0, t, req)
