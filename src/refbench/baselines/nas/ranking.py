"""The ranking-consistency benchmark of a weight-sharing search, generic over searches.

A supernet claims that the architectures it ranks high are the ones that train well on
their own. This module measures the claim for any search that can do three things (the
`RankingClient` protocol):

1. sample N architectures of its space, deterministically from a seed;
2. train one architecture stand-alone (the ground truth: its accuracy, in percent);
3. score an architecture with a trained supernet (its fitness, larger is better);

plus train a supernet of a given method and seed, so methods can be compared at one
budget. Every training and every scoring pass is an independent job of the one job pool
(`refbench.engine.jobs`: local processes by default, a Ray cluster with `address`).

Per supernet (method x seed), the scores go through the `nas_ranking` submission format
(written and read back, so the file a user would submit is the file scored) and the
`ranking_consistency` metric against the stand-alone accuracies (the mean over the
`truth_seeds` trainings of each architecture): Kendall tau-b (primary), tau-a/c, Spearman
rho, P@k and the stand-alone accuracy of the supernet's top pick. Argument order is fixed
(ground truth, predicted), as the metric documents. Outputs under OUT:

    ground_truth.jsonl          arch, per-seed stand-alone accuracies, their mean
    <method>/seed<s>/scores.txt the supernet's scores (nas_ranking format)
    <method>/seed<s>/result.json  one supernet's ranking consistency
    <method>/result.json        over supernet seeds: means, sample std, per-seed values
    score_vs_accuracy.svg       supernet score vs stand-alone accuracy, a panel per method
    ranking.json                the summary (N, how sampled, seeds, settings, figures)

A client only needs a job target per training and scoring (importable functions with
JSON-like arguments); `summary_lines` is what a registered search prints at the end.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from refbench.datasets.nasbench.spaces import SearchSpace
from refbench.engine.jobs import Job, JobResult, raise_failures, run_jobs
from refbench.errors import RefbenchError
from refbench.io import atomic_write_json, atomic_write_text, sha256_path

BENCHMARK_VERSION = 1
SUMMARY_FILE, TRUTH_FILE, PLOT_FILE = "ranking.json", "ground_truth.jsonl", "score_vs_accuracy.svg"
#: sampled architectures a ranking needs at least (Kendall tau of 2 is +-1)
MIN_ARCHS = 3


@dataclass
class RankingSettings:
    """What the benchmark runs: N architectures drawn with `sample_seed`, each trained
    stand-alone once per `truth_seeds`; one supernet per method x `supernet_seeds` (or the
    given `supernets` runs); P@k for each of `ks`; the job pool's settings."""

    archs: int = 12
    sample_seed: int = 0
    truth_seeds: list[int] = field(default_factory=lambda: [0])
    methods: list[str] = field(default_factory=list)
    supernet_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    #: trained supernet runs to score instead of training them (method, seed read from each)
    supernets: list[str] = field(default_factory=list)
    ks: list[int] = field(default_factory=lambda: [3])
    workers: int | None = None
    threads: int = 1
    address: str | None = None

    def check(self) -> None:
        if self.archs < MIN_ARCHS:
            raise RefbenchError(f"must be >= {MIN_ARCHS}, got {self.archs}", key="archs")
        for name in ("truth_seeds", "supernet_seeds"):
            seeds = getattr(self, name)
            if not seeds or len(set(seeds)) != len(seeds):
                raise RefbenchError(f"needs distinct seeds, got {seeds}", key=name)
        if not self.supernets and not self.methods:
            raise RefbenchError("name the supernet methods to compare, or trained supernet "
                                "runs", key="methods")
        bad = [k for k in self.ks if not 1 <= k <= self.archs]
        if bad:
            raise RefbenchError(f"P@k needs 1 <= k <= archs ({self.archs}), got {bad}", key="ks")


@dataclass(frozen=True)
class Supernet:
    """One trained supernet: its method, seed and run folder."""

    method: str
    seed: int
    run: str


