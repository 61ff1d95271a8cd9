"""The simulator's sequences and the per-step rules it applies to them: KV blocks a chunk
needs, the chunk that fits, which waiting prompts a pass starts, and decode runs priced in one
go until the next event (:func:`decode_run`)."""

from __future__ import annotations

from collections import deque

import numpy as np

from kvopt.serving.sim.blocks import Footprint
from kvopt.serving.stepcost import StepCost


class Seq:
    __slots__ = ("base", "base_blocks", "blocks", "generated", "idx", "out", "prefill_left",
                 "stored")

    def __init__(self, idx: int, prompt: int, out: int, base: int = 0, bs: int = 1) -> None:
        self.idx = idx
        self.base = base  # prompt tokens found in the shared prefix cache
        self.base_blocks = base // bs  # whole shared blocks it points to (not its own)
        self.prefill_left = prompt - base
        self.stored = base  # tokens whose KV is cached
        self.generated = 0
        self.out = out
        self.blocks = self.base_blocks



def prompts_within(waiting: deque[Seq], seats: int, room: int) -> float:
    """Whole-prompt tokens of the waiting prompts a pass would start (first come, first
    served, within ``seats`` and the token ``room``; at least the first)."""
    total = 0
    for k, s in enumerate(waiting):
        if k >= seats or (k and total + s.prefill_left > room):
            break
        total += s.base + s.prefill_left
    return float(total)


def decode_only(running: list[Seq], waiting: deque[Seq], max_seqs: int) -> bool:
    """True when the next steps are pure decodes: no prefill in flight, nobody admissible."""
    if not running or any(s.prefill_left for s in running):
        return False
    return not waiting or len(running) >= max_seqs


def decode_run(running: list[Seq], sc: StepCost, fp: Footprint, free: int, t: float,
                  next_arrival: float | None, max_steps: int | None = None
                  ) -> tuple[int, float]:
    """(k, time of k decode steps) until the next event: a completion, an arrival (or, for
    an engine that polls every few passes, ``max_steps``: its next poll), or the KV pool
    running out. Step time is linear in the contexts (attention reads them once), so k
    steps cost k x the mean of the first and last step."""
    stored = np.fromiter((s.stored for s in running), dtype=np.float64, count=len(running))
    left = min(s.out - s.generated for s in running)
    k = int(left) if max_steps is None else min(int(left), max_steps)
    if k <= 1:
        return 0, 0.0
    blocks = np.fromiter((s.blocks for s in running), dtype=np.float64, count=len(running))

    def need(k_: int) -> float:
        return fp.need(stored, blocks, k_)

    if need(k) > free:
        lo, hi = 1, k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if need(mid) <= free:
                lo = mid
            else:
                hi = mid - 1
        k = lo
    first = sc.step_s(decode_contexts=stored, prefill_new=EMPTY, prefill_past=EMPTY,
                      prefill_rows=0)
    if next_arrival is not None:
        k = min(k, max(1, int(np.ceil((next_arrival - t) / first))))
    if k <= 1:
        return 0, 0.0
    last = sc.step_s(decode_contexts=stored + (k - 1), prefill_new=EMPTY, prefill_past=EMPTY,
                     prefill_rows=0)
    return k, k * (first + last) / 2


EMPTY = np.zeros(0)


def blocks_for(s: Seq, chunk: int, fp: Footprint) -> int:
    """New blocks a sequence needs to cache ``chunk`` more tokens."""
    return max(0, fp.blocks(s.stored + chunk) - s.blocks)


def grant(s: Seq, left: int, fp: Footprint, free: int) -> int:
    """Largest prefill chunk (<= ``left``) whose KV blocks fit in ``free``."""
    c = min(s.prefill_left, left)
    if blocks_for(s, c, fp) <= free:
        return c
    return fp.largest_chunk(s.stored, s.blocks, c, free)
