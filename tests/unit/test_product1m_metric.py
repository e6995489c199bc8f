"""Product1M's metric: hand-computed cases for every quirk of CAPTURE's `evaluate_suit.py`,
the official script's own numbers on one of them, the streaming class, and a randomized
cross-check against a straight loop written here from the official semantics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from refbench.errors import RefbenchError
from refbench.evaluation.product1m import (
    GalleryIndex,
    Product1MQuery,
    Product1MRetrieval,
    evaluate_rankings,
    official_results,
)
from refbench.evaluation.retrieval import Ranking
from refbench.registry import METRICS

#: first labels: A x3, B x2, C x1, D x10
GALLERY = {"g1": "A", "g2": "A", "g3": "A", "g4": "B", "g5": "B", "g6": "C",
           **{f"h{i}": "D" for i in range(1, 11)}}


@pytest.fixture(scope="module")
def gallery() -> GalleryIndex:
    return GalleryIndex(list(GALLERY), list(GALLERY.values()))


def one(gallery: GalleryIndex, labels: list[str] | None, ranked: list[str]) -> dict[str, float]:
    return evaluate_rankings([ranked], [None if labels is None else tuple(labels)], gallery)


def at_all_k(values: dict[str, float], name: str) -> list[float]:
    return [values[f"{name}@{k}"] for k in (10, 50, 100)]


# -- one quirk at a time -------------------------------------------------------------------
def test_truncated_k_and_map_divides_by_the_hits(gallery: GalleryIndex) -> None:
    """|pos| = 3 cuts every k to k' = 3: one hit at rank 2 in the top 3 gives AP = (1/2)/1
    (divided by the hits, not by 3) and Prec = 1/3; mAR finds all 3 A's in the top 10."""
    values = one(gallery, ["A"], ["g4", "g1", "g5", "g2", "g3", "g6"])
    assert at_all_k(values, "mAP") == [0.5] * 3
    assert at_all_k(values, "Prec") == [1 / 3] * 3
    assert at_all_k(values, "mAR") == [1.0] * 3
    assert values["Recall@1"] == 0.0 and values["Recall@5"] == 1.0
    assert values["mAP@R"] == pytest.approx((1 / 2) / 3)  # R = 3, one hit at rank 2


def test_short_list_truncates_k(gallery: GalleryIndex) -> None:
    """k' = min(k, |pos| = 10, |list| = 2): two hits of two are a perfect AP and Prec."""
    values = one(gallery, ["D"], ["h1", "h2"])
    assert at_all_k(values, "mAP") == [1.0] * 3 and at_all_k(values, "Prec") == [1.0] * 3
    assert at_all_k(values, "mAR") == [0.2] * 3  # quota min(k, 10) = 10, 2 found


def test_repeated_label_adds_quotas_and_positives(gallery: GalleryIndex) -> None:
    """Labels [A, A, B]: |pos| = 3 + 3 + 2 = 8 (k' = min(10, 8, 4) = 4); quotas int(10/3)
    = 3 per occurrence: A 6 capped at its 3 gallery items, B 3 capped at 2; mAR divides
    by the 2 distinct labels: (2/3 + 1/2) / 2."""
    values = one(gallery, ["A", "A", "B"], ["g1", "g2", "g6", "g4"])
    assert at_all_k(values, "mAP") == [(1 / 1 + 2 / 2 + 3 / 4) / 3] * 3
    assert at_all_k(values, "Prec") == [3 / 4] * 3
    assert at_all_k(values, "mAR") == [(2 / 3 + 1 / 2) / 2] * 3
    assert values["mAP@R"] == pytest.approx((1 + 1 + 3 / 4) / 5)  # 5 distinct positives


def test_quota_rounds_down_per_label(gallery: GalleryIndex) -> None:
    """Labels [A, D, B]: quota int(10/3) = 3 each; D's 5 retrieved items count 3 of 3."""
    ranked = ["h1", "h2", "h3", "h4", "h5", "g1"]
    values = one(gallery, ["A", "D", "B"], ranked)
    assert values["mAR@10"] == pytest.approx((3 / 3 + 1 / 3) / 3)
    # k = 50: quotas 16, capped by the gallery: A 3, D 10, B 2
    assert values["mAR@50"] == pytest.approx((5 / 10 + 1 / 3) / 3)


def test_more_labels_than_k_zeroes_mar(gallery: GalleryIndex) -> None:
    """11 labels: int(10/11) = 0, so the script divides by a zero quota (0); at k = 50 the
    quota is 4 x 11 = 44, capped at A's 3 gallery items."""
    values = one(gallery, ["A"] * 11, ["g1", "g2"])
    assert values["mAR@10"] == 0.0
    assert values["mAR@50"] == values["mAR@100"] == pytest.approx(2 / 3)
    assert values["mAP@10"] == values["Prec@10"] == 1.0


