"""The local web app (`kvopt ui`): FastAPI routes over :mod:`kvopt.api`, one page with four
views (estimate, plan and compare, Pareto front, study browser) and its charts drawn by the
plotly.js bundled with the plotly package, served here: no CDN, nothing leaves the machine.
Imported only by `kvopt ui` (FastAPI and plotly stay out of every other command).

Every answer is what the CLI gives for the same question: the page shows the command, and
bad input comes back as the CLI's one-line error (HTTP 400, ``{"error": "..."}``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from kvopt.errors import InputError, KvoptError
from kvopt.ops.ui import charts, forms, studies

STATIC = Path(__file__).with_name("static")
VIEWS = ("estimate", "plan", "pareto", "studies")
EXPORTS = {"json": "plan.json", "markdown": "plan.md", "csv": "plan.csv", "yaml": "plan.yaml",
           "vllm": "vllm.sh", "sglang": "sglang.sh", "trtllm": "trtllm.sh", "k8s": "k8s.yaml",
           "lmcache": "lmcache.yaml"}
_SOLVE = threading.Lock()  # one solve at a time (a local app for one person)


def create_app(*, studies_root: str | Path = ".") -> FastAPI:
    """The ASGI app; ``studies_root``: the folder the study browser lists."""
    root = Path(studies_root)
    app = FastAPI(title="kvopt", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(KvoptError)
    async def kvopt_error(_: Request, exc: KvoptError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return JSONResponse({"error": f"request: {first.get('msg', 'malformed')} (send a "
                                      "JSON object of form fields)"}, status_code=400)

    page = (STATIC / "index.html").read_text(encoding="utf-8")

    def index() -> HTMLResponse:
        return HTMLResponse(page)

    app.get("/", response_class=HTMLResponse)(index)
    for view in VIEWS:
        app.get(f"/{view}", response_class=HTMLResponse)(index)

    @app.get("/static/plotly.min.js")
    def plotly_js() -> Response:
        from plotly.offline import get_plotlyjs

        return Response(get_plotlyjs(), media_type="application/javascript",
                        headers={"Cache-Control": "max-age=86400"})

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        path = STATIC / name
        if name not in ("app.js", "app.css") or not path.is_file():
            raise InputError("static", name, "no such file")
        return FileResponse(path)

    @app.get("/api/choices")
    def choices_() -> dict[str, Any]:
        return catalog_choices()

    @app.post("/api/estimate")
    def estimate(form: dict[str, Any]) -> dict[str, Any]:
        from kvopt import api

        kw = forms.estimate_kw(form)
        est = api.estimate(**kw).to_dict()
        return {"result": est, "chart": charts.memory(est),
                "cli": forms.command("estimate", kw)}

    @app.post("/api/plan")
    def plan(form: dict[str, Any]) -> dict[str, Any]:
        from kvopt import api
        from kvopt.export import render

        kw = forms.plan_kw(form)
        explain = forms.flag(form, "explain")
        extra = ("--json",) if explain else ("--no-explain", "--json")
        where = forms.regions(form.get("regions"))
        if where:  # regions: the question as a fleet file, answered by `kvopt size`
            return size_in_regions(kw, where, explain, extra)
        with _SOLVE:
            result = api.plan(**kw, explain=explain).to_dict()
        return {"result": result, "markdown": render(result, "markdown"),
                "cli": forms.command("plan", kw, extra=extra)}

    @app.post("/api/compare")
    def compare(form: dict[str, Any]) -> dict[str, Any]:
        from kvopt import api

        kw = forms.plan_kw(form)
        with _SOLVE:
            rows = api.compare(**kw)
        return {"result": rows, "chart": charts.compare(rows),
                "cli": forms.command("compare", kw)}

    @app.post("/api/pareto")
    def pareto(form: dict[str, Any]) -> dict[str, Any]:
        from kvopt import api
        from kvopt.pareto import export

        kw = forms.pareto_kw(form)
        with _SOLVE:
            res = api.pareto(**kw)
        data = [export.clean_row(r) for r in export.rows(res.front, res.table,
                                                          res.objectives, res.norm)]
        title = export.front_title(kw["model"], kw["rps"], {
            k: kw[k] for k in ("slo_ttft_p99_ms", "slo_tpot_p99_ms")})
        objs = list(res.objectives)
        return {"report": {"model": kw["model"], "rps": kw["rps"], "objectives": objs,
                           **res.report()},
                "front": data, "title": title,
                "chart": charts.pareto(data, objs[0], objs[1 if len(objs) > 1 else 0], title),
                "cli": forms.command("pareto", kw)}

    @app.post("/api/pareto/chart")
    def pareto_chart(body: dict[str, Any]) -> dict[str, Any]:
        front = body.get("front") or []
        return charts.pareto(front, str(body.get("x")), str(body.get("y")),
                             str(body.get("title", "")))

    @app.post("/api/pareto/point")
    def pareto_point(body: dict[str, Any]) -> Response:
        text, name = point_export(body)
        return _download(text, name)

    @app.post("/api/export")
    def export_plan(body: dict[str, Any]) -> Response:
        from kvopt.export import render
        from kvopt.export.plans import with_offload
        from kvopt.schemas import validate

        fmt = forms.text(body, "format", "json", allowed=tuple(EXPORTS))
        plan_doc = body.get("plan")
        validate("plan", plan_doc, source="the plan shown")
        assert isinstance(plan_doc, dict)
        gib = forms.number(body, "kv_offload_gib", minimum=0)
        doc = with_offload(plan_doc, gib if gib else None)
        return _download(render(doc, fmt), EXPORTS[fmt])

    @app.get("/api/studies")
    def studies_list() -> dict[str, Any]:
        return {"root": str(root.resolve()), "studies": studies.find(root)}

    @app.get("/api/study")
    def study(path: str = ".") -> dict[str, Any]:
        return studies.load(root, path)

    @app.get("/study-report/{rel:path}")
    def study_report(rel: str) -> FileResponse:
        study_dir, _, name = rel.partition("/report/")
        folder = studies.resolve(root, study_dir or ".")
        target = (folder / "report" / name).resolve()
        if (folder / "report").resolve() not in target.parents or not target.is_file():
            raise InputError("report", rel, "no such report file",
                             "write it with kvopt study report")
        return FileResponse(target)

    return app


def size_in_regions(kw: dict[str, Any], where: dict[str, Any], explain: bool,
                    extra: tuple[str, ...]) -> dict[str, Any]:
    """Plan over regions: the form as a fleet file (shown and downloadable), sized by
    :func:`kvopt.api.size` as `kvopt size fleet.yaml` does."""
    import tempfile

    import yaml

    from kvopt import api
    from kvopt.export import render

    text = yaml.safe_dump(forms.fleet_doc(kw, where), sort_keys=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(text, encoding="utf-8")
        with _SOLVE:
            result = api.size(str(path), explain=explain).to_dict()
    return {"result": result, "markdown": render(result, "markdown"), "fleet_yaml": text,
            "cli": " ".join(["kvopt", "size", "fleet.yaml", *extra])}


def _download(text: str, name: str) -> Response:
    return Response(text, media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def point_export(body: dict[str, Any]) -> tuple[str, str]:
    """A Pareto point as JSON or an engine's launch config: (text, file name)."""
    from kvopt.export.engines import engine_config

    row = body.get("row")
    if not isinstance(row, dict):
        raise InputError("row", row, "pick a point of the front first")
    fmt = forms.text(body, "format", "json", allowed=("json", "vllm", "sglang", "trtllm"))
    model = forms.required_text(body, "model")
    if fmt == "json":
        return json.dumps({"model": model, "rps": body.get("rps"), **row}, indent=2) + "\n", \
            "point.json"
    prompt = forms.number(body, "input_len", int, required=True, minimum=1)
    total = prompt + forms.number(body, "output_len", int, required=True, minimum=1)
    entry = {"model": model, **{k: row[k] for k in ("gpu", "tp", "weights", "kv_dtype",
                                                    "max_batch")}}
    cfg = engine_config(entry, engine=fmt, max_model_len=total, max_prompt_len=prompt)
    lines = [f"# {row.get('replicas', 1)} replica(s) of {row['tp']}x {row['gpu']}",
             *(f"# NOTE: {n}" for n in cfg.notes), cfg.shell()]
    if cfg.config_yaml:
        lines += ["# config YAML:", *(f"#   {x}" for x in cfg.config_yaml.splitlines())]
    return "\n".join(lines) + "\n", f"{fmt}.sh"


