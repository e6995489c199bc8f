"""Product1M instance-level retrieval metrics, re-derived from CAPTURE's `evaluate_suit.py`.

The official script (zhanxlin/Product1M `CAPTURE/evaluate_suit.py` at HEAD d4befb6, i.e.
after the 2022-04-20 fix 6e4b94e that made mAR *add up* the per-label recalls instead of
keeping the last one) reads `retrieval_id_list.txt` (one line `query_id,id_1,...,id_100`
per query) and the official files, and writes `metric_results.json`
`{"top10" | "top50" | "top100": {"mAP", "Prec", "mAR"}}`. The numbers here are the same,
bit for bit when the queries are added in the file's line order (`Ranking.line`).

Ground truth. The dev and test query files are merged into one dictionary (test read
first, so an id in both takes its dev labels); a query's labels are its `#;#`-joined
instance labels in file order, repeats kept. A gallery item's class is its FIRST label;
the positives of a query are the gallery items whose first label is one of its labels.

Per line, for k in 10, 50, 100:
- k' = min(k, |pos|, |list|): |pos| counts a repeated label's gallery items once per
  repeat (the script concatenates the label lists), |list| every id after the query id;
- mAP@k = sum over the hits at ranks i <= k' of (hits up to i) / i, divided by the
  number of hits within k' (not by min(k, |pos|)); 0 without a hit;
- Prec@k = hits within k' / k';
- mAR@k, a label-balanced recall over the untruncated top k: each label occurrence adds
  the quota int(k / |labels|) to its label (a repeated label's quotas add up), capped by
  the label's gallery count; the top-k items are counted per first label, capped at the
  quota; mAR@k = sum over the retrieved labels of count / quota, divided by the number
  of DISTINCT labels. With more labels than k the quota is 0 and mAR@k is 0;
- the script averages over the lines of the file (`cnt`), a line that raised counting 0.

Quirks kept, as the script behaves, each reported in `counts()` and `warnings()`:
- unknown query (in neither query file): KeyError before anything is added, so 0 on every
  key, still counted in the average (`queries/unknown`);
- a label absent from the gallery: KeyError while collecting positives, so the whole query
  scores 0 on every official key even if its other labels are present
  (`queries/label_absent`, `labels/absent`);
- a ranked id not in the gallery: a miss for mAP and Prec; but mAR looks up the label of
  every top-k id, so one such id within the top k raises after mAP and Prec were added:
  that query's mAR@k is 0 while its mAP@k and Prec@k stand (`ranked/not_in_gallery`,
  `queries/mAR_zeroed@k`);
- a repeated label: counted again in |pos| (k' can grow) and its mAR quota adds up, while
  mAR divides by the distinct labels;
- an empty ranked list: Prec divides by k' = 0 and raises, so 0 on every key;
- a repeated ranked id is a hit each time (the submission format refuses such lines).

Beside the official keys, under their own names (`refbench.evaluation.retrieval`):
`Recall@K` (K = 1, 5, 10, 50, 100) and `mAP@R`, with positives = the gallery items whose
first label is one of the query's distinct labels (an absent label adds none; a query
without positives and an unknown query score 0).

Values are fractions in [0, 1], as the script writes them (multiply by 100 for the
percentages papers print). Keys: `mAP@{10,50,100}`, `Prec@{10,50,100}`,
`mAR@{10,50,100}`, `Recall@{1,5,10,50,100}`, `mAP@R`; all higher-is-better.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.evaluation.retrieval import RECALL_KS, Ranking, decimal_keys
from refbench.registry import METRICS

#: the script's `topk_list`
TOPKS: tuple[int, ...] = (10, 50, 100)
OFFICIAL_KEYS: tuple[str, ...] = tuple(f"{name}@{k}" for k in TOPKS
                                       for name in ("mAP", "Prec", "mAR"))
STANDARD_KEYS: tuple[str, ...] = (*(f"Recall@{k}" for k in RECALL_KS), "mAP@R")
#: code of a query label absent from the gallery / of a padding slot
ABSENT, PAD = -1, -2
#: fewer scored queries than this: one query moves every key by more than 1 %
FEW_QUERIES = 100


class GalleryIndex:
    """The gallery as the script sees it: item ids and each item's FIRST label, coded.

    Ranked ids are turned into gallery rows through a dict, or, when every gallery id is a
    canonical decimal number (Product1M's are), through an int64 hash index for rankings
    read with keys. Its `repr` is the gallery's fingerprint (sha256 of the sorted id /
    first-label pairs), so a reference that points to it hashes the gallery it is scored
    against."""

    def __init__(self, ids: Sequence[str], first_labels: Sequence[str]) -> None:
        if len(ids) != len(first_labels):
            raise RefbenchError(f"{len(ids)} gallery ids but {len(first_labels)} labels")
        if not ids:
            raise RefbenchError("the gallery is empty")
        self.ids: list[str] = list(ids)
        self._row_of = _RowOf((item, row) for row, item in enumerate(self.ids))
        if len(self._row_of) != len(self.ids):
            seen: set[str] = set()
            again = next(item for item in self.ids if item in seen or seen.add(item))
            raise RefbenchError(f"gallery id {again!r} appears twice")
        keys = decimal_keys([",".join(self.ids)])  # Product1M's item ids are decimal
        self._keys: np.ndarray | None = None if keys is None else keys[0]
        self._key_index: Any = None
        self.label_code: dict[str, int] = {}
        codes = [self.label_code.setdefault(label, len(self.label_code)) for label in first_labels]
        self.labels: list[str] = list(self.label_code)
        self.item_label: np.ndarray = np.asarray(codes, dtype=np.int64)
        self.label_count: np.ndarray = np.bincount(self.item_label, minlength=len(self.labels))
        pairs = sorted(zip(self.ids, first_labels))
        text = "".join(f"{item}\t{label}\n" for item, label in pairs)
        self.fingerprint: str = hashlib.sha256(text.encode()).hexdigest()
        self._members: dict[int, list[str]] | None = None

    @classmethod
    def from_label_lists(cls, ids: Sequence[str],
                         label_lists: Sequence[Sequence[str]]) -> "GalleryIndex":
        """From each item's full label list; an empty list is the script's `[""]`."""
        return cls(ids, [labels[0] if len(labels) else "" for labels in label_lists])

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"GalleryIndex(sha256={self.fingerprint}, items={len(self.ids)})"

    def code(self, label: str) -> int:
        """The label's code, or `ABSENT` when no gallery item has it as first label."""
        return self.label_code.get(label, ABSENT)

    def rows(self, ids: Iterable[str], count: int = -1) -> np.ndarray:
        """Gallery rows of `ids` (`count` of them, if known), -1 for an id that is not a
        gallery item."""
        return np.fromiter(map(self._row_of.__getitem__, ids), dtype=np.int64, count=count)

    def key_rows(self, keys: np.ndarray) -> np.ndarray | None:
        """Gallery rows of decimal ids given as int64 keys (`decimal_keys`), -1 for a key
        that is no gallery id; None when the gallery's ids are not all decimal."""
        if self._keys is None:
            return None
        if self._key_index is None:  # a hash table in C: pandas' int64 index
            import pandas as pd

            self._key_index = pd.Index(self._keys)
        return self._key_index.get_indexer(keys).astype(np.int64, copy=False)

    def members(self, label: str) -> list[str]:
        """The gallery ids whose first label is `label`, in gallery order."""
        if self._members is None:
            members: dict[int, list[str]] = {}
            for item, code in zip(self.ids, self.item_label.tolist()):
                members.setdefault(code, []).append(item)
            self._members = members
        return list(self._members.get(self.code(label), []))


