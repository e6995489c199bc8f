"""The language families' jobs in `refbench demo`: the tiny BERT on each GLUE task (SST-2 by
default) and on SQuAD v1.1, each against a trivial rival (majority class / mean score for
GLUE, the context's first words for SQuAD)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from refbench.datasets.base import load_prepared
from refbench.datasets.glue.builder import get_task
from refbench.demo import DemoJob
from refbench.registry import DEMOS

#: synthetic rows per GLUE task / SQuAD config: enough for the tiny BERT to learn
TEXT_ROWS = 800


def majority_predictions(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The majority-class (mean, for regression) predictor fitted on the training split."""
    train = load_prepared(spec.dataset.name, split=spec.train_split, config=spec.dataset.config,
                          cache_dir=cache_dir)
    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    labels = list(train["label"])
    if spec.task.type == "regression":
        value: Any = sum(labels) / len(labels)
    else:
        value = Counter(labels).most_common(1)[0][0]
    return {idx: value for idx in dev["idx"]}


def first_words_predictions(spec: Any, cache_dir: str, words: int = 3) -> dict[Any, Any]:
    """SQuAD's trivial rival: the first words of the context as every answer."""
    dev = load_prepared(spec.dataset.name, split=spec.split, config=spec.dataset.config,
                        cache_dir=cache_dir)
    return {qid: " ".join(context.split()[:words])
            for qid, context in zip(dev["id"], dev["context"])}


def glue_job(config: str, benchmark: str, dev_split: str = "validation") -> DemoJob:
    """The tiny BERT on one GLUE task, scored against the task's official dev TSV."""
    task = get_task(config)
    dev_file = task.splits[dev_split]
    return DemoJob(benchmark=benchmark, baseline="bert", recipe="bert_tiny_glue",
                   size=TEXT_ROWS, references=lambda root: Path(root) / task.folder / dev_file,
                   trivial=majority_predictions, trivial_name="majority")


@DEMOS.register("sst2", default=True)
def sst2() -> DemoJob:
    return glue_job("sst2", "glue-sst2")


@DEMOS.register("cola")
def cola() -> DemoJob:
    return glue_job("cola", "glue-cola")


@DEMOS.register("mrpc")
def mrpc() -> DemoJob:
    return glue_job("mrpc", "glue-mrpc")


@DEMOS.register("stsb")
def stsb() -> DemoJob:
    return glue_job("stsb", "glue-stsb")


@DEMOS.register("qqp")
def qqp() -> DemoJob:
    return glue_job("qqp", "glue-qqp")


@DEMOS.register("mnli")
def mnli() -> DemoJob:
    return glue_job("mnli", "glue-mnli-m", "validation_matched")


@DEMOS.register("qnli")
def qnli() -> DemoJob:
    return glue_job("qnli", "glue-qnli")


@DEMOS.register("rte")
def rte() -> DemoJob:
    return glue_job("rte", "glue-rte")


@DEMOS.register("wnli")
def wnli() -> DemoJob:
    return glue_job("wnli", "glue-wnli")


@DEMOS.register("squad", default=True)
def squad() -> DemoJob:
    """The tiny BERT span head on SQuAD v1.1 for 200 steps, scored against dev-v1.1.json."""
    return DemoJob(benchmark="squad-v1.1", baseline="bert", recipe="bert_tiny_squad",
                   size=TEXT_ROWS, references=lambda root: Path(root) / "dev-v1.1.json",
                   trivial=first_words_predictions, trivial_name="first words",
                   overrides=("trainer.max_steps=200", "trainer.eval_every=100"))
