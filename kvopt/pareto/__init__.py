"""Pareto fronts over GPU type, replicas, TP, precision and max batch: NSGA-II (pymoo) and
an exact enumerated front, with hypervolume, a knee pick and review exports.

Modules, in dependency order (none imports pymoo at import time except ``problem``, which
only the NSGA-II search loads):

- ``table``: every configuration evaluated once with the serving model (:class:`ConfigTable`);
- ``evaluation``: decisions -> objectives, constraints ``g <= 0`` and metrics (vectorized);
- ``front``: the non-dominated filter, :class:`Front`, normalization, hypervolume, knee;
- ``exact``: the exact front by enumeration, and which constraints empty a space;
- ``problem``: the pymoo ``Problem`` (:class:`FleetProblem`) and archive ``Callback``;
- ``search``: :func:`run_nsga2`, NSGA-II on that problem;
- ``run``: :func:`pareto`, table + search + comparison with the exact front;
- ``export``: rows, CSV/JSON/Parquet, PNG and the HTML page.

Decisions: GPU type, TP, weight/KV precision, max batch and replica count. Objectives, all
minimized: ``cost`` ($/h), ``ttft_p99`` and ``tpot_p99`` (ms at the planned rate per
replica), ``quality`` (accuracy loss vs BF16, ``models/quality.yaml``), ``throughput`` (minus
the fleet's output capacity in tok/s), ``gpus``. Constraints ``g <= 0``: the configuration
runs (memory, precision support, TP), the rate per replica stays below saturation, SLOs,
budget. Each configuration is evaluated once on a grid of load fractions and a point's p99s
are interpolated, so search and enumeration are vectorized. NSGA-II is seeded (same seed,
same front bit for bit); the report records the hypervolume ratio to the exact front per
generation. Hypervolume is pymoo's indicator on objectives normalized to the ideal/nadir of
the fronts compared (reference point 1.1). The **knee** is the front point with the least sum
of its objectives, each scaled to [0, 1] by its range over the front; ``kvopt plan --goal
balanced`` picks by the same rule. ``fleet="mixed"`` searches two configuration groups
(traffic split by capacity, fleet p99 = the worse group's; NSGA-II only, its hypervolume
reported against the exact single-type front); ``fleet="disagg"`` searches prefill/decode
pools (TTFT adds the prefill pool's p99, the KV transfer over the NIC and the decode pool's
first step).
"""