def test_label_absent_from_gallery_zeroes_the_query(gallery: GalleryIndex) -> None:
    """Z is no gallery item's first label: the script's KeyError scores the whole query 0,
    even though B is present; the standard keys count B's positives."""
    values = one(gallery, ["B", "Z"], ["g4", "g5"])
    assert all(values[f"{name}@{k}"] == 0.0 for name in ("mAP", "Prec", "mAR")
               for k in (10, 50, 100))
    assert values["Recall@1"] == 1.0 and values["mAP@R"] == 1.0


def test_ranked_id_not_in_gallery_zeroes_mar_only_where_in_the_top_k(gallery: GalleryIndex) -> None:
    """x9 at rank 11: a miss everywhere; mAR@10 stands (x9 is not in the top 10), mAR@50
    and mAR@100 are 0 (the script's KeyError after mAP and Prec were added)."""
    ranked = ["g4"] + [f"h{i}" for i in range(1, 10)] + ["x9", "g5"]
    values = one(gallery, ["B"], ranked)
    assert at_all_k(values, "mAP") == [1.0] * 3  # k' = |pos| = 2: one hit at rank 1
    assert at_all_k(values, "Prec") == [0.5] * 3
    assert at_all_k(values, "mAR") == [0.5, 0.0, 0.0]


def test_unknown_query_and_empty_list_score_zero(gallery: GalleryIndex) -> None:
    unknown = one(gallery, None, ["g1"])
    empty = one(gallery, ["C"], [])
    for values in (unknown, empty):
        assert set(values.values()) == {0.0}


def test_repeated_ranked_id_is_a_hit_each_time(gallery: GalleryIndex) -> None:
    """The format refuses such lines; the plain functions score them as the script does."""
    values = one(gallery, ["C"], ["g6", "g6"])
    assert values["mAP@10"] == 1.0 and values["Prec@10"] == 1.0  # k' = |pos| = 1
    assert values["mAR@10"] == 1.0  # 2 found, capped at the quota min(10, 1) = 1


# -- the official script's numbers ---------------------------------------------------------
#: `evaluate_suit.py` (HEAD d4befb6) run by hand on these lines, with dev = q1..q4 and
#: test = q6, q7 (see perf/product1m_crosscheck.py for the randomized comparison)
HAND_LINES = [("q1", "g4,g1,g5,g2,g3,g6"), ("q2", "g1,g2,g6,g4"), ("q3", "g4,g5"),
              ("q4", "g4,h1,h2,h3,h4,h5,h6,h7,h8,h9,x9,g5"), ("q5", "g1"), ("q6", "g1,g2"),
              ("q7", "")]
HAND_LABELS = {"q1": ["A"], "q2": ["A", "A", "B"], "q3": ["B", "Z"], "q4": ["B"],
               "q6": ["A"] * 11, "q7": ["C"]}
OFFICIAL = {"top10": {"mAP": 0.4880952380952381, "Prec": 0.369047619047619,
                      "mAR": 0.29761904761904756},
            "top50": {"mAP": 0.4880952380952381, "Prec": 0.369047619047619,
                      "mAR": 0.32142857142857145},
            "top100": {"mAP": 0.4880952380952381, "Prec": 0.369047619047619,
                       "mAR": 0.32142857142857145}}


def test_equals_the_official_script_on_the_hand_case(gallery: GalleryIndex) -> None:
    ranked = [ids.split(",") if ids else [] for _, ids in HAND_LINES]
    labels = [tuple(HAND_LABELS[q]) if q in HAND_LABELS else None for q, _ in HAND_LINES]
    assert official_results(evaluate_rankings(ranked, labels, gallery)) == OFFICIAL


def hand_metric(gallery: GalleryIndex, order: list[int]) -> Product1MRetrieval:
    metric = Product1MRetrieval()
    preds = [Ranking(tuple(HAND_LINES[i][1].split(",")) if HAND_LINES[i][1] else (), i + 1)
             for i in order]
    refs = [Product1MQuery(tuple(HAND_LABELS[HAND_LINES[i][0]])
                           if HAND_LINES[i][0] in HAND_LABELS else None, gallery) for i in order]
    metric.update(preds[:3], refs[:3])
    metric.update(preds[3:], refs[3:])
    return metric


