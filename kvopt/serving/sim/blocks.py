"""KV blocks one simulated sequence holds: ``ceil(n / block)`` for a model whose every
layer keeps every token; otherwise :meth:`kvopt.serving.replica.Replica.seq_blocks` rounded
up (windowed layers capped at their window + one block, a fixed state such as
linear-attention layers' or cross-attention image keys counted from the first token),
evaluated on the (cap, layers) groups of the model at once."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import numpy.typing as npt

from kvopt.physics.memory import KV_KINDS
from kvopt.serving.replica import Replica

Array = npt.NDArray[np.float64]


class Footprint:
    """Blocks of one sequence as a function of the tokens it has cached."""

    def __init__(self, replica: Replica) -> None:
        self.bs = replica.engine.block_size
        self.plain = replica.plain_kv
        m = replica.model
        caps = Counter(np.inf if k == "full" or w is None else float(w) + self.bs
                       for k, w in zip(m.kinds, m.sliding_windows, strict=True)
                       if k in KV_KINDS)
        total = max(sum(caps.values()), 1)
        self.caps = np.array(list(caps), dtype=np.float64)
        self.shares = np.array([n / total for n in caps.values()], dtype=np.float64)
        self._pairs = [(float(c), float(n) / total) for c, n in caps.items()]
        self.state = replica.seq_state_bytes / (replica.kv_bytes_per_token * self.bs)

    def _blocks(self, tokens: Array) -> Array:
        held = np.minimum(tokens[..., None], self.caps) @ self.shares
        return np.asarray(np.ceil(held / self.bs + self.state - 1e-9))

    def blocks(self, tokens: int) -> int:
        if self.plain:
            return -(-tokens // self.bs)
        held = sum(share * min(tokens, cap) for cap, share in self._pairs)
        return math.ceil(held / self.bs + self.state - 1e-9)

    def need(self, stored: Array, held: Array, k: int) -> float:
        """New blocks sequences at ``stored`` tokens holding ``held`` blocks need for ``k``
        more tokens each."""
        now = (np.ceil((stored + k) / self.bs) if self.plain
               else self._blocks(np.asarray(stored, dtype=np.float64) + k))
        return float(np.maximum(0.0, now - held).sum())

    def largest_chunk(self, stored: int, held: int, want: int, free: int) -> int:
        """The largest chunk (<= ``want``) whose new blocks fit in ``free``."""
        if self.plain:
            room = (held + free) * self.bs - stored
            return max(0, min(want, room))
        lo, hi = 0, want
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.blocks(stored + mid) - held <= free:
                lo = mid
            else:
                hi = mid - 1
        return lo
