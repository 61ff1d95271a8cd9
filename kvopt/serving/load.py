"""Load modes: a static batch, a closed loop of clients, Poisson arrivals, or an offline set."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kvopt.errors import InputError

MODES = ("batch", "concurrency", "rps", "offline")


@dataclass(frozen=True, kw_only=True)
class Load:
    """``mode`` in :data:`MODES`; ``value`` = batch size, clients, requests/s or requests."""

    mode: str
    value: float

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