class _RowOf(dict):  # type: ignore[type-arg]
    """id -> gallery row, -1 for anything else (looked up at C speed by `map`)."""

    def __missing__(self, key: Any) -> int:
        return -1


@dataclass(frozen=True)
class Product1MQuery:
    """One query's reference: its labels (file order, repeats kept; None for an id in
    neither query file) and the gallery it is scored against."""

    labels: tuple[str, ...] | None
    gallery: GalleryIndex


# -- the per-query maths ---------------------------------------------------------------------
def encode_rankings(rankings: Sequence[Ranking | Sequence[str]], gallery: GalleryIndex
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, lengths): ranked ids as gallery rows, -1 for an id not in the gallery, `PAD`
    beyond a list's end; width = the longest list (at least 1). Rankings that carry int64
    keys are looked up by key (the same rows, without touching their id strings)."""
    lengths = np.fromiter(map(len, rankings), dtype=np.int64, count=len(rankings))
    width = max(int(lengths.max(initial=0)), 1)
    rows = np.full((len(rankings), width), PAD, dtype=np.int64)
    keys = [r.keys if isinstance(r, Ranking) else None for r in rankings]
    flat = None
    if rankings and all(k is not None for k in keys):
        flat = gallery.key_rows(np.concatenate(keys))  # type: ignore[arg-type]
    if flat is None:
        ids = (r.ids if isinstance(r, Ranking) else r for r in rankings)
        flat = gallery.rows(chain.from_iterable(ids), count=int(lengths.sum()))
    rows[np.arange(width)[None, :] < lengths[:, None]] = flat
    return rows, lengths


def encode_labels(label_lists: Sequence[Sequence[str] | None], gallery: GalleryIndex) -> np.ndarray:
    """Query labels as gallery label codes (`ABSENT` when absent), `PAD`-padded; an unknown
    query (None) is one absent label, which scores it 0 like the script's KeyError; an
    empty label list is the script's `[""]`."""
    get = gallery.label_code.get
    coded = [[ABSENT] if labels is None else [get(x, ABSENT) for x in (labels or [""])]
             for labels in label_lists]
    width = max((len(c) for c in coded), default=1)
    out = np.full((len(coded), width), PAD, dtype=np.int64)
    for i, codes in enumerate(coded):
        out[i, :len(codes)] = codes
    return out


