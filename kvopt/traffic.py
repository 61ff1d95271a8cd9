"""The input layer's traffic (part of :mod:`kvopt.build`, which re-exports these): the
prompt and output length distributions, a load (batch, clients, Poisson rate or offline
requests), the serving features (prefix caching, speculative decoding), the SLOs, and how
many requests a simulation runs, from plain keywords; every number is checked against its
range in :mod:`kvopt.limits`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kvopt import limits
from kvopt.errors import InputError

if TYPE_CHECKING:
    from kvopt.serving.lengths import LengthDist
    from kvopt.serving.load import Load
    from kvopt.serving.results import Slo


def lengths(*, input_len: int | None = None, output_len: int | None = None,
            input_len_dist: LengthDist | str | None = None,
            output_len_dist: LengthDist | str | None = None) -> tuple[LengthDist, LengthDist]:
    """(prompt, output) length distributions: a fixed length or a distribution spec
    (``lognormal:mean=M,sigma=S``, ``uniform:low=L,high=H``, ``csv:PATH``) each."""
    from kvopt.serving.lengths import LengthDist, fixed, parse_dist

    out = []
    for kind, n, dist in (("input", input_len, input_len_dist),
                          ("output", output_len, output_len_dist)):
        if (n is None) == (dist is None):
            raise InputError(f"{kind}_len", n, f"give exactly one of {kind}_len and "
                             f"{kind}_len_dist")
        if dist is None:
            out.append(fixed(limits.TOKENS.check(f"{kind}_len", n)))
        else:
            out.append(dist if isinstance(dist, LengthDist)
                       else parse_dist(str(dist), field=f"{kind}_len_dist"))
    return out[0], out[1]


def load(*, batch: int | None = None, concurrency: int | None = None,
         rps: float | None = None, offline: int | None = None,
         rounds: int | None = None) -> Load:
    """One load: a static ``batch``, a closed loop of ``concurrency`` clients, Poisson
    arrivals at ``rps`` or ``offline`` requests at once (exactly one); ``rounds``: requests
    per client of a benchmark run (concurrency only)."""
    from kvopt.serving.load import Load

    given = {k: v for k, v in (("batch", batch), ("concurrency", concurrency), ("rps", rps),
                               ("offline", offline)) if v is not None}
    if len(given) != 1:
        raise InputError("load", ", ".join(given) or "none",
                         "give exactly one of batch, concurrency, rps or offline")
    mode, value = next(iter(given.items()))
    value = _LOAD_RANGES[mode].check(mode, value)
    if rounds is not None:
        rounds = limits.ROUNDS.check("rounds", rounds)
    return Load(mode=mode, value=value, rounds=rounds)


_LOAD_RANGES = {"batch": limits.SEQS, "concurrency": limits.CLIENTS, "rps": limits.RPS,
                "offline": limits.OFFLINE}


def features(*, prefix_len: int | None = None, prefix_hit_rate: float | None = None,
             spec_k: int | None = None, spec_acceptance: float | None = None,
             spec_draft: str = "head", prompt: LengthDist | None = None) -> dict[str, Any]:
    """``{"prefix": PrefixCache, "spec": SpecDecode}`` for what is given (each needs both of
    its parameters). A shared prefix is part of a prompt: with ``prompt`` (the prompt-length
    distribution) it may not be longer than the longest prompt. A draft model is a catalog
    name (or config.json) checked here."""
    from kvopt.serving.features import PrefixCache, SpecDecode

    if prefix_len is not None:
        prefix_len = limits.TOKENS.check("prefix_len", prefix_len)
        if prompt is not None and prefix_len > prompt.max:
            raise InputError("prefix_len", prefix_len, f"longer than the longest prompt "
                             f"({prompt.max} tokens); the shared prefix is part of a prompt",
                             "give the length of the prefix the prompts share")
    if prefix_hit_rate is not None:
        prefix_hit_rate = limits.HIT_RATE.check("prefix_hit_rate", prefix_hit_rate)
    if spec_k is not None:
        spec_k = limits.SPEC_K.check("spec_k", spec_k)
    if spec_acceptance is not None:
        spec_acceptance = limits.check_acceptance("spec_acceptance", spec_acceptance)
    if spec_draft != "head" and spec_k is not None:
        from kvopt.catalog.models import load_model

        if not isinstance(spec_draft, str) or not spec_draft.strip():
            raise InputError("spec_draft", spec_draft, "must be 'head' or a model name")
        load_model(spec_draft)  # unknown -> close matches

    out: dict[str, Any] = {}
    if (prefix_len is None) != (prefix_hit_rate is None):
        raise InputError("prefix caching", prefix_len if prefix_len is not None
                         else prefix_hit_rate, "needs both prefix_len and prefix_hit_rate")
    if prefix_len is not None and prefix_hit_rate is not None:
        out["prefix"] = PrefixCache(shared_len=prefix_len, hit_rate=prefix_hit_rate)
    if (spec_k is None) != (spec_acceptance is None):
        raise InputError("speculative decoding", spec_k if spec_k is not None
                         else spec_acceptance, "needs both spec_k and spec_acceptance")
    if spec_k is not None and spec_acceptance is not None:
        out["spec"] = SpecDecode(k=spec_k, acceptance=spec_acceptance, draft=spec_draft)
    return out


def slo(*, ttft_p99_ms: float | None = None, tpot_p99_ms: float | None = None,
        e2e_p99_ms: float | None = None) -> Slo:
    from kvopt.serving.results import Slo

    def ms(field: str, v: float | None) -> float | None:
        return None if v is None else limits.SLO_MS.check(field, v)

    return Slo(ttft_p99_ms=ms("slo_ttft_p99_ms", ttft_p99_ms),
               tpot_p99_ms=ms("slo_tpot_p99_ms", tpot_p99_ms),
               e2e_p99_ms=ms("slo_e2e_p99_ms", e2e_p99_ms))


def sim_size(load: Load, num_requests: int, output: LengthDist | None = None) -> int:
    """Requests a simulation runs (rps/concurrency: ``num_requests``; offline or a batch:
    the load's; a benchmark run: clients x rounds), within :data:`kvopt.limits.SIM_REQUESTS`
    (the simulator steps through every one) and, with the output-length distribution, at
    most :data:`kvopt.limits.MAX_SIM_TOKENS` output tokens in all."""
    n = num_requests
    if load.mode in ("offline", "batch"):
        n = int(load.value)
    elif load.mode == "concurrency" and load.rounds is not None:
        n = int(load.value) * load.rounds
    if n > limits.SIM_REQUESTS.hi:
        raise InputError(f"{load.mode}" if load.mode != "rps" else "num_requests", n,
                         f"simulates at most {int(limits.SIM_REQUESTS.hi)} requests "
                         f"({limits.SIM_REQUESTS.why})",
                         "simulate fewer, or use kvopt estimate (closed form) for this load")
    if output is not None and n * output.mean > limits.MAX_SIM_TOKENS:
        raise InputError(f"{load.mode}" if load.mode != "rps" else "num_requests", n,
                         f"{n} requests of {output.mean:.0f} output tokens: the simulator "
                         f"generates at most {limits.MAX_SIM_TOKENS} tokens a run (~10 s)",
                         f"simulate at most {int(limits.MAX_SIM_TOKENS // output.mean)} "
                         "requests, or use kvopt estimate (closed form)")
    return n