class RankingClient(Protocol):
    """What a search exposes to be ranked (module docstring). Codes are strings in the
    client's canonical spelling; every job returns JSON-like values."""

    #: names the benchmark (`<name>-ranking`) and the plot
    name: str

    def space(self) -> SearchSpace:
        """The encoding the `nas_ranking` format checks codes with."""

    def sample(self, n: int, seed: int) -> list[str]:
        """`n` distinct architectures, the same for the same seed."""

    def standalone_job(self, arch: str, seed: int, out: Path) -> Job:
        """A job training `arch` stand-alone with `seed`; returns its accuracy (percent)."""

    def supernet_job(self, method: str, seed: int, out: Path) -> Job:
        """A job training a supernet of `method` with `seed`; returns its run folder."""

    def describe_supernet(self, run: str) -> tuple[str, int]:
        """(method, seed) of a trained supernet run."""

    def score_job(self, supernet: Supernet, archs: Sequence[str], out: Path) -> Job:
        """A job scoring every arch with `supernet`; returns `{arch: score}`."""

    def provenance(self) -> dict[str, Any]:
        """What the client ran with (benchmark, recipes, budgets, dataset fingerprint); an
        optional `score_label` names the plot's x axis, `truth_split` the scored split."""


def _checked(results: Sequence[JobResult]) -> list[Any]:
    raise_failures(results)
    return [r.value for r in results]


def sample_archs(client: RankingClient, settings: RankingSettings) -> list[str]:
    """The client's N architectures, checked: canonical, distinct."""
    space = client.space()
    archs = [space.canonical(a) for a in client.sample(settings.archs, settings.sample_seed)]
    if len(archs) != settings.archs or len(set(archs)) != len(archs):
        raise RefbenchError(f"{client.name} sampled {len(archs)} architectures "
                            f"({len(set(archs))} distinct), expected {settings.archs} distinct",
                            key="archs")
    return archs


