"""Report text <-> token ids: the WordPiece vocabulary built from the training reports, its
extension when a run starts from another dataset's run, and detokenisation.

The vocabulary is `nlp.bert`'s deterministic WordPiece build (special tokens, every
character seen, then whole words by frequency). BERT's normaliser puts spaces around
every CJK character, so on Chinese reports each character is its own token: the
character-level tokenization Chinese report benchmarks score with. Decoding joins the
pieces and removes the spaces the normaliser put beside CJK characters and full-width
punctuation, so a generated Chinese report reads like the references.

A run that starts from another run (`init_from`, CX-CHR -> COVID-19 CT) keeps the source
vocabulary in its order and appends what the new training reports add (characters first,
then words up to `vocab_size`), so every source embedding row keeps its meaning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from refbench.errors import RefbenchError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CJK = r"\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BY_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")


def join_cjk(text: str) -> str:
    """Drop whitespace next to CJK characters and full-width punctuation."""
    return _SPACE_BY_CJK.sub("", text)


def save_wordpiece(vocab: Sequence[str], lowercase: bool, out: Path) -> None:
    """Save a BERT WordPiece tokenizer over `vocab` (in id order) as a transformers folder
    (the same pipeline as `nlp.bert.train_wordpiece`)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    index = {token: i for i, token in enumerate(vocab)}
    missing = [t for t in SPECIAL_TOKENS if t not in index]
    if missing or len(index) != len(vocab):
        raise RefbenchError(f"a vocabulary needs every special token once (missing "
                            f"{missing}, {len(vocab) - len(index)} repeated)")
    tok = Tokenizer(models.WordPiece(vocab=index, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", index["[CLS]"]), ("[SEP]", index["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                      do_lower_case=lowercase).save_pretrained(str(out))


def build_vocabulary(reports: Iterable[str], vocab_size: int, lowercase: bool,
                     base: Sequence[str] = ()) -> list[str]:
    """`base` (kept in order) extended by the reports' WordPiece vocabulary: its
    characters always, then its words by frequency while the total is under
    `vocab_size`."""
    from refbench.baselines.nlp.bert import build_wordpiece_vocab

    fresh = list(build_wordpiece_vocab(iter(reports), vocab_size, lowercase))
    if not base:
        return fresh
    out, seen = list(base), set(base)
    chars = [t for t in fresh if t not in SPECIAL_TOKENS and (len(t) == 1 or
                                                               (t.startswith("##") and len(t) == 3))]
    char_set = set(chars)
    words = [t for t in fresh if t not in SPECIAL_TOKENS and t not in char_set]
    for token in chars:
        if token not in seen:
            out.append(token)
            seen.add(token)
    for token in words:
        if len(out) >= vocab_size:
            break
        if token not in seen:
            out.append(token)
            seen.add(token)
    return out


def vocabulary_of(tokenizer: Any) -> list[str]:
    """A tokenizer's tokens in id order."""
    return [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]


def decode(tokenizer: Any, ids: Sequence[int]) -> str:
    """Token ids -> report text (special tokens dropped, CJK re-joined)."""
    return join_cjk(tokenizer.decode(list(ids), skip_special_tokens=True,
                                     clean_up_tokenization_spaces=True)).strip()


def read_corpus(path: Path) -> list[str]:
    """A knowledge corpus: UTF-8 text, one text a line (blank lines skipped)."""
    path = Path(path)
    if path.is_dir():
        raise RefbenchError("a folder, but the knowledge corpus must be a text file", path=path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RefbenchError("knowledge corpus not found", path=path) from None
    texts = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise RefbenchError(f"not valid UTF-8 ({exc.reason})", path=path,
                                line=number) from None
        if line:
            texts.append(line)
    if not texts:
        raise RefbenchError("the knowledge corpus holds no text", path=path)
    return texts
