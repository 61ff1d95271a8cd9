"""Fit and check kvopt's collectives of expert, data and pipeline parallelism
(:mod:`kvopt.physics.collectives`) on aiconfigurator 0.12.0's measured communication tables.

Run with the aiconfigurator package installed (``aic_tables.py``; kvopt from this checkout):
``python benchmarks/fit_collectives.py``. It prints the constants to copy into
``models/interconnect.yaml`` (``collectives.nvlink``, ``moe_all_to_all.nvlink``,
``inter_node``) and the errors of the forms on every table they are fitted or checked on
(median / p90 of |predicted / measured - 1|, %):

1. **NCCL all-gather, reduce-scatter, all-to-all** inside one NVLink domain
   (``comm/nccl/<version>/nccl_perf.parquet``, nccl-tests out-of-place time, ``half``, 2-8
   GPUs; GB200 2-4): ``t = lat + min(L / e1, s + L / e2)``, ``L = (n - 1) / n B / link``,
   pooled over H100 SXM, H200, B200, B300, GB200 and A100 SXM with each card's own link.
2. **MoE all-to-all kernels**, fitted on TensorRT-LLM's NVLink two-sided all-to-all across a
   GB200 NVL72 domain (``gb200/comm/trtllm/1.3.0rc10/trtllm_alltoall_perf.parquet``, bf16,
   EP 2-64, DeepSeek-V3 shapes): each GPU sends every token once to each other rank holding
   one of its experts (:func:`kvopt.physics.expert_load.ranks_per_token`);
   ``t = lat + S (d - 1) / (n - 1) / (link e)``; checked on DeepEP's intra-node kernels
   (``<system>/comm/vllm/0.24.0/moe_a2a_perf.parquet``, ``deepep_ht``).
3. **Between NVLink domains**: DeepEP normal-mode combine (bf16) across 2-8 HGX H100 nodes
   (``h100_sxm/comm/sglang/0.5.6.post2/wideep_deepep_normal_perf.parquet``, 24 SMs) fits the
   NIC's efficiency and latency at ``inter_node.bandwidth_gb_s_per_gpu``.
"""

from __future__ import annotations

import argparse
import sys

import aic_tables as aic
import numpy as np
from scipy.optimize import least_squares

from kvopt.catalog.gpus import load_gpu
from kvopt.physics.expert_load import ranks_per_token

NCCL_SYSTEMS = ("h100_sxm", "h200_sxm", "b200_sxm", "b300_sxm", "gb200", "a100_sxm")
NCCL_OPS = {"all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
            "alltoall": "all_to_all"}
NIC_BYTES_S = 50e9  # models/interconnect.yaml inter_node.bandwidth_gb_s_per_gpu
ACT = 2.0  # bf16 hidden states


def _link(system: str) -> float:
    g = load_gpu(aic.SYSTEMS[system])
    return g.interconnect_bandwidth_gb_s * 1e9 / 2


def _ape(pred: np.ndarray, meas: np.ndarray) -> str:
    r = pred / meas - 1
    e = np.abs(r)
    return (f"{np.median(e) * 100:5.1f} / {np.quantile(e, 0.9) * 100:5.1f} "
            f"(bias {np.median(r) * 100:+.1f})")


def nccl() -> None:
    print("## 1. NCCL collectives inside an NVLink domain (2-regime form, pooled)\n")
    frames = []
    for s in NCCL_SYSTEMS:
        t = aic.read_table(s, "comm", "nccl", "nccl_perf.parquet")
        if t is None or "op_name" not in t.frame:
            continue
        f = t.frame[t.frame["nccl_dtype"] == "half"].assign(system=s, link=_link(s))
        frames.append(f)
        print(f"- {t.path}: {len(f)} rows")
    import pandas as pd

    d = pd.concat(frames)
    for op, name in NCCL_OPS.items():
        x = d[d["op_name"] == op]
        n = x["num_gpus"].to_numpy(float)
        load = (n - 1) / n * x["message_size"].to_numpy(float) * 2 / x["link"].to_numpy()
        t = x["latency"].to_numpy(float) * 1e-3

        def model(p: np.ndarray, load: np.ndarray = load) -> np.ndarray:
            return p[0] * 1e-6 + np.minimum(load / p[1], p[2] * 1e-6 + load / p[3])

        r = least_squares(lambda p, t=t: np.log(model(p) / t), [10, 0.3, 10, 0.6],
                          bounds=([0, 0.01, 0, 0.05], [100, 1.5, 500, 1.5]))
        lat, e1, sw, e2 = r.x
        print(f"\n{name}: latency_us {lat:.2f}, oneshot_efficiency {e1:.3f}, switch_us {sw:.2f}, "
              f"ring_efficiency {e2:.3f}; all {len(t)} rows {_ape(model(r.x), t)}")
        for s in NCCL_SYSTEMS:
            m = x["system"].to_numpy() == s
            if m.any():
                print(f"    {s:9s} {m.sum():4d} rows  {_ape(model(r.x)[m], t[m])}")