def run_ranking(client: RankingClient, settings: RankingSettings, out: Path,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark (module docstring); returns the summary written to ranking.json."""
    from refbench.evaluation.ranking import ArchitectureTruth

    settings.check()
    say = progress or (lambda _line: None)
    started = time.time()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RefbenchError("output exists and is not a folder", path=out)
    archs = sample_archs(client, settings)
    given = [Supernet(*client.describe_supernet(run), run) for run in settings.supernets]
    jobs = [client.standalone_job(a, s, out / "standalone") for a in archs
            for s in settings.truth_seeds]
    wanted = [] if given else [(m, s) for m in settings.methods for s in settings.supernet_seeds]
    jobs += [client.supernet_job(m, s, out / "supernets") for m, s in wanted]
    say(f"{client.name}-ranking: {len(archs)} architectures x {len(settings.truth_seeds)} "
        f"stand-alone seed(s), {len(wanted) or len(given)} supernet(s): {len(jobs)} jobs")
    pool = dict(workers=settings.workers, threads=settings.threads, address=settings.address)
    values = _checked(run_jobs(jobs, on_done=_reporter(say), **pool))  # type: ignore[arg-type]
    n_truth = len(archs) * len(settings.truth_seeds)
    accuracies = [float(v) for v in values[:n_truth]]
    supernets = given or [Supernet(m, s, str(run)) for (m, s), run in zip(wanted, values[n_truth:])]
    per_seed = {a: accuracies[i * len(settings.truth_seeds):(i + 1) * len(settings.truth_seeds)]
                for i, a in enumerate(archs)}
    truth = {a: statistics.fmean(v) for a, v in per_seed.items()}
    atomic_write_text(out / TRUTH_FILE, "".join(
        json.dumps({"arch": a, "accuracy": truth[a], "per_seed": dict(zip(settings.truth_seeds,
                                                                          per_seed[a]))}) + "\n"
        for a in archs))
    say(f"scoring {len(archs)} architectures with {len(supernets)} supernet(s)")
    score_jobs = [client.score_job(s, archs, out / s.method / f"seed{s.seed}") for s in supernets]
    scores = _checked(run_jobs(score_jobs, on_done=_reporter(say), **pool))  # type: ignore[arg-type]
    refs = {a: ArchitectureTruth(a, v) for a, v in truth.items()}
    results: dict[str, list[Any]] = {}
    undefined: dict[str, list[int]] = {s.method: [] for s in supernets}
    for supernet, scored in zip(supernets, scores):
        folder = out / supernet.method / f"seed{supernet.seed}"
        if len(set(scored.values())) <= 1:
            # a supernet that gives every architecture the same score ranks nothing: its
            # tau is undefined (not 0), so it is reported apart, not averaged in
            write_constant(client, supernet, scored, folder)
            undefined[supernet.method].append(supernet.seed)
            say(f"{supernet.method} seed {supernet.seed}: every architecture scored "
                f"{next(iter(scored.values()))!r}: ranking undefined")
            continue
        result = score_supernet(client, supernet, scored, refs, settings, folder)
        results.setdefault(supernet.method, []).append(result)
    methods = {m: _aggregate(rs, out / m) for m, rs in results.items()}
    points = {m: [(s, scores[i], supernets[i].seed) for i, s in enumerate(supernets)
                  if s.method == m and s.seed not in undefined[m]] for m in results}
    info = client.provenance()
    write_plot(out / PLOT_FILE, client.name, truth, points, methods,
               str(info.get("score_label", "supernet score")))
    summary = {
        "schema_version": 1, "benchmark": f"{client.name}-ranking",
        "version": BENCHMARK_VERSION, "architectures": archs,
        "sampling": {"n": len(archs), "how": f"{client.name} sample(n, seed): uniform over the "
                     f"space, distinct", "seed": settings.sample_seed},
        "ground_truth": {"seeds_per_architecture": len(settings.truth_seeds),
                         "seeds": settings.truth_seeds, "value": "stand-alone accuracy (%), "
                         "the mean over its seeds", "file": TRUTH_FILE},
        "settings": asdict(settings), "client": info,
        "supernets": [asdict(s) for s in supernets],
        "methods": {m: ({"result": f"{m}/result.json", **_figures(methods[m])} if m in methods
                        else {}) | {"undefined_seeds": seeds} for m, seeds in undefined.items()},
        "plot": PLOT_FILE, "wall_time_s": round(time.time() - started, 3),
    }
    atomic_write_json(out / SUMMARY_FILE, summary)  # last: marks a finished benchmark
    return summary


def summary_lines(summary: dict[str, Any], out: Path) -> list[str]:
    """What a ranking run prints: per method, tau-b and rho (mean +- sample std over supernet
    seeds) and the top pick's stand-alone accuracy; then where the files are."""
    lines = []
    for method, figures in summary["methods"].items():
        skipped = figures.get("undefined_seeds") or []
        if "kendall_tau_b" not in figures:
            lines.append(f"{method}: every supernet scored all architectures alike (seeds "
                         f"{', '.join(map(str, skipped))}): ranking undefined")
            continue
        if skipped:
            lines.append(f"{method}: supernet seed(s) {', '.join(map(str, skipped))} scored all "
                         f"architectures alike: ranking undefined, left out of the mean")
        tau, rho = figures["kendall_tau_b"], figures["spearman_rho"]
        pick = figures["top_pick/ground_truth"]
        lines.append(f"{method}: Kendall tau-b {tau['mean']:.3f} +- {tau['std']:.3f}, "
                     f"Spearman rho {rho['mean']:.3f} +- {rho['std']:.3f}, top pick "
                     f"{pick['mean']:.2f}% ({len(tau['per_seed'])} supernet seeds, "
                     f"N={summary['sampling']['n']})")
    lines.append(f"wrote {Path(out) / SUMMARY_FILE}, per-method result.json, {summary['plot']}")
    return lines


def sample_line(summary: dict[str, Any], setting: str) -> str:
    """The perf scripts' first line: the sample (N and its seed), stand-alone seeds per
    ground-truth value, and the script's own `setting`."""
    return (f"N={summary['sampling']['n']} (seed {summary['sampling']['seed']}), "
            f"{summary['ground_truth']['seeds_per_architecture']} stand-alone seed(s) per "
            f"value, {setting}")


def figure_lines(summary: dict[str, Any], out: Path, width: int = 12) -> list[str]:
    """The perf scripts' table: per method every figure (mean +- std over supernet seeds)
    and tau-b per seed, then the stand-alone accuracy range and the plot's path."""
    lines = []
    for method, figures in summary["methods"].items():
        cells = [f"{k} {v['mean']:.3f} +- {v['std']:.3f}" for k, v in figures.items()
                 if isinstance(v, dict)]
        lines.append(f"{method:{width}s} " + ("  ".join(cells) or "ranking undefined"))
        if "kendall_tau_b" in figures:
            lines.append(f"{'':{width}s} tau-b per seed: "
                         + ", ".join(f"{t:.3f}" for t in figures["kendall_tau_b"]["per_seed"]))
        if figures.get("undefined_seeds"):
            lines.append(f"{'':{width}s} undefined (constant scores) for supernet seeds "
                         + ", ".join(map(str, figures["undefined_seeds"])))
    truth = [json.loads(line)["accuracy"]
             for line in (Path(out) / TRUTH_FILE).read_text().splitlines()]
    lines.append(f"stand-alone accuracy: {min(truth):.2f}..{max(truth):.2f} %")
    lines.append(f"plot: {Path(out) / summary['plot']}")
    return lines


def _reporter(say: Callable[[str], None]) -> Callable[[JobResult, int, int], None]:
    def done(result: JobResult, finished: int, total: int) -> None:
        state = "ok" if result.ok else f"FAILED {result.error}"
        say(f"  [{finished}/{total}] {result.name} {state} ({result.seconds:.1f}s)")
    return done


def score_supernet(client: RankingClient, supernet: Supernet, scored: dict[str, float],
                   refs: dict[str, Any], settings: RankingSettings, folder: Path) -> Any:
    """One supernet's result: its scores written in the `nas_ranking` format, read back and
    scored by `ranking_consistency` against the stand-alone accuracies."""
    from refbench import __version__
    from refbench.benchmarks.formats.nas_ranking import read_scores, write_scores
    from refbench.benchmarks.scoring import label_set_sha256
    from refbench.evaluation.ranking import RankingConsistency
    from refbench.results import ModelInfo, Provenance, Result, git_commit, hardware_string

    started = time.time()
    space = client.space()
    path = folder / "scores.txt"
    write_scores(path, scored, space)
    submitted = read_scores(path, space)
    missing = sorted(set(refs) - set(submitted))
    if missing:
        raise RefbenchError(f"supernet {supernet.run} scored no value for {missing[0]}", path=path)
    metric = RankingConsistency(ks=settings.ks, sample_size=len(refs))
    archs = sorted(refs)
    metric.update([submitted[a] for a in archs], [refs[a] for a in archs])
    values = metric.compute()
    directions = {k: {True: "higher", False: "lower", None: "none"}[metric.higher_is_better(k, True)]
                  for k in values}
    info = client.provenance()
    result = Result(
        benchmark=f"{client.name}-ranking", benchmark_version=BENCHMARK_VERSION,
        split=str(info.get("truth_split", "validation")), metrics=values, directions=directions,
        primary="kendall_tau_b",
        model=ModelInfo(name=f"{client.name} supernet ({supernet.method})",
                        recipe=info.get("supernet_recipe")),
        counts={**metric.counts(), "ground_truth/seeds_per_architecture": len(settings.truth_seeds)},
        warnings=[f"ranking_consistency: {w}" for w in metric.warnings()],
        settings={"ks": list(settings.ks), "sample_size": len(refs),
                  "sample_seed": settings.sample_seed, "method": supernet.method,
                  "supernet_run": supernet.run},
        provenance=Provenance(
            refbench_version=__version__, git_commit=git_commit(),
            dataset_fingerprint=info.get("dataset_fingerprint"),
            label_set_sha256=label_set_sha256({a: r.value for a, r in refs.items()}),
            predictions_sha256=sha256_path(path), seed=supernet.seed,
            hardware=hardware_string(), wall_time_s=round(time.time() - started, 3)))
    result.write(folder / "result.json")
    return result


def write_constant(client: RankingClient, supernet: Supernet, scored: dict[str, float],
                   folder: Path) -> None:
    """A supernet whose scores are all equal: its scores file and `undefined.json` (why no
    result.json: Kendall tau and Spearman rho are undefined for a constant ranking)."""
    from refbench.benchmarks.formats.nas_ranking import write_scores

    write_scores(folder / "scores.txt", scored, client.space())
    value = next(iter(scored.values()))
    atomic_write_json(folder / "undefined.json", {
        "method": supernet.method, "seed": supernet.seed, "supernet_run": supernet.run,
        "reason": f"every architecture scored {value!r}: Kendall tau and Spearman rho are "
                  f"undefined for a constant ranking"})


def _aggregate(results: list[Any], folder: Path) -> Any:
    from refbench.protocol import aggregate_results

    ordered = sorted(results, key=lambda r: r.provenance.seed)
    agg = aggregate_results(ordered, [f"seed{r.provenance.seed}" for r in ordered])
    agg.write(folder / "result.json")
    return agg


def _figures(result: Any) -> dict[str, Any]:
    keys = ("kendall_tau_b", "spearman_rho", "top_pick/ground_truth")
    keys += tuple(k for k in result.metrics if k.startswith("P@"))
    return {k: {"mean": result.metrics[k], "std": result.aggregate["std"][k],
                "per_seed": result.aggregate["per_seed"][k]} for k in keys}


# -- the plot (SVG written by hand: no plotting library is a dependency) ------------------------
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
_PANEL_W, _PANEL_H, _MARGIN = 360, 300, 56


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _scale(values: Sequence[float], lo_px: float, hi_px: float) -> Callable[[float], float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    return lambda v: lo_px + (v - lo) / (hi - lo) * (hi_px - lo_px)


def write_plot(path: Path, name: str, truth: dict[str, float],
               points: dict[str, list[tuple[Supernet, dict[str, float], int]]],
               methods: dict[str, Any], score_label: str = "supernet score") -> None:
    """Supernet score (x, named by `score_label`) vs stand-alone accuracy (y): one panel per
    method, one colour per supernet seed, Kendall tau-b (mean +- std over seeds) in each
    title."""
    width = _PANEL_W * max(1, len(points))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_PANEL_H}" '
           f'viewBox="0 0 {width} {_PANEL_H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{_PANEL_H}" fill="white"/>']
    ys = _scale(list(truth.values()), _PANEL_H - _MARGIN, 28)
    for panel, (method, runs) in enumerate(points.items()):
        x0 = panel * _PANEL_W
        every = [v for _s, scored, _seed in runs for v in scored.values()]
        xs = _scale(every, x0 + _MARGIN, x0 + _PANEL_W - 12)
        agg = methods[method]
        tau, std = agg.metrics["kendall_tau_b"], agg.aggregate["std"]["kendall_tau_b"]
        title = f"{name} {method}: tau-b {tau:.3f} +- {std:.3f} ({agg.aggregate['n']} seeds)"
        left, right, top, bottom = x0 + _MARGIN, x0 + _PANEL_W - 12, 28, _PANEL_H - _MARGIN
        out += [f'<text x="{x0 + _PANEL_W / 2:.1f}" y="16" text-anchor="middle">{_esc(title)}</text>',
                f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
                f'fill="none" stroke="#444"/>',
                f'<text x="{(left + right) / 2:.1f}" y="{_PANEL_H - 14}" text-anchor="middle">'
                f'{_esc(score_label)}</text>',
                f'<text x="{x0 + 14}" y="{(top + bottom) / 2:.1f}" text-anchor="middle" '
                f'transform="rotate(-90 {x0 + 14} {(top + bottom) / 2:.1f})">'
                f'stand-alone accuracy (%)</text>']
        for lo_hi, axis in ((every, "x"), (list(truth.values()), "y")):
            for value in (min(lo_hi), max(lo_hi)):
                if axis == "x":
                    out.append(f'<text x="{xs(value):.1f}" y="{bottom + 14}" '
                               f'text-anchor="middle">{value:.1f}</text>')
                else:
                    out.append(f'<text x="{left - 4}" y="{ys(value) + 4:.1f}" '
                               f'text-anchor="end">{value:.1f}</text>')
        for number, (_supernet, scored, seed) in enumerate(runs):
            colour = _COLOURS[number % len(_COLOURS)]
            out += [f'<circle cx="{xs(scored[a]):.1f}" cy="{ys(truth[a]):.1f}" r="3.5" '
                    f'fill="{colour}" fill-opacity="0.75"><title>{_esc(a)}: score '
                    f'{scored[a]:.2f}, accuracy {truth[a]:.2f} (seed {seed})</title></circle>'
                    for a in truth]
            out.append(f'<text x="{right - 4}" y="{top + 14 + 13 * number}" text-anchor="end" '
                       f'fill="{colour}">seed {seed}</text>')
    out.append("</svg>")
    atomic_write_text(path, "\n".join(out) + "\n")
