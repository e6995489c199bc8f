"""What every `refbench` command prints with: JSON for `--json`, rich tables otherwise."""

from __future__ import annotations

import json
from typing import Any

import typer

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table; names are never cut: when the terminal (or a pipe's default 80
    columns) is too narrow, the table grows wider than it instead of eliding cells."""
    from rich.console import Console
    from rich.table import Table

    cells = [[str(c) for c in row] for row in rows]
    out = Table(title=title)
    for col in columns:
        out.add_column(col, no_wrap=True)
    for row in cells:
        out.add_row(*row)
    widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    needed = sum(widths) + 3 * len(widths) + 1  # padding and borders
    console = Console()
    if needed > console.width:
        console = Console(width=needed)
    console.print(out)