def test_streaming_class_adds_lines_in_file_order(gallery: GalleryIndex) -> None:
    """Batches in any order give the script's numbers bit for bit (lines sorted first)."""
    shuffled = [6, 2, 0, 5, 1, 3, 4]
    values = hand_metric(gallery, shuffled).compute()
    assert official_results(values) == OFFICIAL
    assert set(values) == set(Product1MRetrieval.keys)
    halves = [hand_metric(gallery, [0, 1, 2]), hand_metric(gallery, [3, 4, 5, 6])]
    halves[1].update([], [])
    merged = Product1MRetrieval()
    merged.merge(halves[1])
    merged.merge(halves[0])
    assert merged.compute() == values


def test_counts_and_warnings_report_every_quirk(gallery: GalleryIndex) -> None:
    metric = hand_metric(gallery, list(range(7)))
    missing = Product1MQuery(("A",), gallery)
    metric.update([None], [missing])  # a query without a line: left out of the average
    values = metric.compute()
    assert official_results(values) == OFFICIAL
    counts = metric.counts()
    assert counts["queries/scored"] == 7 and counts["queries/not_submitted"] == 1
    assert counts["queries/unknown"] == 1 and counts["queries/label_absent"] == 1
    assert counts["labels/absent"] == 1 and counts["ranked/not_in_gallery"] == 1
    assert (counts["queries/mAR_zeroed@10"], counts["queries/mAR_zeroed@100"]) == (0, 1)
    assert counts["positives/total"] == 3 + 5 + 2 + 2 + 0 + 3 + 1
    assert counts["queries/no_positive"] == 0
    assert (counts["gallery/items"], counts["gallery/labels"]) == (16, 4)
    assert all("/" in key for key in counts)
    text = " | ".join(metric.warnings())
    assert "only 7 queries" in text and "neither query file" in text
    assert "'Z'" in text and "'x9'" in text and "mAR@k 0" in text


def test_bad_inputs_are_one_line_errors(gallery: GalleryIndex) -> None:
    metric = Product1MRetrieval()
    with pytest.raises(RefbenchError, match="expected a Product1MQuery"):
        metric.update([("g1",)], [("A",)])
    with pytest.raises(RefbenchError, match="ranked list"):
        metric.update(["g1"], [Product1MQuery(("A",), gallery)])
    other = GalleryIndex(["g1"], ["A"])
    metric.update([("g1",)], [Product1MQuery(("A",), gallery)])
    with pytest.raises(RefbenchError, match="another gallery"):
        metric.update([("g1",)], [Product1MQuery(("A",), other)])
    with pytest.raises(RefbenchError, match="no arguments"):
        Product1MRetrieval(k=10)
    with pytest.raises(RefbenchError, match="no Product1M query"):
        Product1MRetrieval().compute()
    with pytest.raises(RefbenchError, match="appears twice"):
        GalleryIndex(["g1", "g1"], ["A", "B"])


def test_registered_with_documented_keys() -> None:
    entry = METRICS.entry("product1m_retrieval")
    assert entry.obj is Product1MRetrieval and entry.meta["version"] == "1"
    assert {"mAP@10", "Prec@50", "mAR@100", "Recall@1", "mAP@R"} <= set(entry.obj.keys)
    assert all(entry.obj().higher_is_better(key) for key in entry.obj.keys)


def test_gallery_repr_is_its_fingerprint(gallery: GalleryIndex) -> None:
    same = GalleryIndex(list(reversed(GALLERY)), list(reversed(GALLERY.values())))
    relabelled = GalleryIndex(list(GALLERY), ["B", *list(GALLERY.values())[1:]])
    assert repr(same) == repr(gallery) != repr(relabelled)
    assert gallery.fingerprint in repr(Product1MQuery(("A",), gallery))


# -- randomized cross-check against a straight loop ----------------------------------------
def loop_reference(lines: list[tuple[str, list[str]]], truth: dict[str, list[str]],
                   first_label: dict[str, str]) -> dict[str, float]:
    """The official semantics as a plain loop over the lines (list membership and all)."""
    by_label: dict[str, list[str]] = {}
    for item, label in first_label.items():
        by_label.setdefault(label, []).append(item)
    out = {}
    for k in (10, 50, 100):
        total_ap, total_p, total_ar, cnt = 0, 0, 0, 0
        for query, ranked in lines:
            cnt += 1
            labels = truth.get(query)
            if labels is None or any(label not in by_label for label in labels):
                continue
            pos = [item for label in labels for item in by_label[label]]
            cut = min(k, len(pos), len(ranked))
            if cut == 0:
                continue
            hits, ap = 0, 0
            for i in range(cut):
                if ranked[i] in pos:
                    hits += 1
                    ap += hits / (i + 1)
            total_ap += ap / hits if hits else 0
            total_p += hits / cut
            if any(item not in first_label for item in ranked[:k]):
                continue
            expect: dict[str, int] = {}
            for label in labels:
                expect[label] = expect.get(label, 0) + int(k / len(labels))
            expect = {label: min(n, len(by_label[label])) for label, n in expect.items()}
            got: dict[str, int] = {}
            for item in ranked[:k]:
                if first_label[item] in expect:
                    got[first_label[item]] = got.get(first_label[item], 0) + 1
            if any(expect[label] == 0 for label in got):
                continue
            ar = 0
            for label, n in got.items():
                ar += min(n, expect[label]) / expect[label]
            total_ar += ar / len(set(labels))
        out.update({f"mAP@{k}": total_ap / cnt, f"Prec@{k}": total_p / cnt,
                    f"mAR@{k}": total_ar / cnt})
    return out


