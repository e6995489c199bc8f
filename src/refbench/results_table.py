"""One table over many runs: `refbench results RUNS...`.

`collect` reads result.json files (a run folder, or a folder of run folders) into one
row per run; `summarize` groups them by benchmark and recipe into mean, sample std and
the number of seeds per metric, the way papers report over-seed results; the writers
render that summary as CSV (numbers), Markdown and LaTeX (cells `mean ± std (n)`).
Markdown and LaTeX are written by hand so neither `tabulate` nor `jinja2` is needed and
the escaping is ours.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from refbench.errors import RefbenchError
from refbench.io import atomic_write_text
from refbench.protocol import PROTOCOL_SUFFIX, RESULT_FILE
from refbench.results import load_result

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ID_COLUMNS = ("benchmark", "recipe", "model", "seed", "split", "primary", "run")
SUMMARY_COLUMNS = ("benchmark", "recipe", "metric", "mean", "std", "n")
LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "\\": r"\textbackslash{}"}


def find_results(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The result.json files named by `paths`: a result.json, a run folder holding one, or
    a folder searched recursively for `*/result.json` (protocol aggregates, `*-protocol`,
    are skipped there because their seed runs are found beside them; name one directly
    to use it). A missing path, or a folder without results, is a RefbenchError."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise RefbenchError("no such file or folder", path=path)
        if path.is_file():
            if path.name != RESULT_FILE:
                raise RefbenchError(f"expected a run folder or a {RESULT_FILE}", path=path)
            found.append(path)
        elif (path / RESULT_FILE).is_file():
            found.append(path / RESULT_FILE)
        else:
            inner = sorted(p for p in path.rglob(RESULT_FILE) if p.is_file() and not any(
                part.endswith(PROTOCOL_SUFFIX) for part in p.relative_to(path).parts[:-1]))
            if not inner:
                raise RefbenchError(f"no run folder with a {RESULT_FILE} here", path=path)
            found.extend(inner)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _rows_of(path: Path) -> list[dict[str, Any]]:
    """One row per run of a result.json; a protocol aggregate expands to its seeds."""
    result = load_result(path)
    model = result.model
    base = {"benchmark": f"{result.benchmark}@{result.benchmark_version}",
            "recipe": (model.recipe or model.name) if model else "-",
            "model": model.name if model else "-", "split": result.split,
            "primary": result.primary}
    run_dir = path.resolve().parent
    if result.aggregate is None:
        return [{**base, "seed": result.provenance.seed, "run": str(run_dir),
                 "metrics": result.metrics}]
    agg = result.aggregate
    runs = agg["runs"] if len(agg["runs"]) == agg["n"] else [None] * agg["n"]
    return [{**base, "seed": seed,
             # the seed's own folder, so the same run found twice counts once
             "run": str(run_dir.parent / run) if run else f"{run_dir}#s{seed}",
             "metrics": {k: v[i] for k, v in agg["per_seed"].items()}}
            for i, (seed, run) in enumerate(zip(agg["seeds"], runs))]


def collect(paths: Iterable[str | os.PathLike[str]]) -> "pd.DataFrame":
    """One row per run: benchmark@version, recipe, model, seed, split, primary key, run
    folder, then one column per metric key (a key that clashes with those columns is
    named `metrics.KEY`)."""
    import pandas as pd

    records = []
    for path in find_results(paths):
        for row in _rows_of(path):
            metrics = row.pop("metrics")
            row.update({(f"metrics.{k}" if k in ID_COLUMNS else k): v for k, v in metrics.items()})
            records.append(row)
    df = pd.DataFrame.from_records(records)
    df = df.drop_duplicates(subset="run", keep="first").reset_index(drop=True)
    df["seed"] = df["seed"].astype("Int64")
    return df


def summarize(df: "pd.DataFrame", metrics: Sequence[str] | None = None) -> "pd.DataFrame":
    """Mean, sample std (ddof=1; NaN for one seed) and number of seeds per metric, grouped
    by benchmark and recipe: one row per (benchmark, recipe, metric). By default each
    benchmark's primary key; `metrics` names keys instead (each must occur in some run)."""
    import pandas as pd

    if metrics:
        missing = [m for m in metrics if m not in df.columns or m in ID_COLUMNS]
        if missing:
            known = ", ".join(c for c in df.columns if c not in ID_COLUMNS)
            raise RefbenchError(f"no run has metric {missing[0]!r} (these do: {known})",
                                key="--metric")
    out = []
    for (bench, recipe), group in df.groupby(["benchmark", "recipe"], sort=True):
        keys = list(metrics) if metrics else list(dict.fromkeys(group["primary"]))
        for key in keys:
            values = pd.to_numeric(group[key], errors="coerce").dropna() \
                if key in group else pd.Series([], dtype=float)
            if values.empty:
                continue
            out.append({"benchmark": bench, "recipe": recipe, "metric": key,
                        "mean": float(values.mean()), "std": float(values.std(ddof=1)),
                        "n": int(values.size)})
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def repeated_seeds(df: "pd.DataFrame") -> list[str]:
    """One warning line per (benchmark, recipe) in which a seed occurs in several runs:
    runs with other settings (steps, data limit) were probably pooled into one mean."""
    lines = []
    for (bench, recipe), group in df.groupby(["benchmark", "recipe"], sort=True):
        seeds = group["seed"].dropna()
        twice = sorted(set(seeds[seeds.duplicated()].tolist()))
        if twice:
            lines.append(f"{bench} {recipe}: seed(s) {', '.join(map(str, twice))} occur in "
                         f"several runs ({len(group)} runs pooled); name fewer folders if "
                         f"their settings differ")
    return lines


