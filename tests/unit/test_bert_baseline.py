"""The BERT baseline: deterministic local tokenizer, batching, heads, loss going down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refbench.baselines.nlp.bert import Bert, build_wordpiece_vocab
from refbench.registry import get_spec
from refbench.datasets.base import get_builder, load_prepared

TEXTS = ["The cat sat on the mat.", "A dog ran; the dog barked!", "Unbelievable tokens appear."]


def test_vocab_is_identical_across_processes() -> None:
    """The `tokenizers` trainer breaks ties in hash order; ours must not."""
    code = ("from refbench.baselines.nlp.bert import build_wordpiece_vocab as b;"
            f"print(sorted(b({TEXTS!r} * 3, 40, True).items()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}
    assert len(outs) == 1


def test_vocab_holds_specials_characters_and_frequent_words() -> None:
    vocab = build_wordpiece_vocab(iter(TEXTS), 200, lowercase=True)
    assert list(vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "##t" in vocab and "the" in vocab and "dog" in vocab
    assert "The" not in vocab  # lower-cased
    small = build_wordpiece_vocab(iter(TEXTS), 10, lowercase=True)
    assert "the" not in small and "t" in small  # characters are always kept


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bert")
    builder = get_builder("glue")
    root = builder.synthesize(base / "glue", n=64, seed=0)
    builder.prepare(root, base / "cache", configs=["mrpc", "stsb"])
    return base


@pytest.mark.parametrize("bench, regression", [("glue-mrpc", False), ("glue-stsb", True)])
def test_create_encode_collate_predict_and_learn(prepared: Path, bench: str, regression: bool) -> None:
    spec = get_spec(bench)
    rows = load_prepared("glue", split="train", config=spec.dataset.config,
                         cache_dir=str(prepared / "cache"))
    cfg = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "intermediate_size": 64, "vocab_size": 300, "max_length": 24}
    torch.manual_seed(0)
    run = prepared / bench
    model = Bert.create(cfg, spec, rows, run)
    feats = model.encode(rows)
    assert all(len(f["input_ids"]) <= 24 for f in feats)
    tok = model.tokenizer
    first = feats[0]["input_ids"]
    assert first[0] == tok.cls_token_id and first.count(tok.sep_token_id) == 2  # a pair
    batch = model.collate(feats[:8])
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["labels"].dtype == (torch.float32 if regression else torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model.training_step(model.collate(feats[:16]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    preds = model.predict(batch)
    assert [p.id for p in preds] == batch["idx"].tolist()
    assert all(isinstance(p.value, float if regression else int) for p in preds)
    # restore rebuilds the same architecture and tokenizer from the run folder
    again = Bert.restore(cfg, spec, run)
    again.load_state_dict(model.state_dict())
    again.eval()
    assert [p.value for p in again.predict(batch)] == [p.value for p in preds]
