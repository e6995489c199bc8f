"""Run-time options that a family declares and the generic commands discover.

A submission format declares the options its reader takes (SQuAD v2.0's no-answer
probability file), a metric the options its computation takes (SQuAD v2.0's no-answer
threshold), a search its settings. `refbench evaluate`, `train` and the leaderboard never
name them: they read the declarations, show them in `refbench benchmarks show NAME`, and
accept them as `--option key=value` or as the generated flag `--key-with-dashes value`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from refbench.errors import RefbenchError

OptionType = Literal["str", "int", "float", "bool", "path"]


@dataclass(frozen=True)
class Option:
    """One declared option: its key, value type, help text and default (None: unset)."""

    name: str
    type: OptionType
    help: str
    default: Any = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        """A command-line string -> a typed value; a bad value names the option."""
        try:
            if self.type == "int":
                return int(raw)
            if self.type == "float":
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError(raw)
                return value
            if self.type == "bool":
                lowered = raw.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(raw)
        except ValueError:
            article = "an" if self.type == "int" else "a"
            raise RefbenchError(f"expected {article} {self.type} value, got {raw!r}",
                                key=self.name) from None
        if self.type == "path":
            return Path(raw)
        return raw

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "flag": self.flag, "type": self.type, "help": self.help,
                "default": None if self.default is None else str(self.default)}


def parse_option_args(declared: Sequence[Option], pairs: Iterable[str] = (),
                      extra: Sequence[str] = (), what: str = "this benchmark") -> dict[str, Any]:
    """`--option key=value` items and generated `--key value` / `--key=value` flags ->
    `{key: typed value}`; unknown keys get a did-you-mean naming what is declared."""
    by_name = {o.name: o for o in declared}
    by_flag = {o.flag: o for o in declared}
    values: dict[str, Any] = {}

    def unknown(key: str) -> RefbenchError:
        import difflib

        known = ", ".join(o.flag for o in declared) or "none"
        close = difflib.get_close_matches(key, [*by_name, *by_flag], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return RefbenchError(f"unknown option {key!r} for {what}{hint} (its options: {known})")

    def put(option: Option, raw: str) -> None:
        if option.name in values:
            raise RefbenchError(f"option given twice: {option.flag}", key=option.name)
        values[option.name] = option.parse(raw)

    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip().removeprefix("--").replace("-", "_")
        if not sep or not key:
            raise RefbenchError(f"malformed option {item!r}; expected key=value")
        if key not in by_name:
            raise unknown(key)
        put(by_name[key], raw)
    args = list(extra)
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise RefbenchError(f"unexpected argument {token!r}")
        flag, sep, raw = token.partition("=")
        option = by_flag.get(flag)
        if option is None:
            raise unknown(flag)
        if not sep:
            if option.type == "bool" and (i + 1 >= len(args) or args[i + 1].startswith("--")):
                raw = "true"
            elif i + 1 >= len(args):
                raise RefbenchError(f"option {flag} needs a value", key=option.name)
            else:
                i += 1
                raw = args[i]
        put(option, raw)
        i += 1
    return values


def describe(declared: Sequence[Option]) -> str:
    """One help line per option (for `--help` epilogs and `benchmarks show`)."""
    return "\n".join(f"{o.flag} {o.type.upper()}: {o.help}" for o in declared)
