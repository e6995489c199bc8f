"""The registered report-generation metric: coco-caption scores plus term metrics.

`report_generation` (version 1) scores generated reports against one reference report per
study, the way published report-generation tables do (pycocoevalcap's scorers on
tokenized text, `{id: [reference]}` against `{id: [report]}`):

- `BLEU-1` .. `BLEU-4`, `ROUGE-L`, `CIDEr-D`: refbench's own implementations, equal to
  pycocoevalcap 1.2 on every value (see `bleu`, `rouge`, `cider`); no Java needed;
- `METEOR`: the official METEOR 1.5 jar, only where `java` and the jar exist (`meteor`);
  otherwise the key is absent and a warning says why;
- `terms/*`: term precision / recall / F1 (micro, macro) when the predictions carry terms
  or term scores and the references carry terms, and `terms/AUC_macro` from term scores
  (`terms`); absent otherwise, with a warning.

Values are fractions (BLEU, ROUGE-L, METEOR, terms in [0, 1]; CIDEr-D in [0, 10]), as
pycocoevalcap returns them; papers print BLEU etc. x 100 or as is -- check a table's
convention before comparing.

Arguments (a spec's `metric.args`): `tokenizer` (`tokenize.TOKENIZERS`, default
`r2gen_iu_xray`), `r2gen_quirks` (default false: full references), `max_seq_length` and
`threshold` (R2Gen's 60 and 3; used only with the quirks, whose training vocabulary the
references carry: see `refbench.benchmarks.formats.reports`), `meteor` (default true: run
the jar where it exists). Run-time options: `term_threshold` (a term is predicted when its
score is at least this; 0.5) and `meteor`.

The IDF of CIDEr-D comes from the evaluated references, so CIDEr-D of a study depends on
the other studies scored with it: the whole set is scored at `compute()`, never per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.evaluation.captions import meteor as meteor_jar
from refbench.evaluation.captions.bleu import bleu_counts, bleu_from_counts
from refbench.evaluation.captions.cider import cider_from_corpus
from refbench.evaluation.captions.ngrams import build_corpus
from refbench.evaluation.captions.rouge import rouge_l
from refbench.evaluation.captions.terms import AUC_KEY, TERM_KEYS, term_metrics
from refbench.evaluation.captions.tokenize import (
    R2GEN_MAX_SEQ_LENGTH,
    R2GEN_THRESHOLD,
    UNK,
    R2GenQuirks,
    tokenizer,
)
from refbench.options import Option
from refbench.registry import METRICS

CAPTION_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "METEOR")
#: fewer studies than this: CIDEr-D's IDF rests on few references and one study moves
#: every key by more than 1 %
FEW_STUDIES = 100


@dataclass(frozen=True)
class ReportReference:
    """One study's reference: its report, its terms (None when the source has none) and,
    under R2Gen's quirks, the training vocabulary the report is decoded with."""

    report: str
    terms: tuple[str, ...] | None = None
    quirks: R2GenQuirks | None = None


@dataclass(frozen=True)
class ReportPrediction:
    """One study's prediction: the generated report, optionally predicted terms and/or
    term scores (`((term, score), ...)`)."""

    report: str
    terms: tuple[str, ...] | None = None
    term_scores: tuple[tuple[str, float], ...] | None = None

    def predicted_terms(self, threshold: float) -> tuple[str, ...] | None:
        """The explicit terms, else the scored terms at or above `threshold`."""
        if self.terms is not None:
            return self.terms
        if self.term_scores is not None:
            return tuple(t for t, s in self.term_scores if s >= threshold)
        return None


_ARGS = {"tokenizer", "r2gen_quirks", "max_seq_length", "threshold", "meteor",
         "term_threshold"}


