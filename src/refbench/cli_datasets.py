"""`refbench datasets ...`: check, prepare, synthesize, describe and export datasets in
their official layouts. Heavy modules are imported inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from refbench.cli_output import JSON_OPT, emit

if TYPE_CHECKING:  # pragma: no cover
    from refbench.datasets.base import CheckReport

datasets_app = typer.Typer(help="Check, prepare, synthesize and export datasets in their "
                                "official layouts.", no_args_is_help=True)


def _builder(name: str) -> Any:
    from refbench.datasets.base import get_builder

    return get_builder(name)


#: problems of one kind whose places the summary line shows (`--all` lists every problem)
CHECK_EXAMPLES = 3


@datasets_app.command("check")
def datasets_check(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                   root: Path = typer.Option(..., "--root", help="Folder of the official release."),
                   config: list[str] = typer.Option([], "--config", "-c",
                                                    help="Only these configs (repeatable)."),
                   show_all: bool = typer.Option(False, "--all",
                                                 help="List every problem, not one summary "
                                                      "line per kind of problem."),
                   as_json: bool = JSON_OPT) -> None:
    """Report missing files and the first malformed line of each file; writes nothing.

    Prints one summary line per kind of problem (count, first few paths), the first
    problem of each kind, and hints for situations it recognizes (a subset of the
    release, --root one level off, another release format). --json prints the report
    with every problem plus `summary` and `hints`.

    Exit codes: 0 the release is complete and well-formed; 1 problems were found (a
    --root that does not exist included: that is a problem with the data); 2 usage
    error (unknown dataset or config, bad option)."""
    builder = _builder(name)
    report = builder.check(root, builder.resolve_configs(config or None))
    if as_json:
        emit(report.to_json())
    else:
        for line in check_report_lines(name, report, show_all):
            typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)


def check_report_lines(name: str, report: CheckReport, show_all: bool = False) -> list[str]:
    """The text `datasets check` prints for a report: what was found, one summary line per
    kind of problem followed by the first problem of that kind (with `show_all`: every
    problem instead), the hints, and the verdict."""
    lines = [f"{name}: {len(report.found):,} file(s) found under {report.root}"]
    groups = report.summary(CHECK_EXAMPLES)
    for group in groups:
        lines.append(f"  {group.line()}")
        if not show_all and group.count > 1:
            lines.append(f"    first: {group.first}")
    if show_all and report.problems:
        lines.append("every problem:")
        lines.extend(f"  {p.kind}: {p.format(report.root)}" for p in report.problems)
    elif len(report.problems) > len(groups):
        lines.append("  (--all lists every problem)")
    lines.extend(f"hint: {hint}" for hint in report.hints)
    lines.append("ok" if report.ok else f"{len(report.problems):,} problem(s)")
    return lines


@datasets_app.command("prepare")
def datasets_prepare(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                     root: Path = typer.Option(..., "--root", help="Folder of the official release."),
                     cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                              help="Default: $REFBENCH_CACHE or ~/.cache/refbench."),
                     config: list[str] = typer.Option([], "--config", "-c", help="Only these configs."),
                     option: list[str] = typer.Option([], "--option", "-o",
                                                      help="A prepare option KEY=VALUE the "
                                                           "dataset declares (see `datasets info`)."),
                     as_json: bool = JSON_OPT) -> None:
    """Parse and validate the release, then write Arrow files + manifest.json atomically."""
    from refbench.options import parse_option_args

    builder = _builder(name)
    options = parse_option_args(builder.prepare_options, option, what=f"dataset {name}")
    manifest = builder.prepare(root, cache_dir, config or None, progress=not as_json,
                               options=options)
    if as_json:
        emit(manifest)
    else:
        typer.echo(f"prepared {name}@{manifest['version']} fingerprint {manifest['fingerprint'][:12]}")


@datasets_app.command("synthesize")
def datasets_synthesize(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                        out: Path = typer.Option(..., "--out", help="Folder to write the layout into."),
                        n: int = typer.Option(200, "--n", help="Training examples per config."),
                        seed: int = typer.Option(0, "--seed"),
                        option: list[str] = typer.Option([], "--option", "-o",
                                                         help="A synthesizer option KEY=VALUE "
                                                              "the dataset declares (see "
                                                              "`datasets info`).")) -> None:
    """Write a synthetic copy of the official layout that a model can learn from."""
    from refbench.options import parse_option_args

    builder = _builder(name)
    options = parse_option_args(builder.synthesize_options, option,
                                what=f"dataset {name}'s synthesizer")
    root = builder.synthesize(out, n=n, seed=seed, **options)
    typer.echo(str(root))


@datasets_app.command("info")
def datasets_info(name: str = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Version, licence, citation, configs and expected layout of a dataset."""
    b = _builder(name)
    data = {"name": b.name, "version": b.version, "license": b.license, "citation": b.citation,
            "homepage": b.homepage, "gated": b.gated,
            "configs": {c: b.splits(c) for c in b.configs()}, "layout": b.layout(),
            "prepare_options": [o.to_json() for o in b.prepare_options],
            "synthesize_options": [o.to_json() for o in b.synthesize_options]}
    if as_json:
        emit(data)
    else:
        for key, value in data.items():
            typer.echo(f"{key}: {value}")


@datasets_app.command("export")
def datasets_export(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                    out: Path = typer.Option(..., "--out", help="Folder to write the repository "
                                             "into (new, empty, or an earlier export)."),
                    config: list[str] = typer.Option([], "--config", "-c",
                                                     help="Only these prepared configs (repeatable)."),
                    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                             help="Default: $REFBENCH_CACHE or ~/.cache/refbench."),
                    shard_rows: Optional[int] = typer.Option(None, "--shard-rows", min=1,
                                                             help="At most this many rows per Parquet "
                                                                  "shard (shards also stay under 500 MB)."),
                    as_json: bool = JSON_OPT) -> None:
    """Write a prepared dataset as a Hugging Face Hub dataset repository.

    Parquet shards per split (data/CONFIG/SPLIT-0000i-of-0000N.parquet) plus a dataset card (README.md) with
    licence, citation, features and split sizes. `datasets.load_dataset(DIR, CONFIG)` loads
    it offline and `huggingface_hub.upload_folder(repo_id=..., folder_path=DIR,
    repo_type="dataset")` publishes it as is. The folder is written atomically."""
    from refbench.datasets.export import describe_export, export_dataset

    b = _builder(name)
    if b.gated:
        typer.echo(f"refbench: warning: {name} is gated ({b.license}); its terms forbid "
                   "redistribution unless you hold the right: do not publish the export "
                   "otherwise, and keep the repository gated or private", err=True)
    written = export_dataset(name, out, configs=config or None,
                             cache_dir=None if cache_dir is None else str(cache_dir),
                             max_shard_rows=shard_rows, progress=not as_json)
    if as_json:
        emit({"name": b.name, "version": b.version, **describe_export(written)})
    else:
        typer.echo(f"wrote {written}: load with datasets.load_dataset({str(written)!r}, CONFIG), "
                   "publish with huggingface_hub.upload_folder")
