"""Unit constants. Conversions happen at the edges only; internal math is in SI base units
(bytes, seconds, FLOP, FLOP/s, bytes/s).

GiB (2**30 bytes) and GB (10**9 bytes) are different things: GPU DRAM capacities are
binary-sized (GiB), bandwidths and vendor FLOP rates are decimal (GB/s, TFLOP/s).
"""

from __future__ import annotations

GIB = 2**30
MIB = 2**20
GB = 10**9
TERA = 10**12
MS_PER_S = 1000.0
US_PER_S = 1_000_000.0


def bytes_to_gib(n_bytes: float) -> float:
    """Bytes -> GiB."""
    return n_bytes / GIB


def gib_to_bytes(gib: float) -> float:
    """GiB -> bytes."""
    return gib * GIB