def format_cell(mean: float, std: float, n: int, decimals: int = 2, pm: str = "±") -> str:
    """`mean ± std (n)`; one seed has no spread, so just `mean (1)`."""
    if n < 2 or std is None or math.isnan(std):
        return f"{mean:.{decimals}f} ({n})"
    return f"{mean:.{decimals}f} {pm} {std:.{decimals}f} ({n})"


def display_table(summary: "pd.DataFrame", decimals: int = 2,
                  pm: str = "±") -> tuple[list[str], list[list[str]]]:
    """The summary pivoted for reading: a row per (benchmark, recipe), a column per
    metric, cells `mean ± std (n)` and `-` where a benchmark has no such metric."""
    metric_names = list(dict.fromkeys(summary["metric"]))
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for rec in summary.to_dict("records"):
        row = cells.setdefault((rec["benchmark"], rec["recipe"]), {})
        row[rec["metric"]] = format_cell(rec["mean"], rec["std"], rec["n"], decimals, pm)
    rows = [[bench, recipe, *[row.get(m, "-") for m in metric_names]]
            for (bench, recipe), row in cells.items()]
    return ["benchmark", "recipe", *metric_names], rows


def to_markdown(summary: "pd.DataFrame", decimals: int = 2) -> str:
    """A GitHub-flavoured Markdown table of the summary (numbers right-aligned)."""
    columns, rows = display_table(summary, decimals)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---", "---", *["---:"] * (len(columns) - 2)]
    return "\n".join([line(columns), "| " + " | ".join(align) + " |", *map(line, rows)]) + "\n"


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped (recipe names hold underscores)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(summary: "pd.DataFrame", decimals: int = 2) -> str:
    """A booktabs `tabular` of the summary (needs `\\usepackage{booktabs}`)."""
    columns, rows = display_table(summary, decimals, pm="@PM@")

    def line(cells: Sequence[str]) -> str:
        return " & ".join(latex_escape(c).replace("@PM@", r"$\pm$") for c in cells) + r" \\"

    spec = "ll" + "r" * (len(columns) - 2)
    return "\n".join([rf"\begin{{tabular}}{{{spec}}}", r"\toprule", line(columns), r"\midrule",
                      *map(line, rows), r"\bottomrule", r"\end{tabular}"]) + "\n"


def to_csv(summary: "pd.DataFrame") -> str:
    """The summary as numbers (benchmark, recipe, metric, mean, std, n), one row each."""
    return summary.to_csv(index=False, lineterminator="\n")


def write_tables(summary: "pd.DataFrame", csv: Path | None = None, markdown: Path | None = None,
                 latex: Path | None = None, decimals: int = 2) -> list[Path]:
    """Write the requested renderings atomically; returns the paths written."""
    written = []
    for path, render in ((csv, lambda: to_csv(summary)),
                         (markdown, lambda: to_markdown(summary, decimals)),
                         (latex, lambda: to_latex(summary, decimals))):
        if path is not None:
            atomic_write_text(path, render())
            written.append(Path(path))
    return written
