"""Options shared by several commands, and the checks that make a combination of them a
usage error (exit 2) before the front door (:mod:`kvopt.api`) sees it.

Imports nothing heavy: ``kvopt --help`` loads this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kvopt import choices, limits

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


class EngineChoice(click.Choice[str]):
    """The engine profiles, read from the catalog when first needed (so ``kvopt --help``
    and a misconfigured catalog folder give one-line answers, not an import traceback)."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        from kvopt.catalog.engines import engine_names

        return tuple(engine_names())

    @choices.setter
    def choices(self, value: Any) -> None:
        pass


ENGINES = EngineChoice()


class Bounded(click.ParamType[Any]):
    """A number in one of :mod:`kvopt.limits`' ranges (finite; NaN and inf refused), as a
    usage error naming the option when it is not."""

    def __init__(self, rng: limits.Range) -> None:
        self.rng = rng
        self.name = "integer" if rng.integer else "float"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None
                    ) -> str:
        return "INTEGER" if self.rng.integer else "FLOAT"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from kvopt.errors import InputError

        if isinstance(value, int | float) and not isinstance(value, bool):
            num: Any = value
        else:
            try:
                num = int(value) if self.rng.integer else float(value)
            except (TypeError, ValueError):
                try:
                    num = float(value)
                except (TypeError, ValueError):
                    what = "an integer" if self.rng.integer else "a number"
                    self.fail(f"{value!r} is not {what}", param, ctx)
        try:
            return self.rng.check("value", num)
        except InputError as exc:
            self.fail(f"{value!r}: {exc.rule}", param, ctx)


def bounded(rng: limits.Range) -> Bounded:
    return Bounded(rng)
LENGTH_KEYS = ("input_len", "output_len", "input_len_dist", "output_len_dist",
               "images_per_request", "image_size")
FEATURE_KEYS = ("prefix_len", "prefix_hit_rate", "spec_k", "spec_acceptance", "spec_draft")
REPLICA_KEYS = ("model", "gpu", "tp", "ep", "dp", "pp", "weights", "kv_dtype", "engine",
                "engine_version", "profile")


def stack(*opts: Decorator) -> Decorator:
    """Apply click options in the order listed (the first is shown first in --help)."""
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return wrap


def echo_json(data: Any) -> None:
    """Print strict JSON (non-finite numbers as null)."""
    from kvopt.fileio import json_text

    click.echo(json_text(data), nl=False)


def emit(data: dict[str, Any], output: str | None, as_json: bool,
         tables: Callable[[dict[str, Any]], None], noun: str) -> None:
    """A solve's document: written to ``output`` (atomically) when given, then printed as
    JSON or as ``tables`` (with a line naming the file the ``noun`` went to)."""
    from kvopt.fileio import write_json_atomic

    if output:
        write_json_atomic(data, output, "output")
    if as_json:
        echo_json(data)
    else:
        tables(data)
        if output:
            click.echo(f"{noun} written to {output}")


def pick(kw: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: kw[k] for k in keys if k in kw}


def replica(kw: dict[str, Any]) -> dict[str, Any]:
    """The replica keywords of :func:`kvopt.api.estimate` and friends (``--engine-arg``
    pairs as a mapping)."""
    from kvopt.build import engine_args

    return {**pick(kw, REPLICA_KEYS), "engine_args": engine_args(kw.get("engine_arg"))}


engine_version_option = click.option(
    "--engine-version", default=None, metavar="VERSION",
    help="The engine release (e.g. 0.19.0): the per-step and per-request overheads fitted on "
         "that release's benchmark runs (the greatest fitted release at or below it) "
         "[default: the profile's own figures].")

ENGINE_ARG_HELP = (
    "Set an engine flag the deployment uses: max_num_batched_tokens, max_num_seqs, "
    "chunked_prefill, prefill_policy (mixed|prefill_first), memory_fraction, "
    "request_overhead_ms, step_overhead_ms, fp8_scaling, admit_interval_steps (SGLang "
    "--scheduler-recv-interval), adp_balance, adp_timeout_iters, adp_wait_iters (TensorRT-LLM "
    "attention_dp_config), batch_wait_timeout_iters, batch_wait_max_tokens_ratio "
    "(TensorRT-LLM batch waiting). Repeatable.")
