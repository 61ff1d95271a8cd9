"""The analytic steady state: one replica, one length mix, under Poisson arrivals, a closed
loop of clients or an offline run, with TTFT/TPOT/E2E percentiles from a fixed quadrature
(no simulation). :class:`SteadyModel` is the model; :func:`solve` runs it under a load.

- **Poisson arrivals**: continuous batching with chunked prefill, a Little's-law fixed point
  for the step time, Poisson bursts of prompts per step, the running step an arrival finds
  drawn from the stationary chain of prompts per step (long steps follow long steps), slot
  queueing as M/G/c (Erlang C's chance of waiting, Allen-Cunneen's wait), correlated steps
  near capacity, and the others decoding over a request's life as a compound Poisson whose
  arrivals during the life also bring the prompts prefilled beside it. Each decoder gets one
  token per step, so the step it sees is the harmonic mean of the step over the size-biased
  count of decoders, whose dispersion comes from linear noise (the loop gain of the step
  time, and an arrival's prefill holding every decoder up).
- **Closed loops** (``concurrency``): clients with a fixed output length move in cohorts
  (those prefilled together finish together); a cohort sheds the clients whose prompts
  overflow the token budget until it overflows in under 1% of its cycles. Clients with varied
  outputs are desynchronized but still share a prefill step with those that finished in the
  same step.
- **Offline** (``offline=N``): a deterministic recurrence over engine steps (admission as
  slots free up, first-come-first-served prefill beside the decodes), so the prefill-heavy
  ramp and the drain are in it. It does not preempt: when N requests fill the KV cache of a
  vLLM or SGLang replica, which over-admit and then preempt, the estimate says its TPOT is
  optimistic.
- **KV admission** per engine profile (``kv_admission``): vLLM and SGLang allocate blocks as
  tokens are written and preempt the newest sequence when they run out; TensorRT-LLM's
  default scheduler (GUARANTEED_NO_EVICT) reserves blocks for the whole sequence at admission
  and never preempts. The simulator and the analytic slots both follow it: for
  allocate-as-written engines the slots are the sequences whose KV (prompt plus a uniform
  share of the output each) overflows the pool in under 1% of steps; offline runs keep the
  pool full, so they use the mean occupancy.

The tests check it against the simulator (:mod:`kvopt.serving.sim`) of the same engine;
``benchmarks/analytic_vs_sim.py`` and ``benchmarks/goodput_vs_sim.py`` measure the gap
(benchmarks/README.md)."""

from kvopt.serving.steady.draws import p99_rows
from kvopt.serving.steady.model import SteadyModel, capacities, p99_curves, solve
from kvopt.serving.steady.state import Rows, SteadyState

__all__ = ["Rows", "SteadyModel", "SteadyState", "capacities", "p99_curves", "p99_rows",
           "solve"]
