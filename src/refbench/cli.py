"""The `refbench` command line: one typer app.

Every command has `--help`; commands that report take `--json` for machine output. A
user-input problem prints one line (`refbench: error: FILE:LINE: what`) and exits 2.
Importing this module (and `refbench --help`) imports neither torch nor transformers:
the heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from refbench.cli_datasets import datasets_app
from refbench.cli_leaderboard import leaderboard_app
from refbench.cli_output import JSON_OPT
from refbench.cli_output import emit as _emit
from refbench.cli_output import table as _table
from refbench.errors import RefbenchError

app = typer.Typer(
    help="refbench: datasets, official-grade evaluation, reference baselines and a leaderboard "
         "behind one runner.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
benchmarks_app = typer.Typer(help="Inspect benchmark specs.", no_args_is_help=True)
baselines_app = typer.Typer(help="Inspect reference baselines and their recipes.",
                            no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(benchmarks_app, name="benchmarks")
app.add_typer(baselines_app, name="baselines")
searches_app = typer.Typer(help="Inspect registered searches and their options.",
                           no_args_is_help=True)
app.add_typer(searches_app, name="searches")
app.add_typer(leaderboard_app, name="leaderboard")

KINDS = ("datasets", "benchmarks", "baselines", "metrics", "formats", "searches", "demos", "recipes")


# -- list -------------------------------------------------------------------------------
@app.command("list")
def list_cmd(kind: str = typer.Argument(..., help="datasets | benchmarks | baselines | metrics | "
                                                    "formats | searches | demos | recipes"),
             pattern: str = typer.Option("*", "--pattern", "-p", help="Shell-style name filter."),
             as_json: bool = JSON_OPT) -> None:
    """List registered datasets, benchmarks, baselines, metrics, formats, searches, demo
    jobs or recipes (installed plugins included)."""
    from refbench.registry import REGISTRIES

    if kind not in KINDS:
        raise RefbenchError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    reg = REGISTRIES[kind]
    names = reg.list(pattern)
    if kind == "benchmarks":
        specs = [reg.get(n) for n in names]
        data = [{"name": s.name, "version": s.version, "dataset": f"{s.dataset.name}/{s.dataset.config}",
                 "task": s.task.type, "split": s.split, "metric": s.metric.name,
                 "primary": s.primary, "submission": s.submission.filename} for s in specs]
    elif kind == "demos":
        data = [{"name": n, "default": bool(reg.meta(n).get("default", False)),
                 "target": reg.index.get(n, "")} for n in names]
    else:
        data = [{"name": n, "target": reg.index.get(n, "")} for n in names]
    if as_json:
        _emit(data)
    elif data:
        _table(kind, list(data[0]), [list(d.values()) for d in data])
    else:
        typer.echo(f"no {kind} match {pattern!r}")


# -- benchmarks / baselines --------------------------------------------------------------
@benchmarks_app.command("list")
def benchmarks_list(pattern: str = typer.Option("*", "--pattern", "-p"), as_json: bool = JSON_OPT) -> None:
    """List benchmark specs (same as `refbench list benchmarks`)."""
    list_cmd("benchmarks", pattern, as_json)


@benchmarks_app.command("show")
def benchmarks_show(name: str = typer.Argument(...)) -> None:
    """Print a benchmark spec as JSON, with the run-time options of its format and metric
    (what `refbench evaluate NAME` accepts beyond the common options)."""
    import dataclasses

    from refbench.benchmarks.scoring import declared_options
    from refbench.registry import get_spec

    spec = get_spec(name)
    read, metric = declared_options(spec)
    _emit({**dataclasses.asdict(spec), "key": spec.key,
           "options": [o.to_json() for o in (*read, *metric)]})


@baselines_app.command("list")
def baselines_list(pattern: str = typer.Option("*", "--pattern", "-p"), as_json: bool = JSON_OPT) -> None:
    """List baselines (same as `refbench list baselines`)."""
    list_cmd("baselines", pattern, as_json)


@baselines_app.command("recipes")
def baselines_recipes(as_json: bool = JSON_OPT) -> None:
    """List the recipes shipped with refbench."""
    from refbench.registry import RECIPES

    names = RECIPES.names()
    if as_json:
        _emit(names)
    else:
        typer.echo("\n".join(names))


# -- train / predict / evaluate ------------------------------------------------------------
@app.command()
def train(baseline: str = typer.Argument(..., help="Baseline name, e.g. bert."),
          benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark name, e.g. glue-sst2."),
          recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="Recipe name or YAML path."),
          set_: list[str] = typer.Option([], "--set", help="Override a config key: a.b=value (repeatable)."),
          name: Optional[str] = typer.Option(None, "--name", help="Run name (folder under --output-dir)."),
          output_dir: Optional[str] = typer.Option(None, "--output-dir", help="Default: runs."),
          cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Prepared dataset cache."),
          init_from: Optional[str] = typer.Option(
              None, "--init-from", help="A local checkpoint (folder or file) to start from, in "
              "the layout the baseline reads (its recipe comments and the README name it); "
              "checked before the run folder is written."),
          max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
          limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N examples per split."),
          resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete "
                                      "checkpoint; with a larger --max-steps, extend a finished run."),
          option: list[str] = typer.Option(
              [], "--option", "-O", help="A metric option used when the run scores itself, "
                                         "key=value (repeatable; `refbench benchmarks show` "
                                         "lists them); stored as evaluation.KEY."),
          protocol: bool = typer.Option(False, "--protocol", help="Train every seed of the "
                                        "benchmark's protocol (runs <name>-s<seed>) and write "
                                        "their mean ± std to <name>-protocol/result.json."),
          seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds for --protocol, "
                                              "e.g. 0,1,2 (default: the spec's protocol.seeds; "
                                              "implies --protocol)."),
          as_json: bool = JSON_OPT) -> None:
    """Train a baseline on a benchmark; writes runs/<name>/ and its result.json (with
    --protocol: one run per seed and their aggregate)."""
    from refbench import runner
    from refbench.config import build_run_config

    overrides = list(set_) + [f"evaluation.{item}" for item in option]
    for key, value in (("name", name), ("output_dir", output_dir), ("data.cache_dir", cache_dir),
                       ("init_from", init_from), ("data.limit", limit)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if max_steps is not None:
        overrides += [f"trainer.max_steps={max_steps}", "trainer.epochs=null"]
    config = build_run_config(baseline, benchmark, recipe, overrides)
    if protocol or seeds is not None:
        _train_protocol(config, seeds, resume, as_json)
        return
    summary = runner.train(config, resume=resume)
    if summary.result is None:  # not rank 0
        return
    for warning in summary.result.warnings:
        typer.echo(f"refbench: warning: {warning}", err=True)
    if as_json:
        _emit({"run_dir": str(summary.run_dir), "steps": summary.steps,
               "result": summary.result.to_json()})
    else:
        r = summary.result
        typer.echo(f"run: {summary.run_dir}  steps: {summary.steps}  "
                   f"time: {summary.wall_time_s:.1f}s")
        typer.echo(f"{r.benchmark}@{r.benchmark_version} {r.split}: " +
                   ", ".join(f"{k}={v:.2f}" for k, v in r.metrics.items()))


def _parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1,2` -> [0, 1, 2]; None leaves the spec's protocol seeds."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RefbenchError(f"expected comma-separated integers, got {text!r}",
                            key="--seeds") from None


def _train_protocol(config: Any, seeds: str | None, resume: bool, as_json: bool) -> None:
    """`train --protocol`: every seed, then each seed's primary and the mean ± std."""
    from refbench.protocol import format_aggregate, train_protocol

    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    summary = train_protocol(config, _parse_seeds(seeds), resume=resume, progress=say)
    agg = summary.aggregate
    if agg is None:  # not rank 0
        return
    if as_json:
        _emit({"runs": [str(d) for d in summary.run_dirs], "skipped": summary.skipped,
               "aggregate_path": str(summary.aggregate_path), "result": agg.to_json()})
        return
    for seed, run_dir, r in zip(summary.seeds, summary.run_dirs, summary.results):
        typer.echo(f"  seed {seed}: {r.primary}={r.primary_value:.2f}  ({run_dir})")
    typer.echo(f"{agg.benchmark}@{agg.benchmark_version} {agg.split}: {agg.primary} = "
               f"{format_aggregate(agg)}")
    typer.echo(f"aggregate: {summary.aggregate_path}")