def catalog_choices() -> dict[str, Any]:
    """What the forms offer: catalog models and GPUs, engines, precisions, goals..."""
    from kvopt import choices
    from kvopt.catalog.engines import engine_names
    from kvopt.catalog.gpus import list_gpus
    from kvopt.catalog.models import list_models

    return {"models": [m.name for m in list_models()],
            "gpus": [{"id": g.id, "name": g.name, "memory_gib": g.memory_gib,
                      "vendor": g.vendor} for g in list_gpus()],
            "engines": list(engine_names()), "weights": list(choices.WEIGHT_DTYPES),
            "kv_dtypes": list(choices.KV_DTYPES), "load_modes": list(choices.LOAD_MODES),
            "goals": list(choices.GOALS), "capacity": list(choices.CAPACITY_METHODS),
            "objectives": choices.PARETO_OBJECTIVES,
            "defaults": {"plan_gpus": list(choices.PLAN_GPUS),
                         "pareto_gpus": list(choices.PARETO_GPUS),
                         "tp_options": choices.int_text(choices.TP_OPTIONS),
                         "precisions": choices.precision_text(choices.PRECISIONS),
                         "plan_batches": choices.int_text(choices.PLAN_BATCHES),
                         "pareto_batches": choices.int_text(choices.PARETO_BATCHES)}}
