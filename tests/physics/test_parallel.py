"""Parallelism beyond TP: layouts, the busiest expert rank, the collectives of EP/DP/PP
(hand-computed, with the arithmetic here), weights per GPU and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvopt.catalog.gpus import load_gpu
from kvopt.catalog.models import load_model
from kvopt.errors import InputError
from kvopt.physics import parallel as par
from kvopt.physics.collectives import (
    all_to_all_time_s,
    gather_time_s,
    moe_all_to_all_curve,
    network,
    p2p_time_s,
    span,
)
from kvopt.physics.comm import link_bytes_s
from kvopt.physics.expert_load import (
    busiest_rank_factor,
    expected_max_normal,
    ranks_per_token,
    touched_experts,
)
from kvopt.physics.memory import weight_bytes_per_gpu
from kvopt.physics.parallel_ops import expert_op, moe_comm_s, weight_bytes
from kvopt.physics.precision import resolve_precision

H100 = load_gpu("H100-SXM")
GB200 = load_gpu("GB200")


# ------------------------------------------------------------------------ layouts
def test_layouts_parse_label_and_count_gpus() -> None:
    lay = par.parse("tp4ep8dp2")
    assert (lay.tp, lay.ep, lay.dp, lay.pp, lay.gpus, lay.world, lay.moe_tp) == (
        4, 8, 2, 1, 8, 8, 1)
    assert lay.label == "tp4ep8dp2" and par.parse("dp2ep8tp4") == lay
    assert par.parse("tp8").plain and par.parse("pp2tp2").label == "tp2pp2"
    assert par.Parallel(tp=8, ep=4).moe_tp == 2
    for bad in ("", "tp", "tp4tp2", "tp4x", "ep8", "tp0"):
        with pytest.raises(InputError):
            lay = par.parse(bad)
            par.Parallel(tp=lay.tp, ep=lay.ep * 3, dp=lay.dp, pp=lay.pp)  # ep8 alone: 1 GPU
    assert [x.label for x in par.layouts((1, 8), (1, 8), (1, 8))] == [
        "tp1", "tp1dp8", "tp1ep8dp8", "tp8", "tp8ep8", "tp8dp8", "tp8ep8dp8"]


def test_layout_checks_name_the_rule() -> None:
    dense, moe = load_model("Llama-3.1-8B"), load_model("Qwen3-30B-A3B")
    with pytest.raises(InputError, match="mixture-of-experts"):
        par.check(dense, par.Parallel(tp=2, ep=2))
    with pytest.raises(InputError, match="mixture-of-experts"):
        par.check(dense, par.Parallel(tp=1, dp=2))
    with pytest.raises(InputError, match="128 routed experts"):
        par.check(moe, par.Parallel(tp=1, dp=3, ep=3))
    with pytest.raises(InputError, match="48 layers"):
        par.check(moe, par.Parallel(tp=1, pp=49))
    with pytest.raises(InputError, match="tp x dp = 2"):
        par.Parallel(tp=2, ep=4)
    par.check(dense, par.Parallel(tp=2, pp=2))  # PP runs dense models
    assert par.stage_layers(dense, 3) == 11  # ceil(32 / 3)


# ------------------------------------------------------------------ the busiest expert rank
def test_busiest_rank_by_hand() -> None:
    """One token, top-8 of 256 experts, 8 ranks of 32: pairs on a rank have mean k/ep = 1,
    variance k (1/8)(7/8)(248/255) = 0.85098 (hypergeometric); the busiest of 8 exchangeable
    ranks (sum fixed) is mu + s sqrt(8/7) e(8), e(8) = 1.42360."""
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-6)
    assert expected_max_normal(8) == pytest.approx(1.42360, abs=1e-4)
    var = 8 * (1 / 8) * (7 / 8) * (248 / 255)
    assert var == pytest.approx(0.850980, rel=1e-5)
    expected = 1 + math.sqrt(var) * math.sqrt(8 / 7) * 1.42360
    assert float(busiest_rank_factor(1.0, experts=256, k=8, ep=8)) == pytest.approx(
        expected, rel=1e-4)  # 2.40393
    assert float(busiest_rank_factor(5.0, experts=256, k=8, ep=1)) == 1.0
    # distinct ranks one token reaches: 8 (1 - C(224, 8) / C(256, 8)) = 5.2947
    miss = math.prod((224 - i) / (256 - i) for i in range(8))
    assert ranks_per_token(experts=256, k=8, ep=8) == pytest.approx(8 * (1 - miss))
    assert ranks_per_token(experts=256, k=8, ep=8) == pytest.approx(5.2947, abs=1e-4)
    assert ranks_per_token(experts=8, k=2, ep=8) == pytest.approx(2.0)  # one expert each
    assert float(touched_experts(1.0, experts=64, k=8)) == pytest.approx(8.0)


def test_busiest_rank_matches_sampled_uniform_routing() -> None:
    """The normal approximation against seeded sampling of top-k routing (within 5%)."""
    rng = np.random.default_rng(0)
    for tokens, ep in ((8, 8), (64, 8), (512, 8), (64, 64)):
        top = []
        for _ in range(300):
            chosen = np.argsort(rng.random((tokens, 256)), axis=1)[:, :8]
            top.append(np.bincount((chosen // (256 // ep)).ravel(), minlength=ep).max())
        sampled = np.mean(top) / (tokens * 8 / ep)
        assert float(busiest_rank_factor(tokens, experts=256, k=8, ep=ep)) == pytest.approx(
            sampled, rel=0.05), (tokens, ep)


# ------------------------------------------------------------------ collectives by hand
def test_all_to_all_inside_an_nvswitch_domain_by_hand() -> None:
    """8 H100s (one NVSwitch domain, 450 GB/s per direction): each GPU sends S = 45 MB to its
    peers; the busiest link carries S, so t = 13.98 us + 45e6 / (450e9 x 0.45) = 236.2 us."""
    c = moe_all_to_all_curve("nvlink")
    assert (c.latency_s, c.oneshot_eff) == (pytest.approx(13.98e-6), 0.45)
    assert link_bytes_s(H100) == 450e9
    t = float(all_to_all_time_s(H100, 8, 45e6))
    assert t == pytest.approx(13.98e-6 + 45e6 / (450e9 * 0.45), rel=1e-9)
    assert t == pytest.approx(236.2e-6, rel=1e-3)


def test_all_to_all_across_domains_by_hand() -> None:
    """16 H100s = 2 HGX nodes: R = 10 MB leaves each GPU through its 50 GB/s NIC
    (58.93 us + 10e6 / (50e9 x 0.784) = 314.0 us), S = 2 MB goes to its domain's peers
    (13.98 us + 2e6 / (450e9 x 0.45) = 23.86 us): the NIC sets the time."""
    assert span(H100, 16).nodes == 2 and span(GB200, 64).nodes == 1  # NVL72: one domain
    net = network()
    assert (net.nic_bytes_s, net.efficiency) == (50e9, 0.784)
    t = float(all_to_all_time_s(H100, 16, 2e6, 10e6))
    assert t == pytest.approx(58.93e-6 + 10e6 / (50e9 * 0.784), rel=1e-9)
    assert t == pytest.approx(314.0e-6, rel=1e-3)


def test_all_gather_by_hand() -> None:
    """All-gather of B = 8 MB over 8 H100s: L = 7/8 x 8e6 / 450e9 = 15.556 us at line rate;
    t = 10.47 + min(L / 0.229, 19.43 + L / 0.629) = 10.47 + min(67.93, 44.16) = 54.63 us."""
    load = 7 / 8 * 8e6 / 450e9
    assert load == pytest.approx(15.556e-6, rel=1e-4)
    expected = 10.47e-6 + min(load / 0.229, 19.43e-6 + load / 0.629)
    assert float(gather_time_s(H100, 8, 8e6)) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(54.63e-6, rel=1e-3)
    assert float(gather_time_s(H100, 1, 8e6)) == 0.0


def test_pipeline_hand_off_and_cycle_by_hand() -> None:
    """A stage hands 1 MB to the next over NVLink (NCCL all-to-all curve: 10.94 us +
    min(1e6/450e9/0.256, 10.82 us + 1e6/450e9/0.575) = 10.94 + 8.68 = 19.62 us) or a NIC
    (58.93 + 1e6 / (50e9 x 0.784) = 84.44 us). Cycles of micro-batches of 10 ms, 0.1 ms of
    hand-offs, 2 stages of a 61-layer model (share 31/61): one micro-batch 10.1 ms (half the
    stages idle: the bubble); two: max(10.1, 2 x 10 x 31/61 = 10.164) = 10.164 ms."""
    line = 1e6 / 450e9
    nvl = 10.94e-6 + min(line / 0.256, 10.82e-6 + line / 0.575)
    assert float(p2p_time_s(H100, 1e6, across_nodes=False)) == pytest.approx(nvl, rel=1e-9)
    assert nvl == pytest.approx(19.62e-6, rel=1e-3)
    nic = 58.93e-6 + 1e6 / (50e9 * 0.784)
    assert float(p2p_time_s(H100, 1e6, across_nodes=True)) == pytest.approx(nic, rel=1e-9)
    share = 31 / 61
    one = par.pipeline_cycle_s(micro_s=10e-3, micro=1.0, handoff_s=0.1e-3, stage_share=share)
    two = par.pipeline_cycle_s(micro_s=10e-3, micro=2.0, handoff_s=0.1e-3, stage_share=share)
    assert float(one) == pytest.approx(10.1e-3)
    assert float(two) == pytest.approx(2 * 10e-3 * 31 / 61) == pytest.approx(10.164e-3, rel=1e-4)
    bubble = 1 - 1 * 10e-3 * share / float(one)
    assert bubble == pytest.approx(0.497, abs=1e-3)
    assert list(par.micro_batches(np.array([0.2, 1.0, 3.0, 9.0]), 4)) == [1, 1, 3, 4]


def test_moe_dispatch_of_attention_dp_by_hand() -> None:
    """DeepSeek-V3 (58 MoE layers, hidden 7168) on 8 H200 as tp1 dp8 ep8, 64 tokens in all
    (bf16, 2 B): vLLM all-gathers and reduce-scatters B = 64 x 7168 x 2 = 917,504 B over the
    8 ranks per layer; TensorRT-LLM on GB200 NVL72 dispatches and combines all-to-all: each
    GPU sends its 8 tokens to 5.2947 ranks x 7/8 remote ones."""
    m = load_model("DeepSeek-V3")
    lay = par.Parallel(tp=1, dp=8, ep=8)
    h200 = load_gpu("H200")
    b = 64 * 7168 * 2.0
    ag = float(gather_time_s(h200, 8, b, "all_gather"))
    rs = float(gather_time_s(h200, 8, b, "reduce_scatter"))
    got = float(moe_comm_s(m, lay, h200, tokens=64, act_bytes=2.0,
                           dispatch="allgather_reducescatter"))
    assert got == pytest.approx(58 * (ag + rs), rel=1e-9)
    per_gpu = b / 8
    send = per_gpu * ranks_per_token(experts=256, k=8, ep=8) * 7 / 8
    one = 13.98e-6 + send / (900e9 * 0.45)
    got = float(moe_comm_s(m, lay, GB200, tokens=64, act_bytes=2.0, dispatch="all_to_all"))
    assert got == pytest.approx(58 * 2 * one, rel=1e-9)
    assert float(moe_comm_s(m, par.Parallel(tp=8, ep=8), h200, tokens=64, act_bytes=2.0,
                            dispatch="all_to_all")) == 0.0  # dp 1: the TP all-reduce


# ------------------------------------------------------------------ weights per GPU
def test_weights_per_gpu_by_layout() -> None:
    """Qwen3-30B-A3B (48 layers, 128 experts of 3 x 2048 x 768): EP over the same TP group
    holds as much expert weight per GPU as TP; attention DP spreads the experts over
    tp x dp GPUs and replicates the rest; PP holds ceil(48/2) = 24 layers and one
    vocabulary matrix."""
    m = load_model("Qwen3-30B-A3B")
    prec = resolve_precision(gpu=H100, weights="bf16", kv_dtype=None, engine="vllm",
                             hidden_size=m.hidden_size)
    tp2 = weight_bytes_per_gpu(m, 2, prec)
    assert weight_bytes(m, par.Parallel(tp=2), prec) == tp2
    assert weight_bytes(m, par.Parallel(tp=2, ep=2), prec) == pytest.approx(tp2)
    experts = 48 * 128 * 3 * 2048 * 768 * 2.0
    dp = weight_bytes(m, par.Parallel(tp=1, dp=2, ep=2), prec)
    assert dp == pytest.approx(weight_bytes_per_gpu(m, 1, prec) - experts / 2)
    pp = weight_bytes(m, par.Parallel(tp=1, pp=2), prec)
    vocab = 151936 * 2048 * 2.0
    full = weight_bytes_per_gpu(m, 1, prec)
    assert pp == pytest.approx((full - 2 * vocab) / 2 + vocab)


MOE_MODELS = ("Qwen3-30B-A3B", "Mixtral-8x7B", "DeepSeek-V3", "Qwen2-57B-A14B")


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MOE_MODELS), tp=st.sampled_from((1, 2, 4, 8)),
       ep_pow=st.integers(0, 3), dp=st.sampled_from((1, 2, 4)))
def test_ep_never_adds_expert_weights_per_gpu(model: str, tp: int, ep_pow: int,
                                              dp: int) -> None:
    """Experts per GPU under any EP/DP layout are at most those of TP alone over ``tp``
    GPUs (``W = tp dp >= tp``), and EP over the same GPUs changes nothing."""
    m = load_model(model)
    ep = 2**ep_pow
    if (tp * dp) % ep or m.moe is None or m.moe.num_experts % ep:
        return
    prec = resolve_precision(gpu=H100, weights="fp8", kv_dtype=None, engine="vllm",
                             hidden_size=m.hidden_size)
    lay = par.Parallel(tp=tp, ep=ep, dp=dp)
    one = expert_op(m, lay, prec, 1.0)
    plain = expert_op(m, par.Parallel(tp=tp), prec, 1.0)
    assert one is not None and plain is not None
    per_expert, plain_per_expert = one.weight_matrix_bytes, plain.weight_matrix_bytes
    assert per_expert * m.moe.num_experts / ep <= plain_per_expert * m.moe.num_experts + 1e-6
    no_ep = weight_bytes(m, par.Parallel(tp=tp, dp=dp, ep=1), prec)
    assert weight_bytes(m, lay, prec) == pytest.approx(no_ep)


@settings(max_examples=60, deadline=None)
@given(n=st.sampled_from((2, 4, 8, 16, 32, 64, 72)), tokens=st.floats(1, 1e5),
       gpu=st.sampled_from(("H100-SXM", "B200", "GB200", "MI300X", "L40S")))
def test_all_to_all_is_never_faster_than_the_links(n: int, tokens: float, gpu: str) -> None:
    """More EP ranks over the same fabric never make a token's all-to-all cheaper than
    its bytes at the line rate of the links it crosses (and the latency)."""
    g = load_gpu(gpu)
    sp = span(g, n)
    d = sp.per_node
    send = tokens * 7168 * 2.0
    intra = send * (d - 1) / n
    inter = send * (n - d) / n
    t = float(all_to_all_time_s(g, n, intra, inter))
    bound = 0.0
    if d > 1:
        bound = intra / (d - 1) / (link_bytes_s(g) if g.interconnect_kind != "xgmi"
                                   else g.interconnect_bandwidth_gb_s * 1e9 / 2 / 7)
    if sp.nodes > 1:
        bound = max(bound, inter / network().nic_bytes_s)
    assert t >= bound * (1 - 1e-9)
    assert t >= moe_all_to_all_curve("nvlink").latency_s or g.interconnect_kind != "nvlink"
