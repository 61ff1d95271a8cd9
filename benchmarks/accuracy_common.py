"""Shared pieces of the accuracy benchmarks on real serving runs
(``accuracy_silicon.py``, ``accuracy_vllm_serving.py``): reading the data, mapping a
Hugging Face id to a catalog model, the KV-dtype rule, why a row cannot be asked, cached
estimates, error statistics and plain-text or Markdown tables.

Errors are signed relative errors ``(predicted - measured) / measured``; a table reports per
group the number of rows ``n``, the median and the 90th percentile of ``|error|`` and the
bias (the median signed error), all in percent.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from kvopt import api
from kvopt.errors import CatalogError, KvoptError

DATA = Path(__file__).resolve().parent / "data"
Row = Mapping[str, str]

# Why a row cannot be asked (a row gets the first that applies, in this order). Reasons
# from kvopt's own refusals come last, when it answers the question with an error.
DISAGG = "disaggregated serving (mode=disagg)"
SPEC = ("speculative decoding (MTP runs, or runs not told apart from them; acceptance rate "
        "not recorded)")
MOE_TP = "MoE parallelism inconsistent (moe_tp_size x moe_ep_size != tp_size x attention_dp)"
LAYOUT = "parallel layout kvopt or the engine cannot run"
MODEL = "model not in catalog"
GPU = "GPU not in catalog"
ENGINE = "engine not in catalog"
PRECISION = "weight precision kvopt has no dtype for"
HEADS = "TP does not divide the attention/KV heads"
FIT = "does not fit (weights + activations)"
DTYPE_GPU = "precision not supported on the GPU"
CONTEXT = "longer than the model's context"
NOT_PREDICTED = "metric kvopt does not predict"
STAGE_MIX = "percentile of a multi-stage run"
KVOPT_ERROR = "other kvopt error"
UNREADABLE = "unreadable row (a cell that is not what its column holds)"

# quantization tags of checkpoint names (nvidia/...-NVFP4, Qwen/...-FP8, RedHatAI/...-FP8-dynamic):
# the architecture is the base model's
_QUANT_TAG = re.compile(r"-(fp8(-dynamic)?|nvfp4|fp4|mxfp4|awq|gptq(-int[48])?|int[48]|w4a16|"
                        r"w8a8)$", re.IGNORECASE)
# checkpoints with the architecture (config.json: model_type, layers, heads, experts) of a
# catalog card under another name
ARCHITECTURE_TWINS = {"DeepSeek-V3.1": "DeepSeek-V3"}


class Inexpressible(Exception):
    """A row kvopt cannot be asked: ``reason`` (one of the labels above) and a detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(text: str | None, default: float = math.nan) -> float:
    """A CSV cell as a float (blank or NaN: ``default``; other text: ValueError)."""
    value = float(text) if text not in (None, "") else math.nan
    return default if math.isnan(value) else value


def measured(text: str | None) -> float:
    """A measured value (NaN when blank or unreadable: that row is not compared)."""
    try:
        return number(text)
    except ValueError:
        return math.nan


@cache
def catalog_model(hf_id: str) -> str | None:
    """The catalog card of a Hugging Face id: kvopt's resolver (ids, aliases, ``-Instruct``
    and organisation dropped) on the id, then on its name without a quantization tag, then
    the architecture twins; None when kvopt has no card."""
    from kvopt.catalog.models import load_model

    name = hf_id.rsplit("/", 1)[-1]
    base = _QUANT_TAG.sub("", name)
    for candidate in (hf_id, base, ARCHITECTURE_TWINS.get(base, "")):
        if not candidate:
            continue
        try:
            return load_model(candidate).name
        except (CatalogError, OSError):
            continue
    return None


@cache
def has_gpu(gpu: str) -> bool:
    """Whether the catalog has a card named ``gpu``."""
    from kvopt.catalog.gpus import load_gpu

    try:
        load_gpu(gpu)
    except CatalogError:
        return False
    return True


@cache
def is_moe(model: str) -> bool:
    from kvopt.catalog.models import load_model

    return load_model(model).is_moe


KV_RULES = ("auto", "bf16", "fp8")


def kv_dtype(rule: str, engine: str, weights: str, default: str = "bf16") -> str:
    """The KV-cache dtype (no dataset records it). ``auto``: FP8 for TensorRT-LLM running an
    FP8/FP4 checkpoint (ModelOpt checkpoints carry ``kv_cache_quant_algo: FP8``, which
    TensorRT-LLM applies), else ``default`` (vLLM's and SGLang's ``kv_cache_dtype=auto``: the
    model's activation dtype); ``bf16``/``fp8``: that dtype everywhere."""
    if rule not in KV_RULES:
        raise ValueError(f"kv rule {rule!r} not in {KV_RULES}")
    if rule != "auto":
        return rule
    if engine.startswith("trtllm") and weights in ("fp8", "fp4"):
        return "fp8"
    return default


