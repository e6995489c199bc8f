"""`refbench datasets ...`: check, prepare, synthesize, describe and export datasets in
their official layouts. Heavy modules are imported inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from refbench.cli_output import JSON_OPT, emit

datasets_app = typer.Typer(help="Check, prepare, synthesize and export datasets in their "
                                "official layouts.", no_args_is_help=True)


def _builder(name: str) -> Any:
    from refbench.datasets.base import get_builder

    return get_builder(name)


@datasets_app.command("check")
def datasets_check(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                   root: Path = typer.Option(..., "--root", help="Folder of the official release."),
                   config: list[str] = typer.Option([], "--config", "-c",
                                                    help="Only these configs (repeatable)."),
                   as_json: bool = JSON_OPT) -> None:
    """Report missing files and the first malformed line of each file; writes nothing."""
    builder = _builder(name)
    report = builder.check(root, builder.resolve_configs(config or None))
    if as_json:
        emit(report.to_json())
    else:
        typer.echo(f"{name}: {len(report.found)} file(s) found under {root}")
        for problem in report.problems:
            typer.echo(f"  problem: {problem.format()}")
        typer.echo("ok" if report.ok else f"{len(report.problems)} problem(s)")
    if not report.ok:
        raise typer.Exit(2)


@datasets_app.command("prepare")
def datasets_prepare(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                     root: Path = typer.Option(..., "--root", help="Folder of the official release."),
                     cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                              help="Default: $REFBENCH_CACHE or ~/.cache/refbench."),
                     config: list[str] = typer.Option([], "--config", "-c", help="Only these configs."),
                     as_json: bool = JSON_OPT) -> None:
    """Parse and validate the release, then write Arrow files + manifest.json atomically."""
    manifest = _builder(name).prepare(root, cache_dir, config or None, progress=not as_json)
    if as_json:
        emit(manifest)
    else:
        typer.echo(f"prepared {name}@{manifest['version']} fingerprint {manifest['fingerprint'][:12]}")


@datasets_app.command("synthesize")
def datasets_synthesize(name: str = typer.Argument(..., help="Dataset name, e.g. glue."),
                        out: Path = typer.Option(..., "--out", help="Folder to write the layout into."),
                        n: int = typer.Option(200, "--n", help="Training examples per config."),
                        seed: int = typer.Option(0, "--seed")) -> None:
    """Write a synthetic copy of the official layout that a model can learn from."""
    root = _builder(name).synthesize(out, n=n, seed=seed)
    typer.echo(str(root))


@datasets_app.command("info")
def datasets_info(name: str = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """Version, licence, citation, configs and expected layout of a dataset."""
    b = _builder(name)
    data = {"name": b.name, "version": b.version, "license": b.license, "citation": b.citation,
            "homepage": b.homepage, "gated": b.gated,
            "configs": {c: b.splits(c) for c in b.configs()}, "layout": b.layout()}
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