engine_arg_option = click.option("--engine-arg", "engine_arg", multiple=True,
                                 metavar="KEY=VALUE", help=ENGINE_ARG_HELP)
plan_engine_arg_option = click.option(
    "--engine-arg", "engine_arg", multiple=True, metavar="KEY=VALUE",
    help=ENGINE_ARG_HELP.replace("max_num_seqs, ", "").replace(
        "Repeatable.", "Every candidate runs with them; the max batch comes from --batches; "
        "`kvopt export` writes them into the launch configs. Repeatable."))

replica_options = stack(
    click.option("--model", required=True,
                 help="Catalog name/alias, or a path to a config.json."),
    click.option("--gpu", required=True, help="GPU id or alias (see `kvopt list-gpus`)."),
    click.option("--tp", type=bounded(limits.TP), default=1, show_default=True,
                 help="Tensor-parallel degree (GPUs per replica, per attention rank)."),
    click.option("--ep", type=bounded(limits.EP), default=1, show_default=True,
                 help="Expert-parallel ranks of an MoE model (divides the experts and "
                      "tp x dp)."),
    click.option("--dp", type=bounded(limits.DP), default=1, show_default=True,
                 help="Attention data-parallel ranks sharing the experts (GPUs: tp x dp x pp)."),
    click.option("--pp", type=bounded(limits.PP), default=1, show_default=True,
                 help="Pipeline-parallel stages."),
    click.option("--weights", type=click.Choice(choices.WEIGHT_DTYPES), default=None,
                 help="Weight precision [default: the checkpoint's own: bf16, or the format "
                      "its quantization_config names (gpt-oss: mxfp4)]."),
    click.option("--kv-dtype", type=click.Choice(choices.KV_DTYPES), default=None,
                 help="KV-cache dtype [default: bf16, or fp16 with fp16 weights]."),
    click.option("--engine", type=ENGINES, default=choices.DEFAULT_ENGINE,
                 show_default=True),
    engine_version_option,
    click.option("--price-usd-h", type=bounded(limits.PRICE_USD_H),
                 default=None, help="Override the price of one GPU-hour."),
    click.option("--json", "as_json", is_flag=True, help="Print the JSON result."),
    click.option("--profile", type=click.Path(dir_okay=False), default=None,
                 help="Calibrated profile (kvopt calibrate --out)."),
    engine_arg_option,
)

length_options = stack(
    click.option("--input-len", type=bounded(limits.TOKENS), default=None,
                 help="Prompt tokens (fixed)."),
    click.option("--output-len", type=bounded(limits.TOKENS), default=None,
                 help="Output tokens (fixed)."),
    click.option("--input-len-dist", default=None, metavar="SPEC",
                 help="Prompt length distribution: lognormal:mean=M,sigma=S | "
                      "uniform:low=L,high=H | csv:PATH."),
    click.option("--output-len-dist", default=None, metavar="SPEC",
                 help="Output length distribution (same forms)."),
    click.option("--images-per-request", type=bounded(limits.IMAGES), default=None,
                 help="Vision-language models: images in every request (their tokens join "
                      "the prompt; each prefill runs the vision encoder)."),
    click.option("--image-size", default=None, metavar="WxH",
                 help="Pixels of each image, e.g. 1024x768 (resized by the model's own "
                      "image processor)."),
)

load_options = stack(
    click.option("--batch", type=bounded(limits.SEQS), default=None,
                 help="One static batch of B requests."),
    click.option("--concurrency", type=bounded(limits.CLIENTS), default=None,
                 help="Closed loop of C clients (no think time)."),
    click.option("--rps", type=bounded(limits.RPS), default=None,
                 help="Poisson arrivals, requests/s."),
    click.option("--offline", type=bounded(limits.OFFLINE), default=None,
                 help="N requests submitted at once (maximum throughput)."),
    click.option("--rounds", type=bounded(limits.ROUNDS), default=None,
                 help="With --concurrency: a benchmark run where each client sends R "
                      "requests, all starting together (the first round is a burst), as "
                      "aiperf/genai-perf/vllm bench measure it [default: the steady state]."),
)

