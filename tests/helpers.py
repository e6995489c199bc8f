"""Small helpers shared by test modules."""

from __future__ import annotations


def run_cli(args: list[str]) -> int:
    """Run the `refbench` CLI in-process; its exit code (0 when it returns normally)."""
    from refbench.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