@app.command()
def predict(run_dir: Path = typer.Argument(..., help="A run folder written by `refbench train`."),
            split: str = typer.Option(..., "--split", "-s", help="Dataset split, e.g. validation or test."),
            output: Path = typer.Option(..., "--output", "-o", help="Submission file to write."),
            checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
            cache_dir: Optional[str] = typer.Option(None, "--cache-dir")) -> None:
    """Write predictions of a trained run in the benchmark's submission format."""
    from refbench import runner

    if checkpoint not in ("best", "last"):
        raise RefbenchError(f"--checkpoint must be best or last, got {checkpoint!r}")
    path = runner.predict(run_dir, split, output, checkpoint, cache_dir)
    typer.echo(str(path))


EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=EXTRA_ARGS)
def evaluate(ctx: typer.Context,
             benchmark: str = typer.Argument(..., help="Benchmark name, e.g. glue-cola."),
             predictions: Path = typer.Option(..., "--predictions", "-p", help="Prediction file."),
             references: Optional[Path] = typer.Option(
                 None, "--references", help="Official label file or folder (e.g. a GLUE dev.tsv); "
                                            "default: the prepared split."),
             split: Optional[str] = typer.Option(None, "--split", help="Prepared split to score against."),
             cache_dir: Optional[str] = typer.Option(None, "--cache-dir"),
             output: Optional[Path] = typer.Option(None, "--output", help="Write result.json here."),
             option: list[str] = typer.Option(
                 [], "--option", "-O",
                 help="A run-time option of the benchmark's format or metric, key=value "
                      "(repeatable); each is also accepted as its own flag, e.g. "
                      "--na-prob-file F. `refbench benchmarks show NAME` lists them."),
             strict: bool = typer.Option(
                 False, "--strict", help="Refuse a file with missing or extra ids (one-line "
                                         "error, exit 2) instead of scoring it as the official "
                                         "tool does and warning."),
             as_json: bool = JSON_OPT) -> None:
    """Score a prediction file exactly like the official script does.

    Missing and extra ids are treated as the official tool treats them (see
    the benchmark's description), with a warning on stderr and the counts in
    the output; --strict refuses them.

    Benchmarks declare their own options (a companion file, a threshold);
    `refbench benchmarks show NAME` lists them."""
    from refbench.benchmarks.scoring import benchmark_options, evaluate_file
    from refbench.registry import get_spec

    spec = get_spec(benchmark)
    read_options, metric_options = benchmark_options(spec, option, ctx.args)
    result = evaluate_file(spec, predictions, references, split=split, cache_dir=cache_dir,
                           read_options=read_options, metric_options=metric_options,
                           strict=strict)
    if output is not None:
        result.write(output)
    if as_json:
        _emit(result.to_json())
    else:
        _table(f"{result.benchmark}@{result.benchmark_version} ({result.split})",
               ["metric", "value", "direction"],
               [[("* " if k == result.primary else "") + k, f"{v:.4f}", result.directions[k]]
                for k, v in result.metrics.items()])
        if result.counts:
            _table("counts", ["count", "value"], [[k, v] for k, v in result.counts.items()])
    for line in dict.fromkeys(result.warnings):  # each once, after the tables
        typer.echo(f"refbench: warning: {line}", err=True)


