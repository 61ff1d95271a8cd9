"""Serving features that change the work per request: prefix caching and speculative
decoding.

Prefix caching: a fraction ``hit_rate`` of requests start with ``shared_len`` prompt tokens
already in the KV cache (a system prompt, a few-shot preamble, a conversation so far). Hits
skip the prefill compute of those tokens (their new tokens still attend over them) and share
the prefix's KV blocks, which are stored once.

Speculative decoding: a drafter proposes ``k`` tokens, the target verifies ``k + 1`` in one
step. With per-token acceptance rate ``a`` (i.i.d.), the expected tokens accepted per target
step is ``(1 - a^(k+1)) / (1 - a)`` (Leviathan et al., "Fast Inference from Transformers via
Speculative Decoding", ICML 2023, eq. 1). A step costs the verify pass over ``k + 1`` tokens
per sequence plus ``k`` drafter passes: for an EAGLE/MTP-style head one decoder layer of the
target plus its LM head (EAGLE: Li et al. 2024, one auto-regression head layer; DeepSeek-V3
MTP: one module), for a draft model its own decode step. It can be slower than plain decode:
at low acceptance, or at large batch where the verify pass is compute-bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvopt.errors import InputError


@dataclass(frozen=True, kw_only=True)
class PrefixCache:
    shared_len: int  # tokens of the shared prefix
    hit_rate: float  # fraction of requests that find it cached

    def __post_init__(self) -> None:
        if isinstance(self.shared_len, bool) or self.shared_len < 0:
            raise InputError("prefix shared_len", self.shared_len, "must be >= 0 tokens")
        if not 0.0 <= self.hit_rate <= 1.0:
            raise InputError("prefix hit_rate", self.hit_rate, "must lie in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class SpecDecode:
    k: int  # draft tokens per step
    acceptance: float  # per-token acceptance probability
    draft: str = "head"  # "head" (EAGLE/MTP-style) or a catalog model name

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 16:
            raise InputError("spec k", self.k, "draft length must be an integer in 1..16")
        if not 0.0 <= self.acceptance < 1.0:
            raise InputError("spec acceptance", self.acceptance, "must lie in [0, 1)")

    def _pmf(self) -> list[float]:
        """P(tokens per step = j + 1) for j = 0..k: a^j (1 - a), and a^k for j = k."""
        a = self.acceptance
        return [a**j * (1 - a) for j in range(self.k)] + [a**self.k]

    @property
    def expected_tokens(self) -> float:
        """Tokens accepted per target step: (1 - a^(k+1)) / (1 - a)."""
        a = self.acceptance
        return (1.0 - a ** (self.k + 1)) / (1.0 - a)

    @property
    def tokens_variance(self) -> float:
        pmf = self._pmf()
        mean = sum((j + 1) * p for j, p in enumerate(pmf))
        return sum((j + 1) ** 2 * p for j, p in enumerate(pmf)) - mean**2
