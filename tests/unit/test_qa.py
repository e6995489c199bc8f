"""Extractive-QA windows and n-best / null-score post-processing."""

from __future__ import annotations

from pathlib import Path

import datasets as hf_datasets
import pytest

from refbench.baselines.nlp.bert import train_wordpiece
from refbench.baselines.nlp.qa import QAConfig, collate_qa, encode_squad, postprocess

CONTEXT = ("The young sailor bought a red kettle in the old harbour market on Monday. "
           "Later the baker sold bread to the tall teacher near the station. ") * 3
ROWS = [
    {"id": "q1", "question": "What did the sailor buy?", "context": CONTEXT,
     "answers": {"text": ["a red kettle"], "answer_start": [CONTEXT.index("a red kettle")]},
     "is_impossible": False},
    {"id": "q2", "question": "Who sold bread?", "context": CONTEXT,
     "answers": {"text": ["the baker"], "answer_start": [CONTEXT.rindex("the baker")]},
     "is_impossible": False},
    {"id": "q3", "question": "Who flew the plane?", "context": CONTEXT,
     "answers": {"text": [], "answer_start": []}, "is_impossible": True},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tok")
    train_wordpiece(iter([r["question"] for r in ROWS] + [CONTEXT]), 200, True, folder)
    return AutoTokenizer.from_pretrained(str(folder))


def rows() -> hf_datasets.Dataset:
    return hf_datasets.Dataset.from_list(ROWS)


def test_windows_overlap_and_positions_point_at_the_answer(tokenizer) -> None:
    cfg = QAConfig(max_length=48, doc_stride=16, max_query_length=8)
    feats = encode_squad(tokenizer, rows(), cfg)
    by_example: dict[int, list[dict]] = {}
    for f in feats:
        assert len(f["input_ids"]) <= 48
        by_example.setdefault(f["example_index"], []).append(f)
    assert all(len(v) > 1 for v in by_example.values())  # the context needs several windows
    for example, windows in by_example.items():
        row = ROWS[example]
        hits = [w for w in windows if w["start_position"] > 0]
        if row["is_impossible"]:
            assert not hits
            continue
        assert hits, row["id"]
        for w in hits:
            start, end = w["offsets"][w["start_position"]][0], w["offsets"][w["end_position"]][1]
            assert CONTEXT[start:end] == row["answers"]["text"][0]
            assert start == row["answers"]["answer_start"][0]
        # a window that does not hold the whole answer points at [CLS]
        assert any(w["start_position"] == 0 == w["end_position"] for w in windows)


def test_long_questions_are_cut(tokenizer) -> None:
    long_row = dict(ROWS[0], question="what " * 40 + "did the sailor buy ?")
    feats = encode_squad(tokenizer, hf_datasets.Dataset.from_list([long_row]),
                         QAConfig(max_length=64, doc_stride=16, max_query_length=6))
    first_sep = feats[0]["input_ids"].index(tokenizer.sep_token_id)
    assert first_sep == 1 + 6


def _logits_for(feats, target: dict[int, tuple[int, int]], null: float = 0.0):
    out = {}
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        starts, ends = [0.0] * n, [0.0] * n
        starts[0] = ends[0] = null
        if i in target:
            s, e = target[i]
            starts[s], ends[e] = 5.0, 5.0
        out[i] = (starts, ends)
    return out


def test_postprocess_picks_best_span_and_null(tokenizer) -> None:
    cfg = QAConfig(max_length=48, doc_stride=16, max_query_length=8, n_best=5, max_answer_length=10)
    feats = encode_squad(tokenizer, rows(), cfg)
    targets = {}
    for i, f in enumerate(feats):
        if f["start_position"] > 0 and f["example_index"] not in {feats[k]["example_index"] for k in targets}:
            targets[i] = (f["start_position"], f["end_position"])
    out = postprocess(rows(), feats, _logits_for(feats, targets), cfg, version2=False)
    assert out["q1"]["text"] == "a red kettle" and out["q2"]["text"] == "the baker"
    assert out["q1"]["na_prob"] is None
    # v2.0: a strong null score everywhere answers "" and gives a high na_prob
    out2 = postprocess(rows(), feats, _logits_for(feats, {}, null=20.0), cfg, version2=True)
    assert all(v["text"] == "" for v in out2.values())
    assert all(v["na_prob"] > 0.99 for v in out2.values())
    out3 = postprocess(rows(), feats, _logits_for(feats, targets, null=-20.0), cfg, version2=True)
    assert out3["q1"]["text"] == "a red kettle" and out3["q1"]["na_prob"] < 0.01


def test_spans_longer_than_max_answer_length_are_skipped(tokenizer) -> None:
    cfg = QAConfig(max_length=48, doc_stride=16, max_query_length=8, n_best=5, max_answer_length=1)
    feats = encode_squad(tokenizer, rows(), cfg)
    i = next(k for k, f in enumerate(feats) if f["start_position"] > 0
             and f["end_position"] > f["start_position"])
    f = feats[i]
    out = postprocess(rows(), feats, _logits_for(feats, {i: (f["start_position"], f["end_position"])}),
                      cfg, version2=False)
    answer = out[ROWS[f["example_index"]]["id"]]["text"]
    assert answer != ROWS[f["example_index"]]["answers"]["text"][0]


def test_collate_pads_and_keeps_positions(tokenizer) -> None:
    feats = encode_squad(tokenizer, rows(), QAConfig(max_length=48, doc_stride=16, max_query_length=8))
    batch = collate_qa(feats[:3], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["start_positions"].tolist() == [f["start_position"] for f in feats[:3]]


def test_bert_squad_cli_smoke(tmp_path: Path) -> None:
    from refbench.cli import main

    def cli(args: list[str]) -> None:
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code in (0, None)

    cli(["datasets", "synthesize", "squad", "--out", str(tmp_path / "src"), "--n", "120"])
    cli(["datasets", "prepare", "squad", "--root", str(tmp_path / "src"), "--cache-dir",
         str(tmp_path / "cache")])
    cli(["train", "bert", "--benchmark", "squad-v2.0", "--recipe", "bert_tiny_squad", "--max-steps",
         "20", "--output-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
         "--name", "qa", "--set", "trainer.progress=false", "--set", "trainer.eval_every=10"])
    run = tmp_path / "runs" / "qa"
    assert (run / "predictions" / "predictions.json").exists()
    assert (run / "predictions" / "predictions.na_prob.json").exists()
    out = tmp_path / "pred.json"
    cli(["predict", str(run), "--split", "validation", "--output", str(out), "--cache-dir",
         str(tmp_path / "cache")])
    cli(["evaluate", "squad-v2.0", "--predictions", str(out), "--references",
         str(tmp_path / "src" / "dev-v2.0.json"), "--na-prob-file",
         str(tmp_path / "pred.na_prob.json"), "--output", str(tmp_path / "r.json")])
    import json

    result = json.loads((tmp_path / "r.json").read_text())
    assert result["metrics"]["total"] > 0 and result["directions"]["total"] == "none"


def test_doc_spans_follow_bert_stride_semantics() -> None:
    from refbench.baselines.nlp.qa import doc_spans, max_context_flags

    # 10 tokens, windows of 4, starts 3 apart (BERT: start += min(length, doc_stride))
    assert doc_spans(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert doc_spans(3, 4, 2) == [(0, 3)]
    assert doc_spans(0, 4, 2) == [(0, 0)]
    spans = doc_spans(10, 4, 2)
    assert spans == [(0, 4), (2, 4), (4, 4), (6, 4)]
    # token 3 is in spans 0 (left 3, right 0) and 1 (left 1, right 2): span 1 wins
    assert max_context_flags(spans, 0) == [True, True, True, False]
    assert max_context_flags(spans, 1)[1] is True