def refusal(exc: Exception) -> Inexpressible:
    """kvopt's answer to a question it will not model, as a reason."""
    text = str(exc)
    if not isinstance(exc, KvoptError):
        return Inexpressible(KVOPT_ERROR, f"{type(exc).__name__}: {text[:200]}")
    if ("needs a mixture-of-experts" in text or "expert parallelism must divide" in text
            or "pipeline stages" in text or "every GPU of a stage" in text
            or "one GPU per attention rank" in text or "tensor parallelism only" in text):
        return Inexpressible(LAYOUT, text[:200])
    if "% tp" in text or "divide" in text:
        return Inexpressible(HEADS, text[:200])
    if "do not fit" in text or "leave no room" in text:
        return Inexpressible(FIT, text[:200])
    if "not supported" in text or "tensor-core" in text:
        return Inexpressible(DTYPE_GPU, text[:200])
    if "context" in text:
        return Inexpressible(CONTEXT, text[:200])
    return Inexpressible(KVOPT_ERROR, text[:200])


def cannot_express(exc: Exception) -> dict[str, str]:
    """A row's record fields for a question that failed: kvopt's reason, a bad cell
    (recorded, never fatal) or anything else kvopt raised (recorded, never fatal)."""
    if isinstance(exc, Inexpressible):
        return {"status": "cannot_express", "reason": exc.reason, "detail": exc.detail}
    reason = UNREADABLE if isinstance(exc, ValueError | KeyError | TypeError) else KVOPT_ERROR
    return {"status": "cannot_express", "reason": reason,
            "detail": f"{type(exc).__name__}: {exc}"[:200]}


def _key(kw: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


@cache
def _estimate(key: tuple[tuple[str, Any], ...]) -> Any:
    kw = dict(key)
    if "engine_args" in kw:  # hashed as pairs
        kw["engine_args"] = dict(kw["engine_args"])
    try:
        return api.estimate(**kw)
    except Exception as exc:  # recorded per row: a prediction error never aborts a run
        return refusal(exc)


def release(version: str, source: str = "") -> str:
    """An engine release: the first three numbers of a recorded version (``1.2.0rc6.post2``
    -> ``1.2.0``); "" for a version that is an NVIDIA Dynamo runtime image's tag (Dynamo's
    own version: ``tensorrtllm-runtime:0.8.1.post1`` recorded as ``0.8.1.post1``; a row of
    such an image that records another version, ``1.2.0rc6.post1`` on
    ``tensorrtllm-runtime:0.8.0``, records the engine's), nightly or model-named builds and
    unversioned rows."""
    from kvopt.catalog.engine_versions import version_key

    tag = re.search(r"ai-dynamo/[\w.-]+:([\w.+-]+)", source)
    if not version or (tag is not None and tag.group(1) == version):
        return ""
    nums = version_key(version)
    return ".".join(str(n) for n in nums) if len(nums) == 3 else ""


def fitted_release(engine: str, version: str, source: str = "") -> str | None:
    """The release to ask kvopt for (``engine_version``): the row's :func:`release` when
    ``models/engine_overheads.yaml`` has a fit at or below it, else None (the profile's own
    figures)."""
    from kvopt.catalog.engine_versions import at_or_below

    rel = release(version, source)
    return rel if rel and at_or_below(engine, rel) else None


def estimate(**kw: Any) -> Any:
    """``kvopt.api.estimate(**kw)``, cached on its keywords; raises :class:`Inexpressible`
    when kvopt refuses (every keyword must be hashable)."""
    out = _estimate(_key(kw))
    if isinstance(out, Inexpressible):
        raise out
    return out


def relative_error(pred: float | None, meas: float | None) -> float | None:
    if pred is None or meas is None or not meas or math.isnan(pred) or math.isnan(meas):
        return None
    if math.isinf(pred):
        return math.inf
    return (pred - meas) / meas


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile that keeps infinite values (a saturated prediction)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or xs[lo] == xs[hi]:
        return xs[lo]
    if math.isinf(xs[hi]):
        return xs[hi] if pos > lo else xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def error_stats(errors: Sequence[float]) -> dict[str, float]:
    """n, median and p90 of |error| and median signed error (bias), in percent."""
    return {"n": len(errors),
            "median_abs_pct": 100 * quantile([abs(e) for e in errors], 0.5),
            "p90_abs_pct": 100 * quantile([abs(e) for e in errors], 0.9),
            "bias_pct": 100 * quantile(errors, 0.5)}


def _pct(x: float) -> str:
    if math.isnan(x):
        return "-"
    return ("inf" if x > 0 else "-inf") if math.isinf(x) else f"{x:.1f}"


def render(headers: Sequence[str], rows: Iterable[Sequence[Any]], markdown: bool,
           right: Sequence[int] = ()) -> str:
    """A table as aligned text or Markdown (``right``: right-aligned column indexes)."""
    body = [[str(c) for c in r] for r in rows]
    if markdown:
        align = ["---:" if i in right else "---" for i in range(len(headers))]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, body)])


