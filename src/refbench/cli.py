"""The `refbench` command line: one typer app.

Every command has `--help`; commands that report take `--json` for machine output. A
user-input problem prints one line (`refbench: error: FILE:LINE: what`) and exits 2.
Importing this module (and `refbench --help`) imports neither torch nor transformers:
the heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from refbench.cli_leaderboard import leaderboard_app
from refbench.errors import RefbenchError

app = typer.Typer(
    help="refbench: datasets, official-grade evaluation, reference baselines and a leaderboard "
         "behind one runner.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
datasets_app = typer.Typer(help="Check, prepare and synthesize datasets in their official layouts.",
                           no_args_is_help=True)
benchmarks_app = typer.Typer(help="Inspect benchmark specs.", no_args_is_help=True)
baselines_app = typer.Typer(help="Inspect reference baselines and their recipes.",
                            no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(benchmarks_app, name="benchmarks")
app.add_typer(baselines_app, name="baselines")
app.add_typer(leaderboard_app, name="leaderboard")

JSON_OPT = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
KINDS = ("datasets", "benchmarks", "baselines", "metrics")


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    Console().print(table)


# -- list -------------------------------------------------------------------------------
@app.command("list")
def list_cmd(kind: str = typer.Argument(..., help="datasets | benchmarks | baselines | metrics"),
             pattern: str = typer.Option("*", "--pattern", "-p", help="Shell-style name filter."),
             as_json: bool = JSON_OPT) -> None:
    """List registered datasets, benchmarks, baselines or metrics."""
    from refbench.registry import REGISTRIES

    if kind not in REGISTRIES:
        raise RefbenchError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    reg = REGISTRIES[kind]
    names = reg.list(pattern)
    if kind == "benchmarks":
        specs = [reg.get(n) for n in names]
        data = [{"name": s.name, "version": s.version, "dataset": f"{s.dataset.name}/{s.dataset.config}",
                 "split": s.split, "metric": s.metric.name, "primary": s.primary,
                 "submission": s.submission.filename} for s in specs]
    else:
        data = [{"name": n, "target": reg.index.get(n, "")} for n in names]
    if as_json:
        _emit(data)
    elif data:
        _table(kind, list(data[0]), [list(d.values()) for d in data])
    else:
        typer.echo(f"no {kind} match {pattern!r}")


# -- datasets ---------------------------------------------------------------------------
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
        _emit(report.to_json())
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
        _emit(manifest)
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
        _emit(data)
    else:
        for key, value in data.items():
            typer.echo(f"{key}: {value}")


# -- benchmarks / baselines --------------------------------------------------------------
@benchmarks_app.command("list")
def benchmarks_list(pattern: str = typer.Option("*", "--pattern", "-p"), as_json: bool = JSON_OPT) -> None:
    """List benchmark specs (same as `refbench list benchmarks`)."""
    list_cmd("benchmarks", pattern, as_json)


@benchmarks_app.command("show")
def benchmarks_show(name: str = typer.Argument(...)) -> None:
    """Print a benchmark spec as JSON."""
    import dataclasses

    from refbench.benchmarks.spec import get_spec

    _emit(dataclasses.asdict(get_spec(name)))


@baselines_app.command("list")
def baselines_list(pattern: str = typer.Option("*", "--pattern", "-p"), as_json: bool = JSON_OPT) -> None:
    """List baselines (same as `refbench list baselines`)."""
    list_cmd("baselines", pattern, as_json)


@baselines_app.command("recipes")
def baselines_recipes(as_json: bool = JSON_OPT) -> None:
    """List the recipes shipped with refbench."""
    from refbench.config import RECIPES_DIR

    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
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
          init_from: Optional[str] = typer.Option(None, "--init-from", help="Local checkpoint folder."),
          max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
          limit: Optional[int] = typer.Option(None, "--limit", help="Use only the first N examples per split."),
          resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint."),
          as_json: bool = JSON_OPT) -> None:
    """Train a baseline on a benchmark; writes runs/<name>/ and its result.json."""
    from refbench import runner
    from refbench.config import build_run_config

    overrides = list(set_)
    for key, value in (("name", name), ("output_dir", output_dir), ("data.cache_dir", cache_dir),
                       ("init_from", init_from), ("data.limit", limit)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if max_steps is not None:
        overrides += [f"trainer.max_steps={max_steps}", "trainer.epochs=null"]
    config = build_run_config(baseline, benchmark, recipe, overrides)
    summary = runner.train(config, resume=resume)
    if summary.result is None:  # not rank 0
        return
    if as_json:
        _emit({"run_dir": str(summary.run_dir), "steps": summary.steps,
               "result": summary.result.to_json()})
    else:
        r = summary.result
        typer.echo(f"run: {summary.run_dir}  steps: {summary.steps}  "
                   f"time: {summary.wall_time_s:.1f}s")
        typer.echo(f"{r.benchmark}@{r.benchmark_version} {r.split}: " +
                   ", ".join(f"{k}={v:.2f}" for k, v in r.metrics.items()))


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


@app.command()
def evaluate(benchmark: str = typer.Argument(..., help="Benchmark name, e.g. glue-cola."),
             predictions: Path = typer.Option(..., "--predictions", "-p", help="Prediction file."),
             references: Optional[Path] = typer.Option(
                 None, "--references", help="Official label file or folder (e.g. a GLUE dev.tsv); "
                                            "default: the prepared split."),
             split: Optional[str] = typer.Option(None, "--split", help="Prepared split to score against."),
             cache_dir: Optional[str] = typer.Option(None, "--cache-dir"),
             output: Optional[Path] = typer.Option(None, "--output", help="Write result.json here."),
             na_prob_file: Optional[Path] = typer.Option(
                 None, "--na-prob-file",
                 help="SQuAD v2.0 only: JSON {question_id: no-answer probability} of the "
                      "predictions (evaluate-v2.0.py's --na-prob-file)."),
             na_prob_thresh: Optional[float] = typer.Option(
                 None, "--na-prob-thresh",
                 help="SQuAD v2.0 only: a prediction whose no-answer probability exceeds this "
                      "counts as \"no answer\" (default 1.0, as evaluate-v2.0.py)."),
             as_json: bool = JSON_OPT) -> None:
    """Score a prediction file exactly like the official script does."""
    from refbench.benchmarks.scoring import evaluate_file
    from refbench.benchmarks.spec import get_spec

    read_options = {} if na_prob_file is None else {"na_prob_file": na_prob_file}
    metric_options = {} if na_prob_thresh is None else {"na_prob_thresh": na_prob_thresh}
    if read_options or metric_options:
        spec = get_spec(benchmark)
        if spec.metric.name != "squad":
            raise RefbenchError(f"--na-prob-file / --na-prob-thresh apply to SQuAD v2.0 "
                                f"benchmarks only, not {spec.name}")
    result = evaluate_file(benchmark, predictions, references, split=split, cache_dir=cache_dir,
                           read_options=read_options, metric_options=metric_options)
    if output is not None:
        result.write(output)
    if as_json:
        _emit(result.to_json())
    else:
        _table(f"{result.benchmark}@{result.benchmark_version} ({result.split})",
               ["metric", "value", "direction"],
               [[("* " if k == result.primary else "") + k, f"{v:.4f}", result.directions[k]]
                for k, v in result.metrics.items()])


# -- demo -------------------------------------------------------------------------------------
@app.command()
def demo(workdir: Path = typer.Option(Path(".refbench-cache/demo"), "--workdir",
                                      help="Where the synthetic data, cache, runs and board go."),
         tasks: list[str] = typer.Option(["sst2", "mrpc", "cola", "mnli", "stsb", "squad", "kitti"],
                                         "--task", help="GLUE tasks, 'squad' (SQuAD v1.1) and/or "
                                                        "'kitti' (3D Car detection) to run (repeatable)."),
         fresh: bool = typer.Option(True, "--fresh/--reuse", help="Start from an empty workdir."),
         serve: bool = typer.Option(False, "--serve", help="Then serve the demo leaderboard on "
                                                          "localhost and print its URL."),
         port: int = typer.Option(8000, "--port", help="Port for --serve.")) -> None:
    """The main job on an embedded default: synthesize GLUE, SQuAD and KITTI, prepare, train
    (tiny BERT; the tiny SECOND for 300 steps), predict, evaluate,
    record on a leaderboard (self-reported runs plus server-scored submissions) and print a
    results table."""
    from refbench.demo import run_demo, serve_demo

    run_demo(workdir, tasks, fresh=fresh)
    if serve:
        serve_demo(workdir, port)


# -- architecture search ------------------------------------------------------------------------
@app.command()
def search(baseline: str = typer.Argument(..., help="What to search: efficientbert."),
           benchmark: str = typer.Option(..., "--benchmark", "-b", help="A GLUE benchmark, e.g. glue-sst2."),
           teacher: Path = typer.Option(..., "--teacher", help="Run folder of a `refbench train bert` "
                                                               "teacher of the same task."),
           out: Path = typer.Option(..., "--out", help="Folder for search.json, ranking.jsonl and the recipe."),
           recipe: str = typer.Option("efficientbert_tiny_glue", "--recipe", "-r",
                                      help="Student recipe: its model sizes, and its ffn_expressions "
                                           "set the default parameter budget."),
           set_: list[str] = typer.Option([], "--set", help="Override model.* or search.* "
                                                            "(e.g. search.proxy_steps=5; repeatable)."),
           candidates: Optional[int] = typer.Option(None, "--candidates", help="Candidates scored per stage."),
           warmup_steps: Optional[int] = typer.Option(None, "--warmup-steps",
                                                      help="Warm-up distillation steps per stage."),
           seed: Optional[int] = typer.Option(None, "--seed", help="Default: the recipe's trainer.seed."),
           cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Prepared dataset cache."),
           as_json: bool = JSON_OPT) -> None:
    """Search EfficientBERT's per-layer FFNs coarse to fine (official ffn_search.sh).

    Three stages, each handing its best architecture to the next:
    joint: expression and linear type (1-4 stacked FFNs x width 1, 1/2, 1/3, 1/4);
    expression: the expressions, with the linear types fixed;
    linear: the linear types, with the expressions fixed.
    joint and linear keep the student within the parameter budget.

    Per stage: warm-up distillation of the weight-sharing supernet from the
    teacher, then each candidate is distilled briefly (linear: one-shot) and
    scored by the task metric on a held-out part of the training split.

    Writes search.json, ranking.jsonl and efficientbert_searched_glue.yaml, a
    recipe for `refbench train efficientbert --recipe`.
    Tune with --set search.KEY=VALUE: stages, candidates, warmup_steps,
    proxy_steps, proxy (metric|loss), min_params, max_params,
    sampler (lanas|random), init_samples, val_ratio, lr, batch_size, threads.
    """
    from refbench.baselines.efficientbert_search import search as run_search

    if baseline != "efficientbert":
        raise RefbenchError(f"no architecture search for {baseline!r}; available: efficientbert")
    overrides = list(set_)
    for key, value in (("candidates", candidates), ("warmup_steps", warmup_steps), ("seed", seed)):
        if value is not None:
            overrides.append(f"search.{key}={value}")
    say = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    result = run_search(benchmark, teacher, out, recipe, overrides, cache_dir=cache_dir,
                        progress=say)
    if as_json:
        _emit({"out": str(result.out), **result.summary})
    else:
        chosen = result.summary["chosen"]
        typer.echo(f"searched: {', '.join(chosen['ffn_expressions'])}  params: {chosen['params']}")
        typer.echo(f"wrote {result.out / 'search.json'}, ranking.jsonl, {result.summary['recipe_file']}")


def _click_exceptions() -> Any:
    """The click exception classes typer raises: recent typer versions vendor their own
    copy of click (`typer._click`), whose classes are not click's."""
    try:
        from typer._click import exceptions  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - typer that uses the click package
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2."""
    import click

    vendored = _click_exceptions()
    usage = (click.exceptions.ClickException, vendored.ClickException)
    abort = (click.exceptions.Abort, typer.Abort)
    leave = (click.exceptions.Exit, typer.Exit)
    try:
        app(args=argv, standalone_mode=False)
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


if __name__ == "__main__":
    main()
