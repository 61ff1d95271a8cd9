"""`kvopt` entry point: the click group, error policy and the catalog commands.

Errors, all on one line of stderr starting ``kvopt: error:``: any :class:`KvoptError`
exits 1 (an input error names the option as typed, e.g. ``--rps``); usage errors (click's:
a missing or malformed option, a value out of its range) exit 2 and end with the command's
``--help``; Ctrl-C prints ``kvopt: interrupted`` and exits 130. ``--debug`` re-raises for a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from kvopt._version import __version__
from kvopt.errors import InputError, KvoptError


def _option_names(cmd: click.Command, out: set[str]) -> set[str]:
    """Every option name (the Python spelling) of ``cmd`` and its subcommands."""
    for p in cmd.params:
        if isinstance(p, click.Option) and p.name:
            out.add(p.name)
    for sub in getattr(cmd, "commands", {}).values():
        _option_names(sub, out)
    return out


def error_line(exc: KvoptError, group: click.Command) -> str:
    """``exc`` on one line; an input error about a keyword the CLI spells as an option
    (``rps``) names the option (``--rps``)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, InputError) and exc.field in _option_names(group, set()):
        flag = "--" + exc.field.replace("_", "-")
        text = text.replace(f"{exc.field}=", f"{flag}=", 1)
    return text


def usage_line(exc: click.ClickException) -> str:
    """A click usage error on one line, with where to read the usage."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError):
        text += f" (see `{ctx.command_path if ctx else 'kvopt'} --help`)"
    return text


class KvoptGroup(click.Group):
    """Turns expected errors into one-line messages with exit code 1, and ctrl-C into
    "interrupted" with the shell's 130 (click's own handler would print "Aborted!" and exit
    1, which scripts cannot tell from an error)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KvoptError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"kvopt: error: {error_line(exc, self)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("kvopt: interrupted", err=True)
            ctx.exit(130)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """click's main with kvopt's error lines: click's own usage errors become one
        ``kvopt: error:`` line (exit 2) instead of its usage block."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            click.echo(f"kvopt: error: {usage_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"kvopt: error: {usage_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("kvopt: interrupted", err=True)
            sys.exit(130)
        except KvoptError as exc:  # raised before a command ran (e.g. the catalog's folder)
            if "--debug" in argv:
                raise
            click.echo(f"kvopt: error: {error_line(exc, self)}", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=KvoptGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kvopt")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Plan LLM serving deployments: memory, latency, throughput and cost per GPU choice."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


from kvopt.cli import (  # noqa: E402  (registers the commands)
    bench,
    catalog,
    export,
    fleet,
    ops,
    pareto,
    replica,
    schedule,
    schema,
    study,
)

for command in (catalog.list_gpus_cmd, catalog.list_models_cmd, catalog.list_engines_cmd,
                catalog.show, replica.estimate_cmd, replica.simulate_cmd, replica.capacity_cmd,
                replica.disagg_cmd, replica.curve_cmd, fleet.plan_cmd, fleet.compare_cmd,
                fleet.size_cmd, schedule.schedule_cmd, schedule.tco_cmd, pareto.pareto_cmd,
                export.export_cmd, bench.validate_cmd,
                bench.calibrate_cmd, bench.bench_cmd, bench.import_bench_cmd, study.study_cmd,
                schema.schema_cmd, ops.watch_cmd, ops.ui_cmd):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="kvopt",
             standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