def accuracy_table(records: Sequence[Mapping[str, Any]], groups: Sequence[str],
                   metrics: Sequence[str], markdown: bool = False,
                   overall: Callable[[Mapping[str, Any]], bool] | None = None) -> str:
    """Error statistics per group (``groups``: record keys) and metric, then one overall row
    per metric (over the records ``overall`` accepts, default all; when they span more than
    one group). A record holds
    ``err_<metric>`` (absent or None where not compared)."""
    every = ("all",) * len(groups)
    by: dict[tuple[Any, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pooled = set()
    for r in records:
        for m in metrics:
            e = r.get(f"err_{m}")
            if e is not None:
                by[tuple(r[g] for g in groups)][m].append(e)
                if overall is None or overall(r):
                    by[every][m].append(e)
                    pooled.add(tuple(r[g] for g in groups))
    keys = sorted(k for k in by if k != every)
    if len(pooled) > 1:  # one group: the overall rows would repeat it
        keys.append(every)
    rows = []
    for k in keys:
        for m in metrics:
            if by[k].get(m):
                s = error_stats(by[k][m])
                rows.append([*k, m, s["n"], _pct(s["median_abs_pct"]), _pct(s["p90_abs_pct"]),
                             _pct(s["bias_pct"])])
    n = len(groups)
    headers = [*groups, "metric", "n", "median abs. error %", "p90 abs. error %", "bias %"]
    return render(headers, rows, markdown, right=(n + 1, n + 2, n + 3, n + 4))


def reasons_table(records: Sequence[Mapping[str, Any]], order: Sequence[str],
                  detail: Callable[[Mapping[str, Any]], str] | None = None,
                  markdown: bool = False) -> str:
    """Rows kvopt cannot express, per reason (in ``order``; others after), with counts and
    the most common details (``detail``: a record's short detail, default its ``detail``)."""
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        if r.get("status") != "ok":
            per[r["reason"]][(detail or (lambda x: str(x.get("detail", ""))))(r)] += 1
    ranked = [x for x in order if x in per] + sorted(x for x in per if x not in order)
    rows = []
    for reason in ranked:
        c = per[reason]
        shown = ", ".join(f"{d} {n}" for d, n in c.most_common(6) if d)
        if len([d for d in c if d]) > 6:
            shown += ", ..."
        rows.append([reason, sum(c.values()), shown])
    rows.append(["total", sum(sum(c.values()) for c in per.values()), ""])
    return render(["reason", "rows", "details"], rows, markdown, right=(1,))


def write_csv(path: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Per-row records (the union of their keys, first-seen order) to ``path``."""
    cols: dict[str, None] = {}
    for r in records:
        cols.update(dict.fromkeys(r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(cols))
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def add_common_args(ap: Any, engines: str, systems: str) -> None:
    """The options both real-run accuracy scripts take (``engines``/``systems``: their help
    text's examples)."""
    ap.add_argument("--csv", metavar="OUT", help="write per-row predictions to OUT")
    ap.add_argument("--engine", help=f"only this engine ({engines})")
    ap.add_argument("--system", help=f"only this hardware ({systems})")
    ap.add_argument("--kv", choices=KV_RULES, default="auto", help="KV-cache dtype rule")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--no-versions", action="store_true",
                    help="ask every row with the engine profiles' own figures (no per-release "
                         "overheads of models/engine_overheads.yaml)")


def print_tail(records: Sequence[Mapping[str, Any]], order: Sequence[str],
               detail: Callable[[Mapping[str, Any]], str], units: str, args: Any,
               started: float) -> None:
    """The end of an accuracy report: the rows kvopt cannot express (``units``: what a row
    is), the per-row CSV when asked, the wall time."""
    import time

    print(f"\nRows kvopt cannot express ({units}, first reason that applies):\n")
    print(reasons_table(records, order, detail, args.markdown))
    if args.csv:
        write_csv(args.csv, records)
        print(f"\nper-row predictions: {args.csv}")
    print(f"\n{time.perf_counter() - started:.1f} s")

