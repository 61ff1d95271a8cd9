"""The web app's study browser: the study folders under a root (each holds a result store,
``study.sqlite``), and one study's status, swept columns, results and chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kvopt.errors import InputError

MAX_ROWS = 500
DEPTH = 3  # folders below the root searched for stores


def find(root: Path) -> list[dict[str, Any]]:
    """Every study folder under ``root`` (itself included), with its status."""
    from kvopt.study.store import FILE, Store

    out = []
    for db in sorted(root.glob(FILE)) + sorted(
            p for d in range(1, DEPTH + 1) for p in root.glob("/".join(["*"] * d) + "/" + FILE)):
        folder = db.parent
        try:
            with Store(folder, create=False) as store:
                st = store.status()
        except Exception as exc:  # a broken store is listed with its error
            out.append({"path": _rel(root, folder), "name": folder.name, "error": str(exc)})
            continue
        out.append({"path": _rel(root, folder), "name": st.get("name") or folder.name,
                    "total": st["total"], "finished": st["finished"],
                    "by_status": st["by_status"]})
    return out


def _rel(root: Path, folder: Path) -> str:
    rel = folder.resolve().relative_to(root.resolve()).as_posix()
    return "." if rel in ("", ".") else rel


def resolve(root: Path, rel: str) -> Path:
    """``root / rel``, which must stay inside ``root`` and hold a study store."""
    from kvopt.study.store import FILE

    folder = (root / rel).resolve()
    if folder != root.resolve() and root.resolve() not in folder.parents:
        raise InputError("study", rel, "is outside the study root", "pick one from the list")
    if not (folder / FILE).is_file():
        raise InputError("study", rel, f"has no {FILE}", "run `kvopt study run` into it")
    return folder


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if v is None or isinstance(v, int | str | bool):
        return v
    return str(v)


def load(root: Path, rel: str) -> dict[str, Any]:
    """One study: status, swept columns, result rows (the first :data:`MAX_ROWS`) ordered
    by the swept values, the columns to show and a chart."""
    from kvopt.ops.ui import charts
    from kvopt.study.report import SHOWN, swept_columns
    from kvopt.study.store import Store, load_results

    folder = resolve(root, rel)
    with Store(folder, create=False) as store:
        status = store.status()
    df = load_results(folder, all_outputs=True)
    swept = swept_columns(df) if not df.empty else []
    if swept:
        df = df.sort_values(swept, kind="stable")
    cols = [*swept, "status", *[c for c in SHOWN if c in df], "error"]
    rows = [{c: _cell(v) for c, v in r.items()} for r in df.to_dict("records")]
    traffic = next((c for c in ("rps", "rate_scale") if c in swept), None)
    cost = next((c for c in ("usd_per_hour", "min_usd_per_hour") if c in df), None)
    gpu = next((c for c in ("gpu", "knee_gpu") if c in df), None)
    report = folder / "report" / "report.html"
    return {"path": _rel(root, folder), "status": status, "swept": swept, "columns": cols,
            "rows": rows[:MAX_ROWS], "total_rows": len(rows),
            "report": report.is_file(),
            "chart": charts.study(rows, traffic, cost, gpu,
                                  [c for c in swept if c != traffic])}