def random_case(seed: int) -> tuple[list[tuple[str, list[str]]], dict[str, list[str]],
                                   dict[str, str]]:
    rng = random.Random(seed)
    labels = [f"L{i}" for i in range(rng.randint(1, 8))]
    first_label = {f"g{i}": rng.choice(labels) for i in range(rng.randint(1, 80))}
    truth = {f"q{i}": [rng.choice(labels + ["absent"] if rng.random() < 0.1 else labels)
                       for _ in range(rng.choice([1, 1, 2, 3, 4, 11, 12]))]
             for i in range(rng.randint(1, 25))}
    pool = [*first_label, "x1", "x2"]
    lines = [(query, [rng.choice(pool) for _ in range(rng.choice([0, 1, 5, 10, 30, 100]))])
             for query in [*truth, "unknown"] if rng.random() < 0.9]
    return lines or [("q0", [])], truth, first_label


@pytest.mark.parametrize("seed", range(60))
def test_equals_a_straight_loop_of_the_official_semantics(seed: int) -> None:
    lines, truth, first_label = random_case(seed)
    gallery = GalleryIndex(list(first_label), list(first_label.values()))
    values = evaluate_rankings([ranked for _, ranked in lines],
                               [tuple(truth[q]) if q in truth else None for q, _ in lines], gallery)
    expected = loop_reference(lines, truth, first_label)
    assert {key: values[key] for key in expected} == expected  # bit for bit


def test_standard_keys_match_their_definitions() -> None:
    rng = np.random.default_rng(0)
    first = [f"L{rng.integers(0, 5)}" for _ in range(60)]
    gallery = GalleryIndex([f"g{i}" for i in range(60)], first)
    ranked = [[f"g{i}" for i in rng.permutation(60)[:20]] for _ in range(30)]
    labels = [(f"L{rng.integers(0, 5)}",) for _ in range(30)]
    values = evaluate_rankings(ranked, labels, gallery)
    for k in (1, 5, 10):
        hit = [any(first[int(x[1:])] == lab[0] for x in r[:k]) for r, lab in zip(ranked, labels)]
        assert values[f"Recall@{k}"] == pytest.approx(np.mean(hit))
    aps = []
    for r, lab in zip(ranked, labels):
        big_r = first.count(lab[0])
        rel = [first[int(x[1:])] == lab[0] for x in r[:big_r]]
        aps.append(sum(sum(rel[:i + 1]) / (i + 1) for i, hit in enumerate(rel) if hit) / big_r)
    assert values["mAP@R"] == pytest.approx(np.mean(aps))


@pytest.mark.parametrize("seed", range(10))
def test_decimal_keys_and_id_strings_score_alike(seed: int) -> None:
    """Rankings read with int64 keys (decimal ids) take the key lookup; the same lists as
    plain strings take the dict lookup; both give the same bits, strays included."""
    from refbench.evaluation.retrieval import decimal_keys

    rng = random.Random(seed)
    first_label = {str(10**6 + i): f"L{rng.randint(0, 5)}" for i in range(200)}
    gallery = GalleryIndex(list(first_label), list(first_label.values()))
    pool = [*first_label, "999", "1000201"]  # two decimal ids that are no gallery item
    texts = [",".join(rng.sample(pool, rng.randint(0, 100))) for _ in range(40)]
    keys = decimal_keys(texts)
    assert keys is not None
    labels = [(f"L{rng.randint(0, 6)}",) for _ in texts]
    keyed = [Ranking(text=t, line=i + 1, keys=k) for i, (t, k) in enumerate(zip(texts, keys))]
    plain = [t.split(",") if t else [] for t in texts]
    assert evaluate_rankings(keyed, labels, gallery) == evaluate_rankings(plain, labels, gallery)


def test_a_leading_zero_is_another_id(gallery: GalleryIndex) -> None:
    decimal = GalleryIndex(["123", "124"], ["A", "A"])
    values = evaluate_rankings([["0123", "124"]], [("A",)], decimal)
    assert values["mAP@10"] == 0.5 and values["mAR@10"] == 0.0  # "0123" is no gallery item
