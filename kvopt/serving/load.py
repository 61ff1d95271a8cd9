"""Load modes: a static batch, a closed loop of clients, Poisson arrivals, or an offline set."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvopt.choices import LOAD_MODES
from kvopt.errors import InputError

MODES = LOAD_MODES


@dataclass(frozen=True, kw_only=True)
class Load:
    """``mode`` in :data:`MODES`; ``value`` = batch size, clients, requests/s or requests."""

    mode: str
    value: float
    # a benchmark run at a fixed concurrency: each client sends this many requests, all
    # starting together (the first round is a burst); None: the steady state
    rounds: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError("load mode", self.mode, f"allowed: {', '.join(MODES)}")
        if not (self.value > 0 and math.isfinite(self.value)):
            fix = {"rps": "give a request rate > 0", "concurrency": "use at least 1 client",
                   "offline": "submit at least 1 request", "batch": "use a batch >= 1"}
            raise InputError(f"--{self.mode}", self.value, "must be a finite number > 0",
                             fix[self.mode])
        if self.mode != "rps" and float(self.value) != int(self.value):
            raise InputError(f"--{self.mode}", self.value, "must be a whole number")
        if self.rounds is not None:
            if self.mode != "concurrency":
                raise InputError("--rounds", self.rounds, "applies to a --concurrency load",
                                 "drop --rounds or use --concurrency")
            if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) \
                    or not 1 <= self.rounds <= 10_000:
                raise InputError("--rounds", self.rounds, "must be an integer from 1 to 10000",
                                 "give the requests each client sends")