feature_options = stack(
    click.option("--prefix-len", type=bounded(limits.TOKENS), default=None,
                 help="Prefix caching: tokens of a shared prompt prefix (part of every "
                      "prompt: at most the shortest prompt)."),
    click.option("--prefix-hit-rate", type=bounded(limits.HIT_RATE), default=None,
                 help="Prefix caching: fraction of requests that find it cached."),
    click.option("--spec-k", type=bounded(limits.SPEC_K), default=None,
                 help="Speculative decoding: draft tokens per step."),
    click.option("--spec-acceptance", type=click.FloatRange(0, 1, max_open=True),
                 default=None, help="Speculative decoding: per-token acceptance rate."),
    click.option("--spec-draft", default="head", show_default=True,
                 help="Drafter: 'head' (EAGLE/MTP-style) or a catalog model name."),
)


def slo_option(name: str, help: str | None = None) -> Decorator:
    return click.option(f"--slo-{name}-p99-ms", type=bounded(limits.SLO_MS),
                        default=None, help=help)


def lengths(kw: dict[str, Any]) -> dict[str, Any]:
    """The length keywords, each pair given exactly once (else a usage error), and the
    image options (--image-size only with --images-per-request)."""
    for kind in ("input", "output"):
        if (kw[f"{kind}_len"] is None) == (kw[f"{kind}_len_dist"] is None):
            raise click.UsageError(f"give exactly one of --{kind}-len and --{kind}-len-dist")
    if kw.get("image_size") is not None and kw.get("images_per_request") is None:
        raise click.UsageError("--image-size needs --images-per-request")
    return pick(kw, LENGTH_KEYS)


def load(kw: dict[str, Any], *, allow_batch: bool = True) -> dict[str, Any]:
    """The one load keyword given (else a usage error)."""
    names = ("batch", "concurrency", "rps", "offline") if allow_batch else (
        "concurrency", "rps", "offline")
    given = {k: kw[k] for k in ("batch", "concurrency", "rps", "offline")
             if kw.get(k) is not None}
    if len(given) != 1 or next(iter(given)) not in names:
        raise click.UsageError("give exactly one of " + ", ".join(f"--{n}" for n in names[:-1])
                               + f" or --{names[-1]}")
    if kw.get("rounds") is not None:
        given["rounds"] = kw["rounds"]
    return given


def features(kw: dict[str, Any]) -> dict[str, Any]:
    """The prefix-caching and speculative-decoding keywords (each pair complete, else a
    usage error)."""
    if (kw["prefix_len"] is None) != (kw["prefix_hit_rate"] is None):
        raise click.UsageError("prefix caching needs both --prefix-len and --prefix-hit-rate")
    if (kw["spec_k"] is None) != (kw["spec_acceptance"] is None):
        raise click.UsageError("speculative decoding needs both --spec-k and --spec-acceptance")
    return pick(kw, FEATURE_KEYS)


def csv_list(text: str, kind: type = str, option: str = "") -> tuple[Any, ...]:
    """A comma-separated list (a usage error naming ``option`` when an item is not a
    ``kind``)."""
    try:
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__}",
                                 param_hint=option or None) from None


def availability(text: str | None) -> dict[str, int]:
    """``--availability H100-SXM=16,L40S=8``."""
    out: dict[str, int] = {}
    for item in csv_list(text or ""):
        g, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise click.BadParameter(f"{item!r}: use GPU=COUNT, e.g. H100-SXM=16",
                                     param_hint="--availability")
        out[g.strip()] = int(n)
    return out


parallel_options = (
    click.option("--ep-options", default="1", show_default=True,
                 help="Expert-parallel sizes, crossed with the TP, DP and PP options (those "
                      "dividing tp x dp)."),
    click.option("--dp-options", default="1", show_default=True,
                 help="Attention data-parallel ranks (MoE models)."),
    click.option("--pp-options", default="1", show_default=True, help="Pipeline stages."),
    click.option("--parallel", default=None, metavar="LAYOUTS",
                 help="Replica layouts instead of the option cross product, e.g. "
                      "tp8,tp4ep8dp2,tp1ep8dp8,tp4pp2."),
)


