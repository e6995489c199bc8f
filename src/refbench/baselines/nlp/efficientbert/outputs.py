"""What a finished EfficientBERT search writes: `search.json` (the summary), `ranking.jsonl`
(every scored candidate of every stage), `supernet.safetensors` (the shared weights after
the last stage: the official pipeline initialises the searched student from the stage-3
supernet) and the recipe `efficientbert_searched_glue.yaml`:
`base:` (the search recipe's own base, or the search recipe) plus only what the search's
student and trainer changed, and the searched `model.ffn_expressions`, so
`refbench train efficientbert --recipe` trains the chosen architecture and the file stays
readable next to the recipe it came from. Everything is written atomically, the summary
last (its presence marks a finished search)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from refbench.config import RunConfig, from_dict, load_recipe, recipe_path, to_dict
from refbench.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from refbench.baselines.nlp.efficientbert.sampler import Candidate
    from refbench.baselines.nlp.efficientbert.search import StageResult, _Setup

RECIPE_FILE = "efficientbert_searched_glue.yaml"
#: the search's shared weights after its last stage (module docstring)
SUPERNET_FILE = "supernet.safetensors"


def summarize(setup: "_Setup", stages: "list[StageResult]", chosen: "Candidate",
              wall: float) -> dict[str, Any]:
    """`search.json`: settings, budget, each stage's best and the chosen architecture."""
    from refbench import __version__

    def best(c: Candidate) -> dict[str, Any]:
        return {"ffn_expressions": c.arch.strings, "linear_types": [t.name for t in c.arch.types],
                "params": c.params, "hash": c.hash, setup.spec.primary: c.metric,
                "heldout_loss": c.heldout_loss, "heldout_pred_loss": c.pred_loss}

    return {
        "schema_version": 1, "baseline": "efficientbert", "benchmark": setup.benchmark,
        "recipe": setup.recipe, "teacher_run": str(setup.teacher_run), "seed": setup.seed,
        "primary": setup.spec.primary, "settings": asdict(setup.cfg),
        "student": {k: v for k, v in asdict(setup.student).items() if k != "ffn_expressions"},
        "budget": {"min_params": setup.budget.min_params,
                   "max_params": setup.budget.max_params},
        "stages": [{"index": s.index, "name": s.name, "warmup_loss": s.warmup_loss,
                    "evaluated": len(s.candidates), "exhausted": s.exhausted,
                    "best": best(s.best)} for s in stages],
        "chosen": {"stage": chosen.stage, **best(chosen)},
        "recipe_file": RECIPE_FILE, "supernet_file": SUPERNET_FILE,
        "refbench_version": __version__,
        "wall_time_s": round(wall, 3),
    }


def write_outputs(out: Path, setup: "_Setup", stages: "list[StageResult]",
                  chosen: "Candidate", summary: dict[str, Any],
                  supernet: "Mapping[str, torch.Tensor]") -> None:
    """The four files (module docstring), atomically, `search.json` last."""
    from refbench.baselines.nlp.efficientbert.supernet import write_weights

    lines = [json.dumps(c.to_json(setup.spec.primary, setup.cfg.proxy))
             for s in stages for c in s.candidates]
    run_data = to_dict(setup.run)
    run_data["model"] = dict(run_data["model"], teacher_hidden_size=setup.teacher.hidden_size)
    text = searched_recipe(setup.recipe, run_data, chosen.arch.strings, summary)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "ranking.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / RECIPE_FILE, text)
    write_weights(out / SUPERNET_FILE, supernet)
    atomic_write_json(out / "search.json", summary)  # last: its presence marks a finished search


def _base_of(recipe: str) -> str:
    """The recipe a searched recipe extends: the search recipe's own `base:` (recipes
    extend one level only), else the search recipe itself; shipped recipes by name."""
    import yaml

    path = recipe_path(recipe)
    base = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("base")
    if base is None:
        target = path
    else:
        target = Path(base) if Path(base).is_absolute() else path.parent / base
        target = target if target.suffix else target.with_suffix(".yaml")
        if not target.exists():  # a shipped recipe named from elsewhere (as load_recipe reads it)
            target = recipe_path(base)
    from refbench.registry import RECIPES

    shipped = RECIPES.index.get(target.stem)
    if shipped is not None and Path(shipped).resolve() == target.resolve():
        return target.stem
    return str(target.resolve())


def _diff(mine: Any, base: Any) -> Any:
    """The parts of `mine` that differ from `base` (mappings recursively)."""
    if isinstance(mine, dict) and isinstance(base, dict):
        out = {k: _diff(v, base.get(k)) for k, v in mine.items() if v != base.get(k)}
        return {k: v for k, v in out.items() if v != {}}
    return mine


def searched_recipe(recipe: str, run_data: dict[str, Any], expressions: Sequence[str],
                    summary: dict[str, Any]) -> str:
    """A recipe for `refbench train efficientbert`: `base:` plus what the search's
    student and trainer changed, and the searched `model.ffn_expressions`."""
    import yaml

    base = _base_of(recipe)
    base_data = load_recipe(base)
    base_data.pop("recipe", None)
    base_data.update(baseline="efficientbert", benchmark=run_data["benchmark"])
    base_run = to_dict(from_dict(RunConfig, base_data))
    body: dict[str, Any] = {"base": base}
    for section in ("model", "trainer", "data"):
        changed = _diff(run_data.get(section) or {}, base_run.get(section) or {})
        if section == "data":
            changed.pop("cache_dir", None)
        if section == "model":
            changed["ffn_expressions"] = list(expressions)
        if changed:
            body[section] = changed
    chosen = summary["chosen"]
    head = [f"# Searched by `refbench search efficientbert` on {summary['benchmark']} "
            f"(seed {summary['seed']}, recipe {summary['recipe']},",
            f"# stages {', '.join(s['name'] for s in summary['stages'])}): "
            f"{chosen['params']} parameters, held-out {summary['primary']} "
            f"{chosen[summary['primary']]:.4f}.",
            f"# Teacher: {summary['teacher_run']} (distil from it with "
            f"--set model.distill.teacher_run=...).",
            f"# Start from the search's shared weights, as the official pipeline does: "
            f"--set model.init_supernet=<this folder>/{SUPERNET_FILE} (with the teacher).",
            "# See search.json and ranking.jsonl next to this file."]
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)
