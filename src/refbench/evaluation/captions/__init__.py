"""Report-generation evaluation: the coco-caption metrics without Java (BLEU-1..4, ROUGE-L,
CIDEr-D equal to pycocoevalcap 1.2), METEOR through the official jar where Java exists,
the tokenizations a benchmark names, and clinical term metrics.

Modules: `tokenize` (R2Gen's IU X-ray cleaning, Chinese characters / words, R2Gen's
evaluation quirks), `ngrams` (the shared n-gram tables), `bleu`, `rouge`, `cider`,
`meteor`, `terms`, and `metric` (the registered `report_generation` metric).
(`bleu.bleu` and `tokenize.tokenize` are not re-exported: the names are their modules'.)
"""

from refbench.evaluation.captions.cider import cider_d
from refbench.evaluation.captions.rouge import rouge_l
from refbench.evaluation.captions.terms import term_metrics
from refbench.evaluation.captions.tokenize import R2GenQuirks, clean_report_iu_xray

__all__ = ["R2GenQuirks", "cider_d", "clean_report_iu_xray", "rouge_l", "term_metrics"]