def parallel_kw(kw: dict[str, Any]) -> dict[str, Any]:
    """The space's layout keywords of :func:`kvopt.api.plan` and :func:`kvopt.api.pareto`."""
    return {"ep_options": csv_list(kw["ep_options"], int, "--ep-options"),
            "dp_options": csv_list(kw["dp_options"], int, "--dp-options"),
            "pp_options": csv_list(kw["pp_options"], int, "--pp-options"),
            "parallel": kw["parallel"]}


profile_option = click.option(
    "--profile", "profiles", multiple=True, type=click.Path(dir_okay=False),
    help="Calibrated GPU x engine profile (kvopt calibrate --out); repeat for several GPUs. "
         "That GPU's candidates are evaluated with it.")

capacity_option = click.option(
    "--capacity", type=click.Choice(choices.CAPACITY_METHODS),
    default=choices.DEFAULT_CAPACITY, show_default=True,
    help="How candidates' goodput is found: exact (the analytic model's search on every "
         "candidate); confirm (the same plan: the screen ranks the candidates, the exact "
         "search runs where it can change the plan and one exact check proves each other "
         "candidate dominated); screen (all at once by the screening model: ~20x faster per "
         "configuration, its own approximation of the analytic model).")

space_options = stack(
    click.option("--gpus", default=None,
                 help="Candidate GPUs: ids, or all, nvidia, amd, datacenter, desktop or laptop "
                      f"[default: {','.join(choices.PLAN_GPUS)}]."),
    click.option("--gpu", default=None, help="One candidate GPU."),
    click.option("--tp-options", default=choices.int_text(choices.TP_OPTIONS),
                 show_default=True),
    *parallel_options,
    click.option("--precisions", default=choices.precision_text(choices.PRECISIONS),
                 show_default=True, help="weights/kv pairs."),
    click.option("--batches", default=choices.int_text(choices.PLAN_BATCHES), show_default=True,
                 help="Max-batch levels (engine max_num_seqs)."),
    click.option("--engine", type=ENGINES, default=choices.DEFAULT_ENGINE,
                 show_default=True),
    engine_version_option,
    plan_engine_arg_option,
    profile_option,
    capacity_option,
)

workload_options = stack(
    click.option("--model", required=True),
    click.option("--rps", type=bounded(limits.RPS), required=True,
                 help="Request rate to serve."),
    slo_option("ttft"),
    slo_option("tpot"),
    slo_option("e2e", "End-to-end p99 (TTFT + all output tokens)."),
    click.option("--redundancy", type=bounded(limits.REDUNDANCY), default=0,
                 help="N+k: spare replicas per workload."),
    click.option("--max-quality-loss-pct", type=bounded(limits.QUALITY_PCT), default=None,
                 help="Quality floor: most accuracy loss vs BF16 allowed."),
)

solve_options = stack(
    click.option("--budget-usd-h", type=bounded(limits.BUDGET_USD_H)),
    click.option("--power-cap-kw", type=bounded(limits.POWER_KW)),
    click.option("--availability", default=None, metavar="G=N,...",
                 help="Most GPUs of a type, e.g. H100-SXM=16."),
    click.option("--allow-mixing", is_flag=True, help="Several configs per workload."),
    click.option("--solver", default="highs", show_default=True,
                 help="Solver profile in solvers/ (highs, cbc, scip, gurobi)."),
    click.option("--time-limit-s", type=bounded(limits.TIME_LIMIT_S)),
    click.option("--gap", type=bounded(limits.GAP), help="Relative MIP gap."),
    click.option("--output", type=click.Path(dir_okay=False),
                 help="Write the JSON result (plan: the plan; compare: one row per GPU)."),
    click.option("--json", "as_json", is_flag=True),
    click.option("--no-explain", is_flag=True, help="Skip the SLO sensitivity re-solves."),
)

goal_option = click.option("--goal", type=click.Choice(choices.GOALS), default="cost",
                           show_default=True)