# -- results ----------------------------------------------------------------------------------
@app.command("results")
def results_cmd(paths: list[Path] = typer.Argument(..., help="Run folders (with result.json) "
                                                            "or folders of run folders."),
                csv: Optional[Path] = typer.Option(None, "--csv", help="Write the numbers "
                                                   "(benchmark, recipe, metric, mean, std, n)."),
                markdown: Optional[Path] = typer.Option(None, "--markdown",
                                                        help="Write a Markdown table."),
                latex: Optional[Path] = typer.Option(None, "--latex",
                                                     help="Write a booktabs LaTeX table."),
                metric: list[str] = typer.Option([], "--metric", "-m", help="Metric key to "
                                                 "show (repeatable; default: each benchmark's "
                                                 "primary)."),
                decimals: int = typer.Option(2, "--decimals", help="Digits after the point."),
                as_json: bool = JSON_OPT) -> None:
    """One table over runs: mean ± std (n seeds) per benchmark and recipe.

    Folders are searched for */result.json; protocol aggregates (*-protocol) are used only
    when named directly, since their seed runs sit beside them."""
    from refbench import results_table

    runs = results_table.collect(paths)
    for line in results_table.repeated_seeds(runs):
        typer.echo(f"warning: {line}", err=True)
    summary = results_table.summarize(runs, metric or None)
    results_table.write_tables(summary, csv=csv, markdown=markdown, latex=latex,
                               decimals=decimals)
    if as_json:
        _emit([{k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()}
               for rec in summary.to_dict("records")])
    else:
        columns, rows = results_table.display_table(summary, decimals)
        _table("results (mean ± std (n seeds))", columns, rows)


