"""How report text becomes the space-separated tokens the coco-caption metrics read.

The coco-caption scorers (BLEU, ROUGE-L, CIDEr-D, METEOR) compare whitespace-separated
tokens, so the tokenization is part of a benchmark, not of a model: a spec names one in its
`metric.args.tokenizer`, and every prediction and reference goes through the same one.

- `r2gen_iu_xray`: R2Gen's `Tokenizer.clean_report_iu_xray` (the cleaning every published
  IU X-ray table since R2Gen, EMNLP 2020, used), re-derived from its code: collapse "..",
  drop list numbering ("1. ", ". 2. ", " 3. ", ... up to 5), lower-case, split into
  sentences on ". ", strip quotes, slashes and backslashes from each sentence and delete
  the characters of R2Gen's class `[.,?;*!%^&_+():-\\[\\]{}]` (its `:-\\[` is a range, so
  `<`, `=`, `>`, `@` and A-Z go too), join the sentences with " . " and end with " .".
  R2Gen keeps empty sentences (its `!= []` test on a string is always true), which leaves
  double spaces; refbench then takes single-spaced whitespace tokens, since pycocoevalcap's
  ROUGE-L splits on single spaces and a stray double space would change its score.
- `whitespace`: the text is already tokenized; its whitespace-separated tokens, as given.
- `chinese_char`: every non-whitespace character is one token (Chinese reports have no
  spaces; Chinese radiology-report papers score characters).
- `chinese_word`: words from the `jieba` segmenter (its default dictionary, precise mode),
  only where jieba is installed; otherwise a one-line error naming what to install.

R2Gen's evaluation quirks, which published IU X-ray numbers depend on, are an option
(`R2GenQuirks`): R2Gen scores against its *decoded* reference ids, so a reference is cut to
`max_seq_length - 1` tokens (60 in its IU X-ray script: the bos id takes one slot) and every
word seen fewer than `threshold` (3) times in the cleaned training reports reads `<unk>`.
A prediction decoded from R2Gen's vocabulary cannot hold other words, so predictions pass
through the same `<unk>` mapping (and are not cut: R2Gen's decoder stops on its own).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from refbench.errors import RefbenchError

#: the tokenizers a spec may name
TOKENIZERS = ("r2gen_iu_xray", "whitespace", "chinese_char", "chinese_word")
#: what R2Gen writes for a word outside its training vocabulary
UNK = "<unk>"
#: R2Gen's IU X-ray settings (`train_iu_xray.sh`: `--max_seq_length 60 --threshold 3`)
R2GEN_MAX_SEQ_LENGTH = 60
R2GEN_THRESHOLD = 3

# the characters R2Gen's sentence regex deletes: . , ? ; * ! % ^ & _ + ( ) ] { } and the
# range ':' .. '[' (: ; < = > ? @ A-Z [), spelled out
_R2GEN_DELETED = re.compile(r"[.,?;*!%^&_+()\]{}:-@A-Z\[]")
_NUMBERING = tuple(f". {k}. " for k in "2345") + tuple(f" {k}. " for k in "2345")


def _clean_sentence(sentence: str) -> str:
    for char in ('"', "/", "\\", "'"):
        sentence = sentence.replace(char, "")
    return _R2GEN_DELETED.sub("", sentence.strip().lower())


def clean_report_iu_xray(report: str) -> str:
    """R2Gen's IU X-ray report cleaning (module docstring), output as R2Gen writes it
    (empty sentences and their double spaces kept)."""
    text = report
    for _ in range(3):
        text = text.replace("..", ".")
    text = text.replace("1. ", "")
    for numbering in _NUMBERING:
        text = text.replace(numbering, ". ")
    sentences = text.strip().lower().split(". ")
    return " . ".join(_clean_sentence(s) for s in sentences) + " ."


def _r2gen_tokens(text: str) -> list[str]:
    return clean_report_iu_xray(text).split()


def _whitespace_tokens(text: str) -> list[str]:
    return text.split()


def _chinese_char_tokens(text: str) -> list[str]:
    return [char for char in text if not char.isspace()]


def _chinese_word_tokens(text: str) -> list[str]:
    import jieba  # checked by `tokenizer()`

    return [word for word in jieba.lcut(text) if word.strip()]


_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "r2gen_iu_xray": _r2gen_tokens, "whitespace": _whitespace_tokens,
    "chinese_char": _chinese_char_tokens, "chinese_word": _chinese_word_tokens}


def tokenizer(name: str) -> Callable[[str], list[str]]:
    """The tokenizer called `name` (text -> tokens); a one-line error for an unknown name or
    for `chinese_word` without jieba."""
    if name not in _TOKENIZERS:
        raise RefbenchError(f"unknown report tokenizer {name!r} (known: {', '.join(TOKENIZERS)})",
                            key="tokenizer")
    if name == "chinese_word" and importlib.util.find_spec("jieba") is None:
        raise RefbenchError("tokenizer chinese_word segments Chinese words with jieba, which "
                            "is not installed: pip install jieba (or use chinese_char)",
                            key="tokenizer")
    return _TOKENIZERS[name]


def tokenize(text: str, name: str = "r2gen_iu_xray") -> str:
    """`text` as the single-spaced token string the scorers read."""
    return " ".join(tokenizer(name)(text))


@dataclass(frozen=True)
class R2GenQuirks:
    """R2Gen's evaluation quirks (module docstring): references cut to `max_seq_length - 1`
    tokens, words below `threshold` training occurrences read `<unk>` on both sides. Its
    `repr` names a fingerprint of the vocabulary, so a result's label-set hash covers it."""

    vocabulary: frozenset[str]
    max_seq_length: int = R2GEN_MAX_SEQ_LENGTH
    threshold: int = R2GEN_THRESHOLD
    fingerprint: str = field(default="", compare=False)

    @classmethod
    def from_training_reports(cls, reports: Iterable[str], *, name: str = "r2gen_iu_xray",
                              max_seq_length: int = R2GEN_MAX_SEQ_LENGTH,
                              threshold: int = R2GEN_THRESHOLD) -> "R2GenQuirks":
        """R2Gen's vocabulary: the tokens of the cleaned training reports seen at least
        `threshold` times."""
        if not isinstance(max_seq_length, int) or max_seq_length < 2:
            raise RefbenchError(f"max_seq_length must be an integer >= 2 (the bos id takes one "
                                f"slot), got {max_seq_length!r}", key="max_seq_length")
        if not isinstance(threshold, int) or threshold < 1:
            raise RefbenchError(f"threshold must be a positive integer, got {threshold!r}",
                                key="threshold")
        split = tokenizer(name)
        counts: Counter[str] = Counter()
        seen = 0
        for report in reports:
            counts.update(split(report))
            seen += 1
        if not seen:
            raise RefbenchError("the R2Gen quirks need the training reports, and none were given")
        vocabulary = frozenset(word for word, count in counts.items() if count >= threshold)
        digest = hashlib.sha256("\n".join(sorted(vocabulary)).encode()).hexdigest()
        return cls(vocabulary, max_seq_length, threshold, digest)

    def __repr__(self) -> str:
        return (f"R2GenQuirks(max_seq_length={self.max_seq_length}, threshold={self.threshold}, "
                f"vocabulary={len(self.vocabulary)} words, sha256={self.fingerprint})")

    def unk(self, tokens: list[str]) -> list[str]:
        vocabulary = self.vocabulary
        return [t if t in vocabulary else UNK for t in tokens]

    def reference(self, tokens: list[str]) -> list[str]:
        """A reference as R2Gen decodes it: cut, then out-of-vocabulary words as `<unk>`."""
        return self.unk(tokens[:self.max_seq_length - 1])
