"""`kvopt schema NAME`: print the JSON Schema of a file format (plan, bench, fleet, study)."""

from __future__ import annotations

import click


@click.command("schema")
@click.argument("name", required=False)
@click.option("--list", "list_", is_flag=True, help="List the schemas, one a line.")
def schema_cmd(name: str | None, list_: bool) -> None:
    """Print the JSON Schema (draft 2020-12) of a file format kvopt reads or writes: plan
    (kvopt.plan/1), bench (kvopt.bench/1), fleet (fleet.yaml) or study (study.yaml). The
    readers check files against these schemas."""
    from kvopt import schemas

    if list_:
        if name:
            raise click.UsageError("give NAME or --list, not both")
        for n in schemas.NAMES:
            click.echo(f"{n:6s} {schemas.SUMMARY[n]}")
        return
    if not name:
        raise click.UsageError(f"give a schema NAME ({', '.join(schemas.NAMES)}) or --list")
    click.echo(schemas.schema_text(name), nl=False)
