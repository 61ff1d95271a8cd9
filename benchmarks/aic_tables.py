"""aiconfigurator's measured kernel tables and the work kvopt counts for each row.

The tables ship in the PyPI package ``aiconfigurator-core==0.12.0`` (a dependency of
``aiconfigurator==0.12.0``; Apache-2.0, NVIDIA) as
``aiconfigurator_core/systems/data/<system>/<op>/<engine>/<version>/<table>.parquet``, found
through the installed package (``importlib.resources``). ``latency`` is milliseconds per op
call, CUDA-event timed while replaying a CUDA graph. Only ``systems/data`` and
``systems/query_versions.yaml`` are read; the package's held-out evaluation file (its name
starts with ``silicon_sample``) is never opened, listed or loaded.

The work of a row (FLOPs, bytes, launches) is computed the way :mod:`kvopt.physics.ops` and
:mod:`kvopt.serving.stepcost` count it, so a fitted curve prices kvopt's ops exactly as it
priced the table. Used by ``fit_efficiency.py``, ``kernel_transfer.py`` and the tests (on the
small samples in ``benchmarks/data``, without aiconfigurator installed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # kvopt from this checkout (the fit venv does not install it)
    sys.path.insert(0, str(ROOT))

from kvopt.catalog.gpus import load_gpu  # noqa: E402
from kvopt.physics.kernels import causal_pairs  # noqa: E402

AIC_VERSION = "0.12.0"
PACKAGE = "aiconfigurator_core"
# aiconfigurator system -> kvopt GPU card (systems without a kvopt card are not fitted:
# b60; a100_pcie, a30, h100_pcie and l4 ship no tables)
SYSTEMS = {"h100_sxm": "H100-SXM", "h200_sxm": "H200", "b200_sxm": "B200",
           "b300_sxm": "B300", "gb200": "GB200", "gb300": "GB300",
           "a100_sxm": "A100-SXM-80GB", "l40s": "L40S",
           "rtx_pro_6000_server": "RTX-PRO-6000-Server"}
# kernel families: GPUs of one architecture (and market) whose kernels are fitted together,
# each row priced with its own card: H100 SXM and H200 are one die (GH100); B200, GB200,
# B300 and GB300 are datacenter Blackwell (memory-bound kernels run at the same fraction of
# each card's bandwidth: GB200/B200 0.97-0.98 and B300/B200 1.00 on decode GEMMs, 7.7 vs 8.0
# TB/s)
FAMILIES = {"hopper": ("h100_sxm", "h200_sxm"),
            "blackwell": ("b200_sxm", "gb200", "b300_sxm", "gb300"),
            "ampere": ("a100_sxm",), "ada": ("l40s",), "blackwell-rtx": ("rtx_pro_6000_server",)}
ENGINES = ("trtllm", "vllm", "sglang")
ACT_BYTES = 2.0  # bf16 activations between kernels (kvopt's Precision.activation_bytes)
KV_BYTES = {"bfloat16": 2.0, "float16": 2.0, "fp8": 1.0}
# GEMM table dtype -> (kvopt curve key, peak dtype of the card, weight bytes per element as
# kvopt's precision.yaml counts them, activations quantized by the path)
GEMM_DTYPES: dict[str, tuple[str, str, float, bool]] = {
    "bfloat16": ("bf16", "bf16", 2.0, False),
    "fp8": ("fp8", "fp8", 1.0, True),  # per-tensor activation scales (dynamic, in the timing)
    # static (calibrated) per-tensor activation scales: the fp8 rows less the dynamic scale
    # computation timed on its own (quantize/computescale_perf), as aiconfigurator derives
    # its fp8_static mode (sdk/perf_database.py, _gemm_key_names); the quantize pass stays
    "fp8_static": ("fp8_static", "fp8", 1.0, True),
    "fp8_block": ("fp8_block", "fp8", 1.0 + 4 / 128**2, True),  # 1x128 / 128x128 scales
    "nvfp4": ("fp4", "fp4", 0.5 + 1 / 16, True),  # E2M1 + one E4M3 scale per 16
    "int4_wo": ("int4", "bf16", (4 + 20 / 128) / 8, False),  # W4A16, group 128
    "sq": ("int8", "int8", 1.0, True),  # SmoothQuant W8A8
}
# MoE table dtype -> (kvopt curve key, peak dtype, weight bytes per element)
MOE_DTYPES: dict[str, tuple[str, str, float]] = {
    "bfloat16": ("bf16", "bf16", 2.0), "fp8": ("fp8", "fp8", 1.0),
    "fp8_block": ("fp8_block", "fp8", 1.0 + 4 / 128**2), "nvfp4": ("fp4", "fp4", 0.5625),
    "int4_wo": ("int4", "bf16", (4 + 20 / 128) / 8),
    "w4a16_mxfp4": ("int4", "bf16", 0.5 + 1 / 32),
}


def data_root() -> Path:
    """``aiconfigurator_core/systems/data`` of the installed package."""
    from importlib.resources import files

    return Path(str(files(PACKAGE).joinpath("systems", "data")))


def _query_versions() -> dict[str, Any]:
    from importlib.resources import files

    import yaml

    text = files(PACKAGE).joinpath("systems", "query_versions.yaml").read_text()
    return dict(yaml.safe_load(text) or {})


def _vkey(v: str) -> tuple[Any, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return (0, Version(v))
    except InvalidVersion:
        return (1, v)


def pick_version(system: str, op: str, engine: str, table: str) -> str | None:
    """The version aiconfigurator queries: its ``current`` slot where that folder has the
    table, else the newest older folder that has it (aiconfigurator's backward fill, never
    forward); engines without a slot (nccl): the newest folder with the table."""
    base = data_root() / system / op / engine
    if not base.is_dir():
        return None
    have = sorted((p.name for p in base.iterdir() if (p / table).is_file()), key=_vkey)
    if not have:
        return None
    q = _query_versions()
    slot = ((q.get("overrides") or {}).get(system) or {}).get(engine) or (
        q.get("defaults") or {}).get(engine)
    current = (slot or {}).get("current")
    if current is None:
        return have[-1]
    older = [v for v in have if _vkey(v) <= _vkey(current)]
    return older[-1] if older else None


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    path: str  # relative to site-packages: aiconfigurator_core/systems/data/...
    version: str  # the engine (or NCCL) version folder

    @property
    def gpu(self) -> str:
        """The kvopt card of the table's system."""
        return SYSTEMS[self.path.split("/")[3]]


