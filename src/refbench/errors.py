"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed line, an unknown
name) is raised as a `RefbenchError`. The CLI prints it as one line and exits with
code 2; nothing else is written. Internal bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

from os import PathLike


class RefbenchError(Exception):
    """An error in the user's input; `str()` is the one line the CLI prints."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | PathLike[str] | None = None,
                 line: int | None = None, key: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.key = key
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
        if self.key is not None:
            where = f"{where} [{self.key}]" if where else f"[{self.key}]"
        text = " ".join(self.message.split("\n"))
        return f"{where}: {text}" if where else text


class MissingDependencyError(RefbenchError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"the optional dependency {module!r} is not installed; "
            f"install it with: pip install -c constraints.txt -e '.[{extra}]'"
        )


def require(module: str, extra: str) -> None:
    """Raise `MissingDependencyError` unless `module` can be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(module, extra)
