"""What every `refbench` command prints with: JSON for `--json`, rich tables otherwise."""

from __future__ import annotations

import json
from typing import Any

import typer

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)