# -- demo -------------------------------------------------------------------------------------
@app.command()
def demo(workdir: Path = typer.Option(Path(".refbench-cache/demo"), "--workdir",
                                      help="Where the synthetic data, cache, runs and board go."),
         tasks: list[str] = typer.Option([], "--task",
                                         help="Demo jobs to run (repeatable); `all` runs every "
                                              "job; default: one small job per family. "
                                              "`refbench list demos` lists them."),
         fresh: bool = typer.Option(True, "--fresh/--reuse", help="Start from an empty workdir."),
         serve: bool = typer.Option(False, "--serve", help="Then serve the demo leaderboard on "
                                                          "localhost and print its URL."),
         port: int = typer.Option(8000, "--port", help="Port for --serve.")) -> None:
    """The main job on embedded synthetic data: for each registered demo job, synthesize the
    official layout, prepare it, train a tiny recipe, predict, evaluate against a trivial
    submission, record both on a leaderboard (self-reported runs plus server-scored
    submissions) and print a results table."""
    from refbench.demo import run_demo, serve_demo

    run_demo(workdir, tasks or None, fresh=fresh)
    if serve:
        serve_demo(workdir, port)


# -- searches ----------------------------------------------------------------------------------
@app.command(context_settings=EXTRA_ARGS)
def search(ctx: typer.Context,
           name: str = typer.Argument(..., help="Which search (`refbench list searches`)."),
           benchmark: str = typer.Option(..., "--benchmark", "-b", help="Benchmark to search on."),
           out: Path = typer.Option(..., "--out", help="Folder for the search's results."),
           set_: list[str] = typer.Option([], "--set", help="Override a recipe or search key: "
                                                            "a.b=value (repeatable)."),
           option: list[str] = typer.Option(
               [], "--option", "-O", help="A search option, key=value (repeatable); each is "
                                          "also accepted as its own flag, e.g. --teacher DIR. "
                                          "`refbench searches show NAME` lists them."),
           cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Prepared dataset cache."),
           as_json: bool = JSON_OPT) -> None:
    """Run a registered architecture / hyper-parameter search and write its results to --out.

    Each search declares its own options; `refbench searches show NAME` lists them."""
    from refbench.options import parse_option_args
    from refbench.registry import SEARCHES

    cls = SEARCHES.get(name)
    values = parse_option_args(cls.options, option, ctx.args, what=f"search {name}")
    for declared in cls.options:
        if declared.name in cls.required and values.get(declared.name) is None:
            raise RefbenchError(f"search {name} needs {declared.flag}: {declared.help}")
        values.setdefault(declared.name, declared.default)
    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    outcome = cls().run(benchmark, out, values, list(set_), cache_dir=cache_dir, progress=say)
    if as_json:
        _emit({"out": str(outcome.out), **outcome.summary})
    else:
        for line in outcome.lines:
            typer.echo(line)


@searches_app.command("list")
def searches_list(as_json: bool = JSON_OPT) -> None:
    """List the registered searches (same as `refbench list searches`)."""
    list_cmd("searches", "*", as_json)


@searches_app.command("show")
def searches_show(name: str = typer.Argument(...), as_json: bool = JSON_OPT) -> None:
    """A search's description and its options."""
    from refbench.registry import SEARCHES

    cls = SEARCHES.get(name)
    data = {"name": name, "summary": cls.summary, "description": (cls.__doc__ or "").strip(),
            "options": [dict(o.to_json(), required=o.name in cls.required) for o in cls.options]}
    if as_json:
        _emit(data)
        return
    typer.echo(f"{name}: {cls.summary}\n")
    typer.echo(data["description"] + "\n")
    for o in cls.options:
        need = " (required)" if o.name in cls.required else \
            ("" if o.default is None else f" (default {o.default})")
        typer.echo(f"  {o.flag} {o.type.upper()}{need}: {o.help}")


def _click_exceptions() -> Any:
    """The click exception classes typer raises: recent typer versions vendor their own
    copy of click (`typer._click`), whose classes are not click's."""
    try:
        from typer._click import exceptions  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - typer that uses the click package
        from click import exceptions
    return exceptions


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: the file(s) it names and what the system said."""
    what = exc.strerror or exc.__class__.__name__
    where = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    text = " ".join(str(exc).split()) if not where and not exc.strerror else what
    return f"{' -> '.join(where)}: {text}" if where else text


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2."""
    import click

    vendored = _click_exceptions()
    usage = (click.exceptions.ClickException, vendored.ClickException)
    abort = (click.exceptions.Abort, typer.Abort)
    leave = (click.exceptions.Exit, typer.Exit)
    try:
        # without standalone mode, click hands a command's `typer.Exit(code)` back as the
        # return value instead of exiting: pass it on
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except RefbenchError as exc:
        print(f"refbench: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except usage as exc:  # usage errors and bad parameters
        exc.show()
        sys.exit(2 if isinstance(exc, (click.exceptions.UsageError, vendored.UsageError))
                 else exc.exit_code)
    except abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except leave as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a folder where a file belongs, an unreadable file, a full disk
        print(f"refbench: error: {describe_os_error(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