def query_scores(rows: np.ndarray, lengths: np.ndarray, codes: np.ndarray, gallery: GalleryIndex,
                 chunk: int = 8192) -> dict[str, np.ndarray]:
    """Every key's per-query value, plus `label_absent`, `positives` (distinct positives),
    `not_in_gallery` (ranked ids) and `mAR_zeroed@k` per query. Inputs as `encode_*`."""
    rows, lengths, codes = (np.asarray(a, dtype=np.int64) for a in (rows, lengths, codes))
    n = rows.shape[0]
    out: dict[str, np.ndarray] = {key: np.zeros(n) for key in (*OFFICIAL_KEYS, *STANDARD_KEYS)}
    out.update({"label_absent": np.zeros(n, bool), "positives": np.zeros(n, np.int64),
                "not_in_gallery": np.zeros(n, np.int64)})
    out.update({f"mAR_zeroed@{k}": np.zeros(n, bool) for k in TOPKS})
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        for key, values in _chunk_scores(rows[part], lengths[part], codes[part], gallery).items():
            out[key][part] = values
    return out


def _at(prefix: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Per row, the running total `prefix` (rows x [slots x] ranks) over the first `cut`
    ranks (0 where `cut` is 0): a prefix sum adds in rank order, as the script's loops do."""
    taken = prefix[np.arange(prefix.shape[0]), ..., np.maximum(cut - 1, 0)]
    if taken.ndim > 1:  # rows x slots: the advanced indices went first
        return np.where((cut > 0)[:, None], taken, 0)
    return np.where(cut > 0, taken, 0)


def _chunk_scores(rows: np.ndarray, lengths: np.ndarray, codes: np.ndarray,
                  gallery: GalleryIndex) -> dict[str, np.ndarray]:
    """`query_scores` for one chunk of queries (bounded memory: queries x slots x ranks)."""
    width = rows.shape[1]
    pos = np.arange(width)
    in_list = pos[None, :] < lengths[:, None]
    # each ranked item's first-label code; row -1 (not a gallery item) takes the last entry
    item = np.append(gallery.item_label, ABSENT)[rows]
    item = np.where(in_list, item, PAD)
    stray = rows == -1
    first_stray = np.where(stray.any(axis=1), stray.argmax(axis=1), width)
    valid, present = codes != PAD, codes >= 0
    absent = (valid & ~present).any(axis=1)
    count = np.where(present, gallery.label_count[np.clip(codes, 0, None)], 0)
    eq = (codes[:, :, None] == item[:, None, :]) & present[:, :, None]  # label slot x rank
    rel = eq.any(axis=1)
    hits_cum = np.cumsum(rel, axis=1)
    ap_cum = np.cumsum(np.where(rel, hits_cum / (pos + 1), 0.0), axis=1)
    # distinct labels: the first slot of each code; a slot's multiplicity; gallery caps
    slots = codes.shape[1]
    same = (codes[:, :, None] == codes[:, None, :]) & valid[:, None, :]
    first_slot = valid & ~(same & np.tri(slots, k=-1, dtype=bool)[None]).any(axis=2)
    mult, distinct = same.sum(axis=2), np.maximum(first_slot.sum(axis=1), 1)
    got_cum = np.cumsum(eq, axis=2, dtype=np.int16 if width < 2**15 else np.int64)
    first_pos = np.where(eq.any(axis=2), eq.argmax(axis=2), width)
    n_labels = np.maximum(valid.sum(axis=1), 1)
    out: dict[str, np.ndarray] = {}
    for k in TOPKS:
        cut = np.minimum(np.minimum(k, count.sum(axis=1)), lengths)  # k'
        hits = _at(hits_cum, cut)
        scored = ~absent & (cut > 0)  # else a KeyError or Prec's ZeroDivisionError
        out[f"mAP@{k}"] = np.where(scored & (hits > 0), _at(ap_cum, cut) / np.maximum(hits, 1), 0.0)
        out[f"Prec@{k}"] = np.where(scored, hits / np.maximum(cut, 1), 0.0)
        top = np.minimum(k, lengths)  # mAR reads the untruncated top k
        got = _at(got_cum, top).astype(np.int64)
        expect = np.minimum((k // n_labels)[:, None] * mult, count)
        retrieved = first_slot & (first_pos < top[:, None])
        zero_quota = (retrieved & (expect == 0)).any(axis=1)
        term = np.where(retrieved & (expect > 0),
                        np.minimum(got, expect) / np.maximum(expect, 1), 0.0)
        order = np.argsort(np.where(retrieved, first_pos, width + np.arange(slots)), axis=1,
                           kind="stable")  # the script adds labels in order of retrieval
        ar_sum = np.cumsum(np.take_along_axis(term, order, axis=1), axis=1)[:, -1]
        stray_in_top = first_stray < top
        out[f"mAR@{k}"] = np.where(scored & ~stray_in_top & ~zero_quota, ar_sum / distinct, 0.0)
        out[f"mAR_zeroed@{k}"] = scored & stray_in_top
    # the standard keys (`refbench.evaluation.retrieval`): R = the distinct positives
    positives = np.where(first_slot & present, count, 0).sum(axis=1)
    for k in RECALL_KS:
        out[f"Recall@{k}"] = (_at(hits_cum, np.full(len(rows), min(k, width))) > 0) * 1.0
    within_r = _at(ap_cum, np.minimum(positives, width))
    out["mAP@R"] = np.divide(within_r, positives, out=np.zeros(len(rows)), where=positives > 0)
    out["label_absent"] = absent
    out["positives"] = positives
    out["not_in_gallery"] = stray.sum(axis=1)
    return out


def ordered_mean(values: np.ndarray, order: np.ndarray | None = None) -> float:
    """The script's running `+=` over the lines in `order`, divided by their number."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise RefbenchError("no Product1M queries were scored")
    if order is not None:
        values = values[order]
    return float(np.cumsum(values)[-1] / values.size)


def evaluate_rankings(rankings: Sequence[Ranking | Sequence[str]],
                      label_lists: Sequence[Sequence[str] | None],
                      gallery: GalleryIndex) -> dict[str, float]:
    """Every key over aligned ranked lists and query labels, averaged in the given order
    (the order of the lines of a submission file)."""
    if len(rankings) != len(label_lists):
        raise RefbenchError(f"{len(rankings)} ranked lists for {len(label_lists)} queries")
    rows, lengths = encode_rankings(rankings, gallery)
    scores = query_scores(rows, lengths, encode_labels(label_lists, gallery), gallery)
    return {key: ordered_mean(scores[key]) for key in (*OFFICIAL_KEYS, *STANDARD_KEYS)}


def official_results(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """The script's `metric_results.json` layout from refbench's keys."""
    return {f"top{k}": {"mAP": values[f"mAP@{k}"], "Prec": values[f"Prec@{k}"],
                        "mAR": values[f"mAR@{k}"]} for k in TOPKS}


# -- the streaming metric --------------------------------------------------------------------
def _show(items: Sequence[str], total: int) -> str:
    return ", ".join(repr(x) for x in items[:3]) + (", ..." if total > 3 else "")


def _ranking(prediction: Any, position: int) -> tuple[Ranking | tuple[str, ...], float]:
    """(ranking, order key): a `Ranking` keeps its file line, a plain sequence sorts last."""
    if isinstance(prediction, Ranking):
        return prediction, float("inf") if prediction.line is None else float(prediction.line)
    if isinstance(prediction, (str, bytes)) or not isinstance(prediction, Sequence):
        raise RefbenchError(f"prediction {position}: expected a ranked list of gallery ids, "
                            f"got {type(prediction).__name__}")
    ids = tuple(prediction)
    if not all(isinstance(item, str) for item in ids):
        raise RefbenchError(f"prediction {position}: gallery ids are strings")
    return ids, float("inf")


@METRICS.register("product1m_retrieval", higher_is_better=True, version="1")
class Product1MRetrieval(Metric):
    """CAPTURE's `evaluate_suit.py` over ranked lists (module docstring), plus Recall@K and
    mAP@R. Predictions are `Ranking`s (or sequences of gallery ids), references
    `Product1MQuery`s sharing one gallery; a None prediction (a query with no line in the
    file, only under official averaging) is left out of the average, as the script
    averages over the file's lines."""

    keys: ClassVar[dict[str, str]] = {
        **{f"mAP@{k}": f"official mAP@{k}: precision at the hits within k' = min({k}, |pos|, "
                       f"|list|), divided by the hits" for k in TOPKS},
        **{f"Prec@{k}": f"official Prec@{k}: hits within k' / k'" for k in TOPKS},
        **{f"mAR@{k}": f"official mAR@{k}: label-balanced recall of the top {k}" for k in TOPKS},
        **{f"Recall@{k}": f"fraction of queries with a positive in the top {k}"
           for k in RECALL_KS},
        "mAP@R": "mean AP@R, R = the query's distinct positives (Musgrave et al. 2020)",
    }
    directions: ClassVar[dict[str, bool | None]] = {key: True for key in keys}

    def __init__(self, **args: Any) -> None:
        if args:
            raise RefbenchError(f"metric product1m_retrieval takes no arguments, got "
                                f"{', '.join(sorted(args))}")
        super().__init__()
        self._gallery: GalleryIndex | None = None
        self._scores: list[dict[str, np.ndarray]] = []
        self._order: list[np.ndarray] = []
        self._not_submitted = 0
        self._absent_labels: dict[str, None] = {}
        self._stray_ids: list[str] = []

    def _check_gallery(self, gallery: Any, position: int) -> GalleryIndex:
        if not isinstance(gallery, GalleryIndex):
            raise RefbenchError(f"reference {position}: its gallery is not a GalleryIndex")
        if self._gallery is None:
            self._gallery = gallery
        elif gallery is not self._gallery and gallery.fingerprint != self._gallery.fingerprint:
            raise RefbenchError(f"reference {position}: scored against another gallery "
                                f"({gallery!r}, not {self._gallery!r})")
        return self._gallery

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} references")
        rankings: list[Ranking | tuple[str, ...]] = []
        labels: list[tuple[str, ...] | None] = []
        order: list[float] = []
        gallery = self._gallery
        for position, (pred, ref) in enumerate(zip(predictions, references)):
            if not isinstance(ref, Product1MQuery):
                raise RefbenchError(f"reference {position}: expected a Product1MQuery, got "
                                    f"{type(ref).__name__}")
            gallery = self._check_gallery(ref.gallery, position)
            if pred is None:
                self._not_submitted += 1
                continue
            ids, key = _ranking(pred, position)
            rankings.append(ids)
            labels.append(ref.labels)
            order.append(key)
        if not rankings or gallery is None:
            return
        rows, lengths = encode_rankings(rankings, gallery)
        codes = encode_labels(labels, gallery)
        scores = query_scores(rows, lengths, codes, gallery)
        scores["unknown"] = np.array([x is None for x in labels], dtype=bool)
        self._scores.append(scores)
        self._order.append(np.asarray(order, dtype=np.float64))
        for i, j in np.argwhere(codes == ABSENT).tolist():
            query = labels[i]
            if query is not None:
                self._absent_labels.setdefault((query or ("",))[j], None)
        for i, j in np.argwhere(rows == -1)[:3].tolist():
            if len(self._stray_ids) < 3:
                ranking = rankings[i]
                self._stray_ids.append((ranking.ids if isinstance(ranking, Ranking)
                                        else ranking)[j])

    def merge(self, other: Metric) -> None:
        if not isinstance(other, Product1MRetrieval):
            raise TypeError(f"cannot merge {type(other).__name__} into Product1MRetrieval")
        if other._gallery is not None:
            self._check_gallery(other._gallery, 0)
        self._scores += other._scores
        self._order += other._order
        self._not_submitted += other._not_submitted
        for label in other._absent_labels:
            self._absent_labels.setdefault(label, None)
        self._stray_ids = (self._stray_ids + other._stray_ids)[:3]

    def _column(self, key: str) -> np.ndarray:
        return np.concatenate([s[key] for s in self._scores]) if self._scores else np.zeros(0)

    def compute(self) -> dict[str, float]:
        if not self._scores:
            raise RefbenchError("no Product1M query was scored (no ranked list was given)")
        order = np.argsort(np.concatenate(self._order), kind="stable")
        return {key: ordered_mean(self._column(key), order) for key in self.keys}

    def counts(self) -> dict[str, int]:
        """`queries/scored` (the lines averaged), `queries/not_submitted`,
        `queries/unknown`, `queries/label_absent` (known queries scored 0 for an absent
        label), `labels/absent`, `positives/total` (distinct positives over the scored
        queries), `queries/no_positive`, `ranked/not_in_gallery`, `queries/mAR_zeroed@k`,
        `gallery/items`, `gallery/labels` (distinct first labels)."""
        unknown = self._column("unknown").astype(bool)
        positives = self._column("positives")
        out = {"queries/scored": int(unknown.size), "queries/not_submitted": self._not_submitted,
               "queries/unknown": int(unknown.sum()),
               "queries/label_absent": int((self._column("label_absent").astype(bool)
                                            & ~unknown).sum()),
               "labels/absent": len(self._absent_labels),
               "positives/total": int(positives.sum()),
               "queries/no_positive": int(((positives == 0) & ~unknown).sum()),
               "ranked/not_in_gallery": int(self._column("not_in_gallery").sum())}
        out.update({f"queries/mAR_zeroed@{k}": int(self._column(f"mAR_zeroed@{k}").sum())
                    for k in TOPKS})
        if self._gallery is not None:
            out.update({"gallery/items": len(self._gallery),
                        "gallery/labels": len(self._gallery.labels)})
        return out

    def warnings(self) -> list[str]:
        counts = self.counts()
        out = []
        scored = counts["queries/scored"]
        if 0 < scored < FEW_QUERIES:
            out.append(f"only {scored} queries were scored: one query moves every key by up "
                       f"to {1 / scored:.3f}")
        if counts["queries/unknown"]:
            out.append(f"{counts['queries/unknown']} query id(s) are in neither query file: "
                       f"each scores 0 and counts in the average, as in the official script")
        if self._absent_labels:
            labels = list(self._absent_labels)
            out.append(f"{len(labels)} query label(s) are no gallery item's first label "
                       f"(first: {_show(labels, len(labels))}): their "
                       f"{counts['queries/label_absent']} queries score 0 on every mAP / Prec "
                       f"/ mAR key, as in the official script")
        stray = counts["ranked/not_in_gallery"]
        if stray:
            zeroed = counts[f"queries/mAR_zeroed@{TOPKS[-1]}"]
            out.append(f"{stray} ranked id(s) are not gallery items (first: "
                       f"{_show(self._stray_ids, stray)}): each is a miss, and a query with "
                       f"one in its top k scores mAR@k 0 ({zeroed} at k={TOPKS[-1]}), as in "
                       f"the official script")
        return out
