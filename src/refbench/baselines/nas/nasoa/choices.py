"""Choice files: what a schedule generator chose for one task, written by the
nasoa-finetune benchmark and read by the `nasoa` baseline (`model.schedule`), so a chosen
schedule becomes an ordinary `refbench train` run.

One file per generator and task, `<out>/<generator>/choices/<task-slug>.json`:

    {"format": "refbench-nasoa-choice", "version": 1,
     "benchmark": "nasoa-finetune-budget@1", "generator": "online", "task": "digits",
     "zoo": "/abs/path/to/zoo", "zoo_index_sha256": "<sha256 of zoo.json>",
     "choices": [{"seed": 0, "budget": "100steps", "model": "m1", "code": "116-_32_-22-1",
                  "lr": 0.035, "batch_size": 32, "momentum": 0.9, "weight_decay": 0.0001,
                  "warmup": 0.1, "steps": 100, "accuracy": 93.3}, ...]}

`steps` is what the budget planned for the chosen member and batch size (under a step
budget the budget itself; under a seconds budget the steps the zoo's measured cost buys,
which also sets the length of the cosine decay). The zoo's index hash ties a choice to
the zoo it was made from: a zoo searched again may give `m1` another network, so a
changed zoo is refused rather than silently fine-tuning something else. Beside each
choice file the benchmark writes one recipe per budget (`<task-slug>@<budget>.yaml`,
first seed) that sets the trainer's learning rate, batch size and steps as well, so
`refbench train nasoa --benchmark B --recipe THAT.yaml` applies a choice with no other
setting.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from refbench.errors import RefbenchError

CHOICE_FORMAT = "refbench-nasoa-choice"
CHOICE_VERSION = 1
CHOICES_DIR = "choices"
#: the recipe a written choice recipe builds on (the digits fine-tune through the runner)
BASE_RECIPE = "nasoa_tiny_digits"


@dataclass(frozen=True)
class ChoiceEntry:
    """One choice: (seed, budget) -> zoo member and schedule."""

    seed: int
    budget: str
    model: str
    code: str
    lr: float
    batch_size: int
    momentum: float
    weight_decay: float
    warmup: float
    steps: int
    accuracy: float


@dataclass(frozen=True)
class AppliedChoice:
    """The entry a run applies, with where it came from (for the run's record)."""

    path: Path
    sha256: str
    task: str
    generator: str
    zoo: Path
    zoo_index_sha256: str
    entry: ChoiceEntry

    def record(self) -> dict[str, Any]:
        return {"file": str(self.path), "sha256": self.sha256, "task": self.task,
                "generator": self.generator, "zoo_index_sha256": self.zoo_index_sha256,
                **asdict(self.entry)}


def task_slug(task: str) -> str:
    """A file-name-safe form of a task spec (`synthetic:easy:1` -> `synthetic_easy_1`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task).strip("._") or "task"


# -- writing (the benchmark) ------------------------------------------------------------------
def choice_documents(generator: str, zoo: Any, runs: Sequence[dict[str, Any]],
                     benchmark: str) -> dict[str, dict[str, Any]]:
    """`{slug: document}` for one generator's runs (rows of runs.jsonl), one per task in
    the order the tasks ran; slugs that collide get a numeric suffix."""
    from refbench.baselines.nas.nasoa.zoo import INDEX
    from refbench.io import sha256_file

    index_sha = sha256_file(Path(zoo.folder) / INDEX)
    docs: dict[str, dict[str, Any]] = {}
    slugs: dict[str, str] = {}
    for run in runs:
        task = run["task"]
        if task not in slugs:
            slug, k = task_slug(task), 1
            while slug in docs:
                k += 1
                slug = f"{task_slug(task)}-{k}"
            slugs[task] = slug
            docs[slug] = {"format": CHOICE_FORMAT, "version": CHOICE_VERSION,
                          "benchmark": benchmark, "generator": generator, "task": task,
                          "zoo": str(Path(zoo.folder).resolve()), "zoo_index_sha256": index_sha,
                          "choices": []}
        s = run["schedule"]
        entry = ChoiceEntry(int(run["seed"]), str(run["budget"]), s["model"],
                            zoo.member(s["model"]).code, float(s["lr"]), int(s["batch_size"]),
                            float(s["momentum"]), float(s["weight_decay"]), float(s["warmup"]),
                            int(run["planned_steps"]), round(float(run["accuracy"]), 4))
        docs[slugs[task]]["choices"].append(asdict(entry))
    return docs


def choice_recipe(path: Path, doc: dict[str, Any], budget: str, sha256: str) -> str:
    """A recipe applying the first seed's choice under `budget` (module doc); it pins the
    choice file's sha256, so the run's config.yaml and config hash record its content."""
    entry = next(c for c in doc["choices"] if c["budget"] == budget)
    return (f"# {doc['generator']}'s choice for task {doc['task']} under {budget} (seed "
            f"{entry['seed']}), written by\n# `refbench search nasoa-finetune`; train it with\n"
            f"#   refbench train nasoa --benchmark BENCHMARK --recipe {path.parent}/"
            f"{path.stem}@{budget}.yaml\n"
            f"base: {BASE_RECIPE}\nbaseline: nasoa\ntasks: [image-classification]\n"
            f"model:\n  schedule: {json.dumps(str(path.resolve()))}\n"
            f"  schedule_budget: {json.dumps(budget)}\n  schedule_seed: {entry['seed']}\n"
            f"  schedule_sha256: {json.dumps(sha256)}\n"
            f"trainer:\n  seed: {entry['seed']}\n  epochs: null\n"
            f"  max_steps: {entry['steps']}\n  save_every: {entry['steps']}\n"
            f"  batch_size: {entry['batch_size']}\n  lr: {yaml_float(entry['lr'])}\n"
            f"  weight_decay: {yaml_float(entry['weight_decay'])}\n"
            f"  warmup_ratio: {yaml_float(entry['warmup'])}\n")


def yaml_float(value: float) -> str:
    """A float YAML 1.1 reads back as that float (`1e-05` would be a string there)."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa if '.' in mantissa else mantissa + '.0'}e" \
               f"{exponent if exponent[0] in '+-' else '+' + exponent}"
    return text


# -- reading (the baseline) -------------------------------------------------------------------
def _bad(path: Path, message: str, key: str | None = None,
         line: int | None = None) -> RefbenchError:
    return RefbenchError(message, path=path, key=key, line=line)


def _entry(path: Path, k: int, raw: Any) -> ChoiceEntry:
    key = f"choices[{k}]"
    if not isinstance(raw, dict):
        raise _bad(path, "a choice is a JSON object", key=key)
    types = {"seed": int, "budget": str, "model": str, "code": str, "lr": float,
             "batch_size": int, "momentum": float, "weight_decay": float, "warmup": float,
             "steps": int, "accuracy": float}
    values: dict[str, Any] = {}
    for name, tp in types.items():
        if name not in raw:
            raise _bad(path, f"the choice has no {name!r}", key=f"{key}.{name}")
        value = raw[name]
        ok = isinstance(value, tp) if tp is not float else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise _bad(path, f"expected {tp.__name__}, got {value!r}", key=f"{key}.{name}")
        if tp is float and not math.isfinite(value):
            raise _bad(path, f"not a finite number: {value!r}", key=f"{key}.{name}")
        values[name] = float(value) if tp is float else value
    for name, low, high in (("lr", 0.0, math.inf), ("momentum", -1e-12, 1.0),
                            ("weight_decay", -1e-12, math.inf), ("warmup", -1e-12, 1.0)):
        if not low < values[name] < high and not (name == "warmup" and values[name] == 1.0):
            raise _bad(path, f"out of range: {values[name]!r}", key=f"{key}.{name}")
    if values["batch_size"] < 1 or values["steps"] < 1:
        bad = "batch_size" if values["batch_size"] < 1 else "steps"
        raise _bad(path, f"must be >= 1, got {values[bad]}", key=f"{key}.{bad}")
    return ChoiceEntry(**values)


def read_choice(path: str | Path, budget: str | None = None, seed: int | None = None,
                sha256: str | None = None) -> AppliedChoice:
    """Read and check a choice file and pick its entry for `budget` and `seed` (either may
    be omitted when the file holds one value of it; an omitted seed means the first one).
    Every fault is one line naming the file and the field."""
    from refbench.io import sha256_file

    path = Path(path)
    if not path.exists():
        raise _bad(path, "choice file not found", key="model.schedule")
    if not path.is_file():
        raise _bad(path, "a choice file is a JSON file, not a folder", key="model.schedule")
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        raise _bad(path, f"the choice file changed: sha256 {digest[:12]}... differs from the "
                         f"pinned {sha256[:12]}...", key="model.schedule_sha256")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _bad(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except UnicodeDecodeError:
        raise _bad(path, "not UTF-8 text (a choice file is JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != CHOICE_FORMAT:
        raise _bad(path, f"not a {CHOICE_FORMAT} file", key="format")
    if doc.get("version") != CHOICE_VERSION:
        raise _bad(path, f"unsupported choice file version {doc.get('version')!r}", key="version")
    for name in ("task", "generator", "zoo", "zoo_index_sha256"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise _bad(path, f"missing or empty {name!r}", key=name)
    raw = doc.get("choices")
    if not isinstance(raw, list) or not raw:
        raise _bad(path, "the file holds no choice", key="choices")
    entries = [_entry(path, k, item) for k, item in enumerate(raw)]
    seen: set[tuple[int, str]] = set()
    for k, e in enumerate(entries):
        if (e.seed, e.budget) in seen:
            raise _bad(path, f"seed {e.seed} under {e.budget} is listed twice",
                       key=f"choices[{k}]")
        seen.add((e.seed, e.budget))
    budgets = list(dict.fromkeys(e.budget for e in entries))
    if budget is None:
        if len(budgets) > 1:
            raise _bad(path, f"the file holds choices for budgets {', '.join(budgets)}: pick one "
                             f"with model.schedule_budget", key="model.schedule_budget")
        budget = budgets[0]
    mine = [e for e in entries if e.budget == budget]
    if not mine:
        raise _bad(path, f"no choice under budget {budget!r} (budgets: {', '.join(budgets)})",
                   key="model.schedule_budget")
    if seed is not None:
        mine = [e for e in mine if e.seed == seed]
        if not mine:
            raise _bad(path, f"no choice of seed {seed} under {budget}",
                       key="model.schedule_seed")
    zoo = Path(doc["zoo"])
    return AppliedChoice(path, digest, doc["task"], doc["generator"],
                         zoo if zoo.is_absolute() else path.parent / zoo,
                         doc["zoo_index_sha256"], mine[0])


def check_zoo(choice: AppliedChoice, zoo: Any) -> None:
    """The zoo must be the one the choice was made from and hold the chosen member."""
    from refbench.baselines.nas.nasoa.zoo import INDEX
    from refbench.io import sha256_file

    if sha256_file(Path(zoo.folder) / INDEX) != choice.zoo_index_sha256:
        raise _bad(choice.path, f"zoo {zoo.folder} is not the zoo this choice was made from "
                                f"(its zoo.json sha256 differs)", key="zoo_index_sha256")
    names = [m.name for m in zoo.members]
    if choice.entry.model not in names:
        raise _bad(choice.path, f"the choice names zoo member {choice.entry.model!r}, absent from "
                                f"zoo {zoo.folder} (members: {', '.join(names)})", key="model")
    code = zoo.member(choice.entry.model).code
    if code != choice.entry.code:
        raise _bad(choice.path, f"zoo member {choice.entry.model} is {code}, not the chosen "
                                f"{choice.entry.code}", key="code")
