"""Disaggregated prefill/decode: separate prefill and decode pools, KV transfer between them,
and the cheapest pool sizes that serve a load under SLOs.

* Prefill pool: ``Np`` replicas each see Poisson arrivals at ``lambda / Np`` of requests that
  need one output token (their prefill and first token) — the steady model with ``O = 1``.
* KV transfer: the prompt's KV (``I x KV bytes/token`` over the TP group), each GPU sending
  its shard over NVLink/xGMI inside a node or its RDMA NIC across nodes
  (``models/interconnect.yaml``, ``kv_transfer``).
* Decode pool: ``Nd`` replicas each see ``lambda / Nd`` requests that arrive with their prompt
  already cached (one token to process, full KV held) — decode never waits behind prefill.
* TTFT = prefill-pool TTFT + transfer + the decode pool's first step; the p99 adds the two
  pools' p99s (an upper bound: the delays are not perfectly correlated).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kvopt.catalog.prices import price_for
from kvopt.catalog.yamlio import sourced
from kvopt.errors import InputError
from kvopt.physics.comm import interconnect_data
from kvopt.serving.lengths import LengthDist, fixed
from kvopt.serving.replica import Replica
from kvopt.serving.results import Slo
from kvopt.serving.serve import check_context, step_cost_for
from kvopt.serving.steady import SteadyModel
from kvopt.units import GB, US_PER_S


@dataclass(frozen=True, kw_only=True)
class PoolPlan:
    prefill_replicas: int
    decode_replicas: int
    gpus: int
    usd_per_hour: float | None
    ttft_mean_ms: float
    ttft_p99_ms: float
    tpot_mean_ms: float
    tpot_p99_ms: float
    kv_transfer_ms: float
    meets_slo: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def kv_transfer_s(prefill: Replica, decode: Replica, prompt_tokens: float, *,
                  same_node: bool) -> float:
    """Seconds to move one prompt's KV from the prefill to the decode replica."""
    data = interconnect_data().get("kv_transfer") or {}
    origin = "models/interconnect.yaml kv_transfer"
    per_gpu = prompt_tokens * prefill.kv_bytes_per_token  # each GPU holds its shard
    if same_node and prefill.gpu is decode.gpu and prefill.gpu.interconnect_kind != "pcie":
        eff, _ = sourced(data["intra_node"]["efficiency"], "intra_node.efficiency", origin)
        bw = prefill.gpu.interconnect_bandwidth_gb_s * GB / 2 * float(eff or 1.0)
        return per_gpu / bw
    node = data["inter_node"]
    bw_v, _ = sourced(node["bandwidth_gb_s_per_gpu"], "inter_node.bandwidth", origin)
    eff, _ = sourced(node["efficiency"], "inter_node.efficiency", origin)
    lat, _ = sourced(node["latency_us"], "inter_node.latency_us", origin)
    return float(lat or 0.0) / US_PER_S + per_gpu / (float(bw_v or 1.0) * GB * float(eff or 1.0))


def plan_pools(prefill: Replica, decode: Replica, *, rate_rps: float, input_dist: LengthDist,
               output_dist: LengthDist, slo: Slo | None = None, max_replicas: int = 16,
               same_node: bool = False) -> tuple[PoolPlan | None, list[PoolPlan]]:
    """Every (Np, Nd) up to ``max_replicas`` each, and the cheapest one meeting ``slo``
    (fewest GPUs, then lowest cost); None when none does."""
    if not rate_rps > 0:
        raise InputError("--rps", rate_rps, "must be > 0")
    for rep in (prefill, decode):
        check_context(rep, input_dist, output_dist)
        if not rep.fits:
            raise InputError("model", rep.model.name,
                             f"does not fit on {rep.n_gpus}x {rep.gpu.id}")
    slo = slo or Slo()
    pre_model = SteadyModel(step_cost_for(prefill), input_dist, fixed(1))
    dec_model = SteadyModel(step_cost_for(decode), input_dist, output_dist, prompt_cached=True)
    xfer = kv_transfer_s(prefill, decode, input_dist.mean, same_node=same_node)
    p_price = price_for(prefill.gpu.id)
    d_price = price_for(decode.gpu.id)
    pre_stats = [pre_model.poisson(rate_rps / n) for n in range(1, max_replicas + 1)]
    dec_stats = [dec_model.poisson(rate_rps / n) for n in range(1, max_replicas + 1)]
    rows: list[PoolPlan] = []
    for i, ps in enumerate(pre_stats, start=1):
        for j, ds in enumerate(dec_stats, start=1):
            ok = not ps.saturated and not ds.saturated
            ttft_mean = ps.ttft_s[0] + xfer + ds.ttft_s[0]
            ttft_p99 = ps.ttft_s[3] + xfer + ds.ttft_s[3]
            tpot_mean, tpot_p99 = ds.tpot_s[0], ds.tpot_s[3]
            meets = ok and (slo.ttft_p99_ms is None or ttft_p99 * 1e3 <= slo.ttft_p99_ms) and (
                slo.tpot_p99_ms is None or tpot_p99 * 1e3 <= slo.tpot_p99_ms)
            cost = (p_price.usd_per_gpu_hour * prefill.n_gpus * i + d_price.usd_per_gpu_hour
                    * decode.n_gpus * j) if p_price and d_price else None
            rows.append(PoolPlan(
                prefill_replicas=i, decode_replicas=j,
                gpus=i * prefill.n_gpus + j * decode.n_gpus,
                usd_per_hour=cost, ttft_mean_ms=ttft_mean * 1e3, ttft_p99_ms=ttft_p99 * 1e3,
                tpot_mean_ms=tpot_mean * 1e3, tpot_p99_ms=tpot_p99 * 1e3,
                kv_transfer_ms=xfer * 1e3, meets_slo=meets))
    good = [r for r in rows if r.meets_slo]
    best = min(good, key=lambda r: (r.gpus, r.usd_per_hour or 0.0, r.ttft_p99_ms),
               default=None)
    return best, rows