def read_table(system: str, op: str, engine: str, table: str,
               columns: list[str] | None = None, version: str | None = None) -> Table | None:
    """One table, with a ``gpu`` column (the kvopt card its rows are priced with)."""
    v = version or pick_version(system, op, engine, table)
    if v is None:
        return None
    rel = f"{PACKAGE}/systems/data/{system}/{op}/{engine}/{v}/{table}"
    assert "silicon_sample" not in rel
    frame = pd.read_parquet(data_root() / system / op / engine / v / table, columns=columns)
    return Table(frame.assign(gpu=SYSTEMS[system]), rel, v)


def card_arrays(frame: pd.DataFrame, peak_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(dense peak of ``peak_dtype``, spec bandwidth) of each row's card (``gpu`` column)."""
    peak = np.empty(len(frame))
    bw = np.empty(len(frame))
    ids = frame["gpu"].to_numpy()
    for gpu in np.unique(ids):
        card = load_gpu(str(gpu))
        sel = ids == gpu
        peak[sel] = card.peak_flop_s(peak_dtype)
        bw[sel] = card.bandwidth_bytes_s
    return peak, bw


# -- work per row, as kvopt counts it ----------------------------------------------------------

@dataclass(frozen=True)
class GemmRows:
    flops: np.ndarray
    nbytes: np.ndarray
    quant_elems: np.ndarray
    peak: np.ndarray  # FLOP/s of each row's card
    bw: np.ndarray  # bytes/s
    t: np.ndarray  # seconds


def gemm_rows(frame: pd.DataFrame, dtype: str) -> GemmRows:
    """``X[m,k] W[k,n]``: ``2 m n k`` FLOP; bytes = weights + ``m (k + n)`` bf16 activations
    (kvopt's ``_gemm``); ``m k`` activation elements enter the quantization pass. ``dtype``:
    the table's ``gemm_dtype``."""
    _, peak_dtype, wb, quant = GEMM_DTYPES[dtype]
    m, n, k = (frame[c].to_numpy(np.float64) for c in ("m", "n", "k"))
    peak, bw = card_arrays(frame, peak_dtype)
    return GemmRows(flops=2.0 * m * n * k, nbytes=k * n * wb + m * (k + n) * ACT_BYTES,
                    quant_elems=m * k if quant else np.zeros_like(m), peak=peak, bw=bw,
                    t=frame["latency"].to_numpy(np.float64) * 1e-3)


@dataclass(frozen=True)
class AttentionRows:
    phase: str  # context | generation
    seqs: np.ndarray
    new: np.ndarray
    past: np.ndarray
    window: np.ndarray  # inf: full attention
    flops_per_pair: np.ndarray
    kv_bytes_per_key: np.ndarray
    qo_bytes: np.ndarray
    peak: np.ndarray  # bf16 FLOP/s of each row's card (kvopt prices attention math in 16 bit)
    bw: np.ndarray
    t: np.ndarray


def attention_rows(frame: pd.DataFrame, phase: str, mla: bool = False) -> AttentionRows:
    """One attention call per row: ``batch_size`` sequences; context rows prefill ``isl``
    tokens after ``step`` cached ones, generation rows decode one token after ``step``.
    Heads are per GPU. GQA/MHA: ``4 h d`` FLOP a pair, K and V cached (``2 kvh d`` values a
    key); MLA (DeepSeek-V3: r_kv 512, rope 64, nope 128, v 128): absorbed in decode
    (``2 h (2 r + rope)`` a pair, latent ``r + rope`` cached), expanded in prefill
    (``2 h (nope + rope + v)`` a pair), as kvopt's ops count them."""
    b = frame["batch_size"].to_numpy(np.float64)
    h = frame["num_heads"].to_numpy(np.float64)
    kvb = frame["kv_cache_dtype"].map(KV_BYTES).fillna(2.0).to_numpy(np.float64)
    if mla:
        r, rope, nope, v = 512.0, 64.0, 128.0, 128.0
        kv_key = (r + rope) * kvb
        dims = (2 * r + rope) if phase == "generation" else (nope + rope + v)
    else:
        kvh = frame["num_key_value_heads"].to_numpy(np.float64)
        d = frame["head_dim"].to_numpy(np.float64)
        kv_key = 2 * kvh * d * kvb
        dims = 2 * d
    step = frame["step"].to_numpy(np.float64) if "step" in frame else np.zeros_like(b)
    new = np.ones_like(b) if phase == "generation" else frame["isl"].to_numpy(np.float64)
    if "window_size" in frame:
        w = frame["window_size"].to_numpy(np.float64)
        window = np.where(w > 0, w, np.inf)
    else:
        window = np.full_like(b, np.inf)
    peak, bw = card_arrays(frame, "bf16")
    return AttentionRows(phase=phase, seqs=b, new=new, past=step, window=window,
                         flops_per_pair=2 * h * dims, kv_bytes_per_key=kv_key,
                         qo_bytes=h * dims * ACT_BYTES, peak=peak, bw=bw,
                         t=frame["latency"].to_numpy(np.float64) * 1e-3)


def attention_work(rows: AttentionRows, pad: float) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, bytes) of each row with ``pad`` tokens of padding, the forms of
    :func:`kvopt.physics.kernels.decode_work` / ``prefill_work`` written row-wise (each row has
    its own window)."""
    b, n, s, w = rows.seqs, rows.new, rows.past, rows.window
    if rows.phase == "generation":
        keys = np.minimum(s + 1.0, w) + pad
        flops = rows.flops_per_pair * b * keys
        nbytes = b * (keys * rows.kv_bytes_per_key + rows.kv_bytes_per_key + rows.qo_bytes)
        return flops, nbytes
    pairs = np.empty_like(b)
    for wv in np.unique(w):
        sel = w == wv
        pairs[sel] = causal_pairs(n[sel] + pad, s[sel], float(wv))
    held = np.minimum(s + n, w)
    return (rows.flops_per_pair * b * pairs,
            b * ((held + n) * rows.kv_bytes_per_key + n * rows.qo_bytes))


def ape(pred: np.ndarray, meas: np.ndarray) -> tuple[float, float]:
    """(median, p90) of |pred / measured - 1| in %."""
    e = np.abs(pred / meas - 1.0)
    return (round(float(np.median(e)) * 100, 2), round(float(np.quantile(e, 0.9)) * 100, 2))


# -- Gated DeltaNet (linear attention) ----------------------------------------------------------

GDN_KERNELS = 2  # kernels of one layer's mixer per phase: short convolution + delta rule


@dataclass(frozen=True)
class GdnRows:
    flops: np.ndarray
    nbytes: np.ndarray
    peak: np.ndarray  # bf16 FLOP/s of each row's card
    bw: np.ndarray
    t: np.ndarray


def gdn_frame(frame: pd.DataFrame, phase: str) -> pd.DataFrame:
    """One Gated DeltaNet layer's mixer per shape: the fastest timing of each kernel of the
    phase (context: causal_conv1d_fn + the chunked delta rule; generation:
    causal_conv1d_update + the recurrent delta rule), summed; shapes missing a kernel out."""
    keys = ["gpu", "batch_size", "seq_len", "d_conv", "num_k_heads", "head_k_dim",
            "num_v_heads", "head_v_dim"]
    d = frame[frame.phase == phase]
    per = d.groupby([*keys, "kernel_source"], as_index=False)["latency"].min()
    out = per.groupby(keys, as_index=False).agg(latency=("latency", "sum"),
                                                kernels=("kernel_source", "nunique"))
    return out[out.kernels == GDN_KERNELS].drop(columns="kernels").reset_index(drop=True)


def gdn_rows(frame: pd.DataFrame, phase: str) -> GdnRows:
    """kvopt's work of each row (:func:`kvopt.physics.mixers.linear_group`, heads per GPU as
    the table gives them): ``batch_size`` sequences prefilling ``seq_len`` tokens (context)
    or decoding one token each."""
    from kvopt.catalog.model_spec import LinearAttnSpec
    from kvopt.physics.mixers import linear_group

    state_bytes = 4.0  # the tables' models (Qwen3.5) keep the state in float32 (mamba_ssm_dtype)
    flops = np.empty(len(frame))
    nbytes = np.empty(len(frame))
    cols = ["num_k_heads", "num_v_heads", "head_k_dim", "head_v_dim", "d_conv"]
    for shape, sel in frame.groupby(cols).groups.items():
        nk, nv, dk, dv, conv = (int(x) for x in shape)
        g = linear_group(LinearAttnSpec(num_key_heads=nk, num_value_heads=nv, key_head_dim=dk,
                                        value_head_dim=dv, conv_kernel=conv,
                                        state_value_bytes=state_bytes),
                         tp=1, layers=1, act_bytes=ACT_BYTES)
        rows = frame.loc[sel]
        b = rows["batch_size"].to_numpy(np.float64)
        if phase == "context":
            f, nb = g.prefill_work(new=rows["seq_len"].to_numpy(np.float64), past=0.0,
                                   pad_tokens=0.0)
            f, nb = f * b, nb * b
        else:
            f, nb = g.decode_work(keys=0.0, held=b, seqs=b, pad_tokens=0.0)
        idx = frame.index.get_indexer(sel)
        flops[idx], nbytes[idx] = f, nb
    peak, bw = card_arrays(frame, "bf16")
    return GdnRows(flops, nbytes, peak, bw, frame["latency"].to_numpy(np.float64) * 1e-3)

