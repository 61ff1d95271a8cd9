"""Review exports of a front: rows (CSV/JSON/Parquet), PNG projections, and a
self-contained interactive HTML page (no network: data, script and styles inline)."""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
from pathlib import Path
from typing import Any

from kvopt.errors import InputError
from kvopt.fileio import write_atomic
from kvopt.pareto.search import Front, Normalizer, knee
from kvopt.pareto.table import ConfigTable


def rows(front: Front, table: ConfigTable, objectives: tuple[str, ...],
         norm: Normalizer) -> list[dict[str, Any]]:
    """One row per front point: decisions, objectives (named as requested), metrics, engine
    flags, and whether it is the knee (balanced pick)."""
    k = knee(front.F, norm) if front.F.shape[0] else -1
    out = []
    for i, dec in enumerate(front.idx.tolist()):
        g, t, p, b, n = dec[:5]
        w, kv = table.precisions[p]
        tp, batch = table.tps[t], table.batches[b]
        row: dict[str, Any] = {"gpu": table.gpus[g], "tp": tp, "weights": w, "kv_dtype": kv,
                               "max_batch": batch, "replicas": n}
        if len(dec) == 10:  # heterogeneous fleet: the second group
            g2, t2, p2, b2, n2 = dec[5:]
            row.update({"gpu_b": table.gpus[g2] if n2 else "", "tp_b": table.tps[t2],
                        "weights_b": table.precisions[p2][0],
                        "kv_dtype_b": table.precisions[p2][1],
                        "max_batch_b": table.batches[b2], "replicas_b": n2})
        for j, o in enumerate(objectives):
            row[o] = float(front.F[i, j])
        for name, arr in front.metrics.items():
            row[name] = float(arr[i])
        row["engine_flags"] = engine_flags(table.engine, tp, w, kv, batch)
        row["knee"] = i == k
        out.append(row)
    return out


def engine_flags(engine: str, tp: int, weights: str, kv: str, batch: int) -> str:
    """Launch flags for the point (the engine-config issue will make these authoritative)."""
    if engine == "vllm":
        flags = [f"--tensor-parallel-size {tp}", f"--max-num-seqs {batch}"]
        if kv == "fp8":
            flags.append("--kv-cache-dtype fp8")
        if weights in ("int4", "fp8", "int8", "fp4"):
            flags.append(f"(needs a {weights} checkpoint)")
        return " ".join(flags)
    return f"tp={tp} max_batch={batch} weights={weights} kv={kv}"


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_table(data: list[dict[str, Any]], path: str | Path,
                meta: dict[str, Any] | None = None) -> None:
    """CSV, JSON or Parquet by extension."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".csv":
        buf = io.StringIO()
        cols = list(data[0]) if data else []
        wr = csv.DictWriter(buf, fieldnames=cols)
        wr.writeheader()
        for r in data:
            wr.writerow({k: _clean(v) for k, v in r.items()})
        write_atomic(p, buf.getvalue().encode())
    elif ext == ".json":
        doc = {"meta": meta or {}, "front": [{k: _clean(v) for k, v in r.items()}
                                             for r in data]}
        write_atomic(p, json.dumps(doc, indent=2).encode())
    elif ext == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tbl = pa.Table.from_pylist([{k: _clean(v) for k, v in r.items()} for r in data])
        if meta:
            tbl = tbl.replace_schema_metadata({"kvopt": json.dumps(meta)})
        sink = io.BytesIO()
        pq.write_table(tbl, sink)
        write_atomic(p, sink.getvalue())
    else:
        raise InputError("--out", str(path), "unknown extension", "use .csv, .json or .parquet")


def write_png(data: list[dict[str, Any]], objectives: tuple[str, ...], path: str | Path) -> None:
    """2-D projections of every objective pair, the knee marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(objectives, 2))
    cols = min(3, len(pairs))
    rows_n = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.6 * rows_n), squeeze=False)
    for ax, (a, b) in zip(axes.ravel(), pairs, strict=False):
        ax.scatter([r[a] for r in data], [r[b] for r in data], s=14, alpha=0.75)
        kn = [r for r in data if r["knee"]]
        if kn:
            ax.scatter([kn[0][a]], [kn[0][b]], s=90, marker="*", color="red", label="knee")
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(pairs):]:
        ax.axis("off")
    fig.suptitle(f"Pareto front ({len(data)} points)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(Path(path), buf.getvalue())


_PAGE = Path(__file__).with_name("page.html")  # template: data, script, styles inline


def write_html(data: list[dict[str, Any]], objectives: tuple[str, ...], path: str | Path, *,
               title: str, subtitle: str) -> None:
    clean = [{k: _clean(v) for k, v in r.items()} for r in data]
    page = (_PAGE.read_text(encoding="utf-8").replace("__TITLE__", html.escape(title))
            .replace("__SUBTITLE__", html.escape(subtitle))
            .replace("__DATA__", json.dumps(clean).replace("</", "<\\/"))
            .replace("__OBJ__", json.dumps(list(objectives))))
    write_atomic(Path(path), page.encode())
