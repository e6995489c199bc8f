"""Medical-VLBERT's parts: the ResNet region encoder and its weight files, the attention
patterns, the alternate schedule, masking, generation, tokenization, the baseline's
lifecycle (create, alternate training steps, predict, restore) and `init_from`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from refbench.baselines.report.medical_vlbert.baseline import (MODEL_CONFIG,
                                                               MedicalVLBERTBaseline,
                                                               init_weights, read_source)
from refbench.baselines.report.medical_vlbert.generate import beam_search, greedy, length_penalty
from refbench.baselines.report.medical_vlbert.model import MedicalVLBERTConfig, attention_mask
from refbench.baselines.report.medical_vlbert.pretext import TokenIds, mask_tokens
from refbench.baselines.report.medical_vlbert.schedule import AlternateSchedule, StepCounter
from refbench.baselines.report.medical_vlbert.text import build_vocabulary, join_cjk, read_corpus
from refbench.baselines.report.vision import (BackboneConfig, RegionEncoder, ResNet, fold_stem,
                                              load_backbone_weights)
from refbench.config import TrainerConfig, load_recipe
from refbench.engine.checkpoint import MODEL_FILE, OPTIMIZER_FILE, STATE_FILE
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.unit.test_report_floors import BIG_HEART, NORMAL, xray_rows

SPEC = get_spec("iu-xray-r2gen")
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 64, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0, "vocab_size": 200, "max_text_length": 24,
        "backbone": {"depth": 18, "width": 8, "image_size": 32, "grid": 2},
        "beam_size": 2}


@pytest.fixture(scope="module")
def train_rows():
    return xray_rows([("a", [], NORMAL, ["normal"]), ("b", ["cardiomegaly"], BIG_HEART,
                      ["cardiomegaly"]), ("c", [], NORMAL, ["normal"]),
                      ("d", ["cardiomegaly"], BIG_HEART, ["cardiomegaly"])])


def make(tmp: Path, rows, **over) -> MedicalVLBERTBaseline:
    torch.manual_seed(0)
    return MedicalVLBERTBaseline.create({**TINY, **over}, SPEC, rows, tmp)


# -- limits the paper / its references name -------------------------------------------------
def test_recipes_pin_the_published_sizes() -> None:
    iu = load_recipe("medical-vlbert_base_iu-xray")
    model = iu["model"]
    # VL-BERT-base (BERT-base) transformer; R2Gen's IU X-ray max_seq_length 60
    assert (model["hidden_size"], model["num_hidden_layers"], model["num_attention_heads"],
            model["intermediate_size"]) == (768, 12, 12, 3072)
    assert model["max_text_length"] == 60 and iu["data"]["eval_split"] == "validation"
    assert model["backbone"]["depth"] == 50 and model["backbone"]["grid"] == 7
    covid = load_recipe("medical-vlbert_base_covid19-ct-reports")
    assert covid["init_from"].endswith("medical-vlbert_base_cx-chr-reports-cx-chr-reports-s0")
    for name in ("medical-vlbert_tiny_iu-xray", "medical-vlbert_base_cx-chr-reports",
                 "medical-vlbert_tiny_covid19-ct-reports"):
        assert load_recipe(name)["data"]["eval_split"] == "validation"
    assert MedicalVLBERTConfig().mlm_probability == 0.15


def test_length_penalty_is_gnmt() -> None:
    assert length_penalty(1, 1.0) == 1.0
    assert length_penalty(7, 1.0) == 2.0
    assert length_penalty(19, 0.5) == pytest.approx(2.0)
    assert length_penalty(40, 0.0) == 1.0


# -- image encoder ----------------------------------------------------------------------------
@pytest.mark.parametrize("depth, channels", [(18, 8 * 8), (50, 8 * 8 * 4)])
def test_region_encoder_shapes(depth: int, channels: int) -> None:
    enc = RegionEncoder(BackboneConfig(depth=depth, width=8, image_size=64, grid=2)).eval()
    images, mask = torch.rand(3, 2, 2, 64, 64), torch.tensor([[1, 1], [1, 0], [1, 1]])
    regions, boxes, index, region_mask = enc(images, mask)
    assert regions.shape == (3, 8, channels) and boxes.shape == (3, 8, 5)
    assert index[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert region_mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert boxes[0, 3].tolist() == [0.5, 0.5, 1.0, 1.0, 0.25]


def test_standard_weights_load_and_the_stem_fold_keeps_gray_responses(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = ResNet(18, 64, in_channels=3).eval()
    state = {**rgb.state_dict(), "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "resnet18.pth")
    for file in (path, tmp_path / "resnet18.pth"):
        gray = ResNet(18, 64).eval()
        assert load_backbone_weights(gray, file) == len(rgb.state_dict())
        x = torch.rand(1, 1, 64, 64)
        with torch.no_grad():
            assert torch.allclose(gray(x.expand(-1, 2, -1, -1)), rgb(x.expand(-1, 3, -1, -1)),
                                  atol=1e-5)
    assert fold_stem(torch.ones(4, 3, 7, 7), 2).sum(1).allclose(torch.full((4, 7, 7), 3.0))


def test_bad_weight_files_are_one_line_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    for path, match in ((tmp_path / "none.pth", "not found"), (tmp_path, "a folder"),
                        (truncated, "unreadable weight file")):
        with pytest.raises(RefbenchError, match=match) as err:
            load_backbone_weights(ResNet(18, 64), path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    torch.save(ResNet(34, 64).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(RefbenchError, match="do not fit a ResNet"):
        load_backbone_weights(ResNet(18, 64), tmp_path / "r34.pth")


# -- attention patterns and the network -------------------------------------------------------
def test_attention_mask_patterns() -> None:
    source, text = torch.tensor([[1, 1, 0]]), torch.tensor([[1, 1, 1, 0]])
    causal = attention_mask(source, text, causal=True)[0, 0] == 0
    assert causal[:3, 3:].sum() == 0                      # regions never see the report
    assert causal[4].tolist() == [True, True, False, True, True, False, False]
    assert not causal[:, 2].any() or causal[2, 2]         # padding only sees itself
    full = attention_mask(source, text, causal=False)[0, 0] == 0
    assert full[0].tolist() == [True, True, False, True, True, True, False]


def test_terms_and_early_words_do_not_see_later_words(tmp_path: Path, train_rows) -> None:
    model = make(tmp_path, train_rows).eval()
    batch = model.collate(model.encode(train_rows))
    net = model.model
    visual = net.embed_images(batch["images"], batch["image_mask"])
    ids = batch["input_ids"].clone()
    source, text = net.encode(ids, batch["text_mask"], visual, causal=True)
    ids[:, 5:] = model.ids.mask
    source2, text2 = net.encode(ids, batch["text_mask"], visual, causal=True)
    assert torch.allclose(source, source2, atol=1e-6) and torch.allclose(text[:, :5], text2[:, :5], atol=1e-6)
    assert torch.allclose(net.terms(source, visual.mask).logits, net.terms(source2, visual.mask).logits)


# -- alternate schedule and masking -----------------------------------------------------------
def test_alternate_schedule() -> None:
    assert [AlternateSchedule(1, 1).phase(s)[0] for s in range(4)] == list("ktkt")
    assert [AlternateSchedule(2, 3).phase(s)[0] for s in range(7)] == list("kktttkk")
    assert {AlternateSchedule(0, 1).phase(s) for s in range(5)} == {"transfer"}
    assert AlternateSchedule(2, 3).counts(7) == {"knowledge": 4, "transfer": 3}
    counter = StepCounter(grad_accum=2)
    assert [counter.advance() for _ in range(4)] == [False, True, False, True]
    with pytest.raises(ValueError):
        AlternateSchedule(1, 0)


def test_mask_tokens_skips_special_tokens_and_splits_80_10_10() -> None:
    ids = TokenIds(pad=0, cls=2, sep=3, mask=4, unk=1, vocab_size=50)
    torch.manual_seed(0)
    input_ids = torch.randint(5, 50, (200, 50))
    input_ids[:, 0] = input_ids[:, -1] = 3
    masked, labels = mask_tokens(input_ids, torch.ones_like(input_ids), ids, 1.0)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any() and chosen[:, 1:-1].all()
    share = (masked[chosen] == 4).float().mean().item()
    kept = (masked[chosen] == input_ids[chosen]).float().mean().item()
    assert abs(share - 0.8) < 0.02 and 0.09 < kept < 0.13  # 10% kept (+ random hits)
    _, labels = mask_tokens(input_ids, torch.ones_like(input_ids), ids, 0.15)
    assert abs((labels != -100).float().mean().item() / (48 / 50) - 0.15) < 0.01


# -- the baseline -------------------------------------------------------------------------------
def test_training_alternates_and_predictions_fit_the_format(tmp_path: Path, train_rows) -> None:
    model = make(tmp_path, train_rows, knowledge_steps=1, transfer_steps=2)
    optimizer = model.configure_optimizer(TrainerConfig(lr=1e-3))
    batch = model.collate(model.encode(train_rows))
    phases = []
    for _ in range(3):
        phases.append(model.phase())
        out = model.training_step(batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        assert ("mlm" in out) == (phases[-1] == "knowledge") and torch.isfinite(out["loss"])
    assert phases == ["knowledge", "transfer", "transfer"] and int(model.schedule_step) == 3
    model.eval()
    preds = model.predict(batch)
    assert [p.id for p in preds] == ["a", "b", "c", "d"]
    for p in preds:
        assert p.value.report.strip() and len(p.value.report.split()) <= TINY["max_text_length"]
        assert [t for t, _ in p.value.term_scores] == ["cardiomegaly", "normal"]
    again = MedicalVLBERTBaseline.restore({}, SPEC, tmp_path)
    again.load_state_dict(model.state_dict())
    assert int(again.schedule_step) == 3
    assert [p.value for p in again.eval().predict(batch)] == [p.value for p in preds]


def test_beam_of_one_is_greedy_and_never_writes_banned_tokens(tmp_path: Path, train_rows) -> None:
    model = make(tmp_path, train_rows).eval()
    batch = model.collate(model.encode(train_rows))
    visual = model.model.embed_images(batch["images"], batch["image_mask"])
    first = greedy(model.model, visual, model.ids, 10)
    assert beam_search(model.model, visual, model.ids, 10, 1, 1.0) == first
    for words in first + beam_search(model.model, visual, model.ids, 10, 3, 0.6):
        assert 1 <= len(words) <= 8
        assert not set(words) & {model.ids.pad, model.ids.cls, model.ids.mask, model.ids.unk,
                                 model.ids.sep}


def test_knowledge_corpus_feeds_the_knowledge_steps(tmp_path: Path, train_rows) -> None:
    corpus = tmp_path / "textbook.txt"
    corpus.write_text("The heart is enlarged.\n\nThe lungs are clear.\n", encoding="utf-8")
    model = make(tmp_path / "run", train_rows, knowledge_corpus=str(corpus))
    assert len(model.corpus) == 2
    assert torch.isfinite(model.training_step(model.collate(model.encode(train_rows)))["loss"])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe\n")
    with pytest.raises(RefbenchError, match="UTF-8") as err:
        read_corpus(bad)
    assert err.value.line == 2
    with pytest.raises(RefbenchError, match="not found"):
        read_corpus(tmp_path / "absent.txt")


def test_config_errors_name_their_key(train_rows) -> None:
    for over, key in (({"hidden_size": 33}, "model.hidden_size"),
                      ({"transfer_steps": 0}, "model.transfer_steps"),
                      ({"max_text_length": 2}, "model.max_text_length")):
        with pytest.raises(RefbenchError) as err:
            MedicalVLBERTBaseline.validate_config({**TINY, **over}, SPEC)
        assert err.value.key == key
    with pytest.raises(RefbenchError, match="writes reports"):
        MedicalVLBERTBaseline.validate_config(TINY, get_spec("product1m-dev"))


def test_a_study_without_images_is_refused(tmp_path: Path, train_rows) -> None:
    rows = train_rows.map(lambda r: {"images": [], "has_images": False})
    model = make(tmp_path, train_rows)
    with pytest.raises(RefbenchError, match="study a has no images"):
        model.collate(model.encode(rows)[0:1])


# -- text and init_from -------------------------------------------------------------------------
def test_chinese_is_character_level_and_decodes_without_spaces(tmp_path: Path) -> None:
    vocab = build_vocabulary(["双肺纹理清晰，未见异常。"], 100, True)
    assert "肺" in vocab and "##肺" in vocab and "双肺" not in vocab
    assert join_cjk("双 肺 纹 理 清 晰 ， 未 见 ct 异 常 。") == "双肺纹理清晰，未见ct异常。"
    extended = build_vocabulary(["右肺见结节影。"], 100, True, base=vocab)
    assert extended[:len(vocab)] == vocab and "结" in extended[len(vocab):]


def test_init_from_copies_rows_by_token_and_term(tmp_path: Path, train_rows) -> None:
    from safetensors.torch import save_file

    source = make(tmp_path / "src", train_rows)
    ckpt = tmp_path / "src" / "checkpoints" / "step-00000001"
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(ckpt / MODEL_FILE))
    for name in (OPTIMIZER_FILE, STATE_FILE):  # what makes the folder a complete checkpoint
        (ckpt / name).write_text("{}")
    other = xray_rows([("x", ["effusion_left"], "There is a left pleural effusion.",
                        ["pleural effusion", "normal"]), ("y", [], NORMAL, ["normal"])])
    target = MedicalVLBERTBaseline.create({**TINY, "backbone": {**TINY["backbone"], "image_size": 48}},
                                          SPEC, other, tmp_path / "dst", init_from=str(ckpt))
    src_vocab, dst_vocab = source.tokenizer.get_vocab(), target.tokenizer.get_vocab()
    assert all(dst_vocab[t] == i for t, i in src_vocab.items())  # source order kept
    assert "pleural" in dst_vocab and "pleural" not in src_vocab
    emb_s, emb_t = source.model.word_embeddings.weight, target.model.word_embeddings.weight
    assert torch.equal(emb_t[src_vocab["heart"]], emb_s[src_vocab["heart"]])
    assert target.terms == ["normal", "pleural effusion"]
    assert torch.equal(target.model.term_query[0], source.model.term_query[source.terms.index("normal")])
    assert torch.equal(target.model.layers[0].qkv.weight, source.model.layers[0].qkv.weight)
    assert read_source(tmp_path / "src")["path"] == ckpt
    config = json.loads((tmp_path / "src" / MODEL_CONFIG).read_text())
    with pytest.raises(RefbenchError, match="hidden_size") as err:
        MedicalVLBERTBaseline.create({**TINY, "hidden_size": 64}, SPEC, other, tmp_path / "bad",
                                     init_from=str(ckpt))
    assert err.value.key == "model.hidden_size" and config["hidden_size"] == 32
    with pytest.raises(RefbenchError, match="run folder"):
        init_weights(target, read_source(tmp_path / "nowhere"))
    assert np.isfinite(target.model.lm_bias.detach().numpy()).all()