def _a2a_send_bytes(tokens: np.ndarray, hidden: np.ndarray, experts: np.ndarray,
                    topk: np.ndarray, ep: np.ndarray, act: float = ACT) -> np.ndarray:
    """Bytes one GPU sends: each token once to every other rank holding one of its experts."""
    ranks = np.array([ranks_per_token(experts=int(e), k=int(k), ep=int(p))
                      for e, k, p in zip(experts, topk, ep, strict=True)])
    return tokens * hidden * act * ranks * (ep - 1) / ep


def moe_a2a() -> tuple[float, float]:
    print("\n## 2. MoE all-to-all kernels inside an NVLink domain\n")
    t = aic.read_table("gb200", "comm", "trtllm", "trtllm_alltoall_perf.parquet")
    assert t is not None
    f = t.frame
    f = f[(f["kernel_source"] == "NVLinkTwoSided") & (f["moe_dtype"] == "bfloat16")
          & f["op_name"].isin(["alltoall_dispatch", "alltoall_combine"])]
    print(f"- {t.path}: {len(f)} rows (NVLinkTwoSided, bf16, dispatch + combine)")
    ep = f["moe_ep_size"].to_numpy(float)
    s = _a2a_send_bytes(f["num_tokens"].to_numpy(float), f["hidden_size"].to_numpy(float),
                        f["num_experts"].to_numpy(float), f["topk"].to_numpy(float), ep)
    link = _link("gb200")
    load = s / link  # one domain: phase(d) d S / (d - 1) = S / link on a switch
    meas = f["latency"].to_numpy(float) * 1e-3

    def model(p: np.ndarray, load: np.ndarray = load) -> np.ndarray:
        return p[0] * 1e-6 + load / p[1]

    r = least_squares(lambda p: np.log(model(p) / meas), [10, 0.5],
                      bounds=([0, 0.01], [200, 1.5]))
    lat, eff = float(r.x[0]), float(r.x[1])
    print(f"\nmoe_all_to_all.nvlink: latency_us {lat:.2f}, efficiency {eff:.3f}; "
          f"all {len(meas)} rows {_ape(model(r.x), meas)}")
    for e in sorted(set(ep)):
        m = ep == e
        print(f"    ep {int(e):3d} {m.sum():4d} rows  {_ape(model(r.x)[m], meas[m])}")
    print("\ncheck on DeepEP high-throughput (vLLM 0.24.0 tables; bf16 bytes):")
    for sysname in ("h100_sxm", "h200_sxm", "b200_sxm", "b300_sxm", "gb200"):
        tb = aic.read_table(sysname, "comm", "vllm", "moe_a2a_perf.parquet")
        if tb is None:
            continue
        g = tb.frame[tb.frame["comm_backend"] == "deepep_ht"]
        epg = g["ep_size"].to_numpy(float)
        sb = _a2a_send_bytes(g["num_tokens"].to_numpy(float), g["hidden_size"].to_numpy(float),
                             g["num_experts"].to_numpy(float), g["topk"].to_numpy(float), epg)
        pred = lat * 1e-6 + sb / _link(sysname) / eff
        meas_s = g["transmit_us"].to_numpy(float) * 1e-6  # this table's times are in us
        big = g["num_tokens"].to_numpy(float) >= 1024
        print(f"    {tb.path}: {len(g)} rows {_ape(pred, meas_s)}"
              f" (>= 1024 tokens: {_ape(pred[big], meas_s[big])})")
    return lat, eff


def inter_node() -> None:
    print("\n## 3. Between NVLink domains (DeepEP normal combine, 2-8 HGX H100 nodes)\n")
    t = aic.read_table("h100_sxm", "comm", "sglang", "wideep_deepep_normal_perf.parquet",
                       version="0.5.6.post2")
    assert t is not None
    f = t.frame
    f = f[(f["node_num"] > 1) & (f["dispatch_sms"] == 24)]
    print(f"- {t.path}: {len(f)} rows (node_num 2-8, 24 SMs, combine: bf16)")
    nodes = f["node_num"].to_numpy(float)
    # normal mode aggregates per node: a token crosses to each remote node holding one of
    # its experts once
    r = _a2a_send_bytes(f["num_token"].to_numpy(float), f["hidden_size"].to_numpy(float),
                        f["num_experts"].to_numpy(float), f["num_topk"].to_numpy(float), nodes)
    load = r / NIC_BYTES_S
    meas = f["combine_transmit_us"].to_numpy(float) * 1e-6

    def model(p: np.ndarray, load: np.ndarray = load) -> np.ndarray:
        return p[0] * 1e-6 + load / p[1]

    r = least_squares(lambda p: np.log(model(p) / meas), [20, 0.5],
                      bounds=([0, 0.01], [500, 1.5]))
    print(f"inter_node: latency_us {r.x[0]:.2f}, efficiency {r.x[1]:.3f}; all {len(meas)} "
          f"rows {_ape(model(r.x), meas)}")
    for nn in sorted(set(nodes)):
        m = nodes == nn
        print(f"    {int(nn)} nodes {m.sum():3d} rows  {_ape(model(r.x)[m], meas[m])}")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(f"aiconfigurator-core {aic.AIC_VERSION} tables under {aic.data_root()}\n")
    nccl()
    moe_a2a()
    inter_node()
    return 0


if __name__ == "__main__":
    sys.exit(main())
