"""README.md stays runnable: every `kvopt` command it shows names a real command with real
options and repository files that exist, and its Python example calls the front door with
parameters the functions take; the Quickstart's quoted output is what `make run` prints.
(Running every command takes a minute: the newcomer check in the
README's own Quickstart does that.)"""

from __future__ import annotations

import ast
import inspect
import re
import shlex

import click
import pytest

import kvopt
from kvopt.cli.main import cli
from tests.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
COMMANDS = [line for lang, body in BLOCKS if not lang
            for line in body.splitlines() if line.startswith("kvopt ")]


def test_the_readme_shows_the_quickstart_and_the_main_commands() -> None:
    assert "make run" in README and "make test" in README
    shown = {shlex.split(c)[1] for c in COMMANDS}
    for name in ("estimate", "simulate", "capacity", "curve", "plan", "compare", "size", "pareto",
                 "export", "bench", "import-bench", "validate", "calibrate", "study", "schema",
                 "list-gpus", "show"):
        assert name in shown, name
    assert len(README.splitlines()) <= 400


def _command(args: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and args and not args[0].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), args[0])
        assert sub is not None, f"no command {args[0]!r}"
        cmd, args = sub, args[1:]
    return cmd, args


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_commands_use_real_options_and_files(line: str) -> None:
    cmd, args = _command(shlex.split(line)[1:])
    opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for a in args:
        if a.startswith("-"):
            assert a.split("=", 1)[0] in opts, f"{line}: unknown option {a}"
        elif a.startswith(("benchmarks/", "tests/")):
            assert (ROOT / a).exists(), f"{line}: no file {a}"


def test_readme_python_example_calls_the_front_door_as_it_is() -> None:
    [code] = [body for lang, body in BLOCKS if lang == "python"]
    tree = ast.parse(code)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
             and n.func.value.id == "kvopt"]
    assert calls
    for call in calls:
        name = call.func.attr  # type: ignore[attr-defined]
        assert name in kvopt.__all__, name
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
        inspect.signature(getattr(kvopt, name)).bind(**kwargs)
    for name in re.findall(r"`kvopt\.(\w+)`", README):  # names the README says exist
        assert name in kvopt.__all__ or name in ("api", "pareto"), name


def test_the_quickstart_output_shown_is_what_make_run_prints() -> None:
    """The Quickstart quotes `make run`'s last lines: the Makefile's example, run in-process,
    prints them (the total up to the gap, the binding line) as shown."""
    from click.testing import CliRunner

    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    [example] = re.findall(r"^EXAMPLE := (.*)$", make, re.M)
    quoted = next(body for lang, body in BLOCKS if not lang and body.startswith("total:"))
    res = CliRunner().invoke(cli, shlex.split(example), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    printed = " ".join(res.output.split())  # the table wraps long lines at the width
    for line in quoted.splitlines():
        assert " ".join(line.removesuffix("...").split()) in printed, line
