"""The report-generation job in `refbench demo`: the tiny Medical-VLBERT trained on a
synthesized IU X-ray (140 training studies whose reports and MeSH terms follow from what
the radiographs show) for half its recipe's steps, scored on the validation split it is
selected on, against the most-frequent-report floor.

The synthetic root has no report file in the submission format, so the references are
written there from its own `annotation.json` and Open-i XML (the validation studies'
FINDINGS and MeSH terms, as the r2gen config reads them): the file the demo scores the
dev predictions with and the demo leaderboard holds as hidden labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refbench.baselines.report.floors import most_frequent
from refbench.datasets.base import load_prepared
from refbench.demo import DemoJob
from refbench.evaluation.captions.metric import ReportPrediction
from refbench.registry import DEMOS

#: scored studies of the synthetic release (70% train, 10% validation, 20% test)
IU_XRAY_STUDIES = 200
#: Medical-VLBERT's steps in the demo (the recipe's 600 take about 1.5 min on one core)
IU_XRAY_STEPS = 300
REFERENCES = "refbench-validation-reports.json"


def validation_references(root: Path) -> Path:
    """The synthetic root's validation reports and terms as a `reports_json` file."""
    from refbench.benchmarks.formats.reports import write_reports
    from refbench.datasets.iu_xray.builder import read_config

    studies = read_config(Path(root), "r2gen").studies
    refs = {s.study_id: ReportPrediction(s.report, tuple(s.terms))
            for s in studies if s.split == "validation"}
    path = Path(root) / REFERENCES
    write_reports(path, refs)
    return path


def most_frequent_reports(spec: Any, cache_dir: str) -> dict[Any, Any]:
    """The floor: every scored study gets the training split's most frequent report and
    its most frequent term set (`floors.most_frequent`)."""
    def rows(split: str) -> Any:
        return load_prepared(spec.dataset.name, split=split, config=spec.dataset.config,
                             cache_dir=cache_dir)

    train = rows(spec.train_split)
    report, terms, _ = most_frequent(list(train["report"]), [list(t) for t in train["terms"]])
    value = ReportPrediction(report, tuple(terms))
    return {sid: value for sid in rows(spec.split)["study_id"]}


@DEMOS.register("iu_xray", default=True)
def iu_xray() -> DemoJob:
    """Tiny Medical-VLBERT on synthetic IU X-ray, selected and scored on validation."""
    return DemoJob(benchmark="iu-xray-r2gen-val", baseline="medical-vlbert",
                   recipe="medical-vlbert_tiny_iu-xray", size=IU_XRAY_STUDIES,
                   references=validation_references, trivial=most_frequent_reports,
                   trivial_name="most frequent report",
                   overrides=(f"trainer.max_steps={IU_XRAY_STEPS}", "trainer.eval_every=0",
                              f"trainer.save_every={IU_XRAY_STEPS}"))