@METRICS.register("report_generation", higher_is_better=True, version="1")
class ReportGeneration(Metric):
    """coco-caption BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR where Java runs) on tokenized
    reports, plus term metrics (module docstring)."""

    keys: ClassVar[dict[str, str]] = {
        **{f"BLEU-{n}": f"pycocoevalcap corpus BLEU-{n} (closest reference length)"
           for n in range(1, 5)},
        "ROUGE-L": "pycocoevalcap ROUGE-L (LCS F-measure, beta 1.2), mean over studies",
        "CIDEr-D": "pycocoevalcap CIDEr-D (n 4, sigma 6, IDF of the scored references, x10)",
        "METEOR": "official METEOR 1.5 jar (only where Java runs)",
        "terms/precision_micro": "term precision over all (study, term) cells",
        "terms/recall_micro": "term recall over all (study, term) cells",
        "terms/F1_micro": "term F1 over all (study, term) cells",
        "terms/precision_macro": "mean per-term precision over the references' terms",
        "terms/recall_macro": "mean per-term recall over the references' terms",
        "terms/F1_macro": "mean per-term F1 over the references' terms",
        AUC_KEY: "mean per-term ROC AUC from term scores (terms with both classes)",
    }
    directions: ClassVar[dict[str, bool | None]] = {key: True for key in keys}
    options: ClassVar[tuple[Option, ...]] = (
        Option("term_threshold", "float", "A term counts as predicted when its score is at "
               "least this (predictions that give term scores without terms).", 0.5),
        Option("meteor", "bool", "Run METEOR through the official jar where Java exists "
               "(about 10 s to start).", True),
    )

    def __init__(self, **args: Any) -> None:
        unknown = sorted(set(args) - _ARGS)
        if unknown:
            raise RefbenchError(f"metric report_generation has no argument(s) {unknown} "
                                f"(known: {', '.join(sorted(_ARGS))})")
        super().__init__(**args)
        self.tokenizer_name = str(args.get("tokenizer", "r2gen_iu_xray"))
        self._split = tokenizer(self.tokenizer_name)
        self.r2gen_quirks = bool(args.get("r2gen_quirks", False))
        self.max_seq_length = int(args.get("max_seq_length", R2GEN_MAX_SEQ_LENGTH))
        self.threshold = int(args.get("threshold", R2GEN_THRESHOLD))
        self.run_meteor = bool(args.get("meteor", True))
        self.term_threshold = float(args.get("term_threshold", 0.5))
        self._hyps: list[str] = []
        self._refs: list[str] = []
        self._pred_terms: list[tuple[str, ...] | None] = []
        self._ref_terms: list[tuple[str, ...] | None] = []
        self._scores: list[dict[str, float] | None] = []
        self._quirks: R2GenQuirks | None = None
        self._counts: dict[str, int] = {}
        self._warnings: list[str] = []

    def _count(self, key: str, value: int = 1) -> None:
        self._counts[key] = self._counts.get(key, 0) + value

    def _quirks_of(self, ref: ReportReference, position: int) -> R2GenQuirks | None:
        if not self.r2gen_quirks:
            return None
        quirks = ref.quirks
        if quirks is None:
            raise RefbenchError(f"reference {position}: the R2Gen quirks need the training "
                                f"vocabulary, and this reference carries none")
        if (quirks.max_seq_length, quirks.threshold) != (self.max_seq_length, self.threshold):
            raise RefbenchError(f"reference {position}: its vocabulary was built with "
                                f"max_seq_length={quirks.max_seq_length}, threshold="
                                f"{quirks.threshold}; the metric wants {self.max_seq_length}, "
                                f"{self.threshold}")
        if self._quirks is None:
            self._quirks = quirks
        elif quirks != self._quirks:
            raise RefbenchError(f"reference {position}: decoded with another training "
                                f"vocabulary ({quirks!r}, not {self._quirks!r})")
        return quirks

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        for position, (pred, ref) in enumerate(zip(predictions, references)):
            if isinstance(ref, str):
                ref = ReportReference(ref)
            if isinstance(pred, str):
                pred = ReportPrediction(pred)
            if not isinstance(ref, ReportReference):
                raise RefbenchError(f"reference {position}: expected a report, got "
                                    f"{type(ref).__name__}")
            if not isinstance(pred, ReportPrediction):
                raise RefbenchError(f"prediction {position}: expected a report, got "
                                    f"{type(pred).__name__} (a missing report cannot be "
                                    f"scored: pycocoevalcap needs the same ids on both sides)")
            hyp, gold = self._split(pred.report), self._split(ref.report)
            quirks = self._quirks_of(ref, position)
            if quirks is not None:
                self._count("references/cut", int(len(gold) > quirks.max_seq_length - 1))
                gold, hyp = quirks.reference(gold), quirks.unk(hyp)
                self._count("tokens/unk_references", gold.count(UNK))
                self._count("tokens/unk_hypotheses", hyp.count(UNK))
            self._count("reports/empty_after_tokenization", int(not hyp))
            self._count("tokens/hypotheses", len(hyp))
            self._count("tokens/references", len(gold))
            self._hyps.append(" ".join(hyp))
            self._refs.append(" ".join(gold))
            self._pred_terms.append(pred.predicted_terms(self.term_threshold))
            self._ref_terms.append(ref.terms)
            self._scores.append(None if pred.term_scores is None else dict(pred.term_scores))

    def merge(self, other: Metric) -> None:
        if not isinstance(other, ReportGeneration):
            raise TypeError(f"cannot merge {type(other).__name__} into ReportGeneration")
        if other._quirks is not None and self._quirks is not None \
                and other._quirks != self._quirks:
            raise RefbenchError("cannot merge scores decoded with two training vocabularies")
        self._quirks = self._quirks or other._quirks
        for name in ("_hyps", "_refs", "_pred_terms", "_ref_terms", "_scores"):
            getattr(self, name).extend(getattr(other, name))
        for key, value in other._counts.items():
            self._count(key, value)

    def compute(self) -> dict[str, float]:
        if not self._hyps:
            raise RefbenchError("no report was scored")
        self._warnings = []
        refs = [[r] for r in self._refs]
        corpus = build_corpus(self._hyps, refs, 4)
        bleus, _ = bleu_from_counts(bleu_counts(corpus, 4))
        out = {f"BLEU-{n + 1}": float(v) for n, v in enumerate(bleus)}
        out["ROUGE-L"] = rouge_l(self._hyps, refs)[0]
        out["CIDEr-D"] = cider_from_corpus(corpus)[0]
        if self.run_meteor:
            reason = meteor_jar.unavailable_reason()
            if reason is None:
                out["METEOR"] = meteor_jar.meteor(self._hyps, refs)[0]
            else:
                self._warnings.append(f"METEOR left out: {reason}")
        out.update(self._term_values())
        return out

    def _term_values(self) -> dict[str, float]:
        has_pred = [t is not None for t in self._pred_terms]
        has_ref = [t is not None for t in self._ref_terms]
        if not any(has_pred):
            self._warnings.append("term metrics left out: the predictions carry no terms or "
                                  "term scores")
            return {}
        if not all(has_pred):
            raise RefbenchError(f"{has_pred.count(False)} of {len(has_pred)} predictions carry "
                                f"no terms while the others do: give terms for every study")
        if not all(has_ref):
            self._warnings.append("term metrics left out: the references carry no terms")
            return {}
        if not any(self._ref_terms):
            self._warnings.append("term metrics left out: no reference lists a term")
            return {}
        scored = all(s is not None for s in self._scores)
        result = term_metrics([t or () for t in self._pred_terms],
                              [t or () for t in self._ref_terms],
                              [s or {} for s in self._scores] if scored else None)
        self.per_term = result.per_term
        self._counts.update(result.counts)
        if not scored:
            self._warnings.append(f"{AUC_KEY} left out: not every prediction gives term scores")
        return {k: v for k, v in result.values.items() if k in (*TERM_KEYS, AUC_KEY)}

    def counts(self) -> dict[str, int]:
        """`reports/scored`, token totals, empty reports after tokenization, and under the
        R2Gen quirks `references/cut` and `tokens/unk_*`; the term counts when scored."""
        return {"reports/scored": len(self._hyps), **self._counts}

    def warnings(self) -> list[str]:
        out = list(self._warnings)
        n = len(self._hyps)
        if 0 < n < FEW_STUDIES:
            out.append(f"only {n} reports were scored: CIDEr-D's IDF comes from these "
                       f"references, and one report moves every key by up to {1 / n:.3f}")
        empty = self._counts.get("reports/empty_after_tokenization", 0)
        if empty:
            out.append(f"{empty} predicted report(s) hold no token after tokenization "
                       f"({self.tokenizer_name}) and score 0")
        return out
