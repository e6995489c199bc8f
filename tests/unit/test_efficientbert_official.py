"""`refbench train efficientbert --init-from DIR`: an official EfficientBERT checkpoint
(`cheneydon/efficient-bert`'s `{'state_dict': ...}` of a DistributedDataParallel model, the
repo's own key names, four full-width FFN blocks per layer) plus its `vocab.txt`.

The checkpoints are written here in the official layout from an independently written key
table (the names of `models/auto_bert.py`, `models/bert.py`, `models/mobile_bert.py`), so
these tests need no download: the student must then compute what the supernet holding the
same tensors computes for its architecture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from refbench.baselines.nlp.efficientbert.encoder import EfficientBertConfig
from refbench.baselines.nlp.efficientbert.model import EfficientBertClassifier
from refbench.baselines.nlp.efficientbert.supernet import Architecture, EfficientBertSupernet
from refbench.errors import RefbenchError
from refbench.registry import get_spec
from tests.helpers import assert_computes_like_supernet

EXPRESSIONS = ["tanh(linear4_2(gelu(linear4_2(x,wb1)),wb2))",
               "linear1_2(relu(mul(linear1_2(x,wb1),x)),wb2)"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "film", "is", "not", "good",
         "bad", "very", "plot", "acting", ",", "but", "."] + [f"w{i}" for i in range(23)]
FIT = 48


def _model_cfg(**change: Any) -> dict[str, Any]:
    cfg = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "embedding_size": 32,
           "ffn_expressions": EXPRESSIONS, "vocab_size": len(WORDS), "max_length": 16,
           "teacher_hidden_size": FIT}
    return {**cfg, **change}


def _official_name(ours: str) -> str:
    """refbench's supernet name -> the official AutoBert name, written out per module."""
    parts = ours.split(".")
    if parts[0] == "layers" and parts[2] == "blocks":  # layers.i.blocks.k.X
        return ".".join(["encoder", parts[1], "all_ffn", parts[3], *parts[4:]])
    if parts[0] == "layers":  # layers.i.attention.X
        return ".".join(["encoder", *parts[1:]])
    if parts[:2] == ["fit_dense", "dense"]:
        return "fit_dense." + parts[2]
    if parts[0] == "pooler":
        return "cls_pooler.dense." + parts[1]
    return ours  # embeddings.*, classifier.*


def _supernet(num_labels: int = 2) -> EfficientBertSupernet:
    torch.manual_seed(3)
    cfg = EfficientBertConfig(**_model_cfg())
    net = EfficientBertSupernet(cfg, len(WORDS), num_labels, FIT)
    with torch.no_grad():  # every tensor away from its init, so a skipped copy shows
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def _write(folder: Path, net: EfficientBertSupernet, head: bool = True, vocab: bool = True,
           extra: dict[str, torch.Tensor] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {f"module.{_official_name(k)}": v.clone() for k, v in net.state_dict().items()
             if head or not k.startswith(("pooler.", "classifier."))}
    state["module.lm_head.dense.weight"] = torch.zeros(64, 64)  # pre-training's LM head
    state.update(extra or {})
    torch.save({"state_dict": state, "epoch": 9, "best_score": 0.5}, folder / "best_model.bin")
    if vocab:
        (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    return folder


def _batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(WORDS), (3, 16), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}


def _create(tmp_path: Path, init_from: Path, name: str = "run", **change: Any
            ) -> EfficientBertClassifier:
    return EfficientBertClassifier.create(_model_cfg(**change), get_spec("glue-sst2"), None,
                                          tmp_path / name, str(init_from)).eval()


def test_a_finetuned_official_checkpoint_computes_what_the_supernet_computes(
        tmp_path: Path) -> None:
    net = _supernet()
    student = _create(tmp_path, _write(tmp_path / "ckpt", net))
    assert_computes_like_supernet(student, net, _batch(), Architecture.parse(EXPRESSIONS))
    # the tokenizer is the checkpoint's vocab.txt, lower-cased as BERT-base uncased
    assert student.tokenizer.convert_ids_to_tokens(
        student.tokenizer("The FILM")["input_ids"]) == ["[CLS]", "the", "film", "[SEP]"]
    assert (tmp_path / "run" / "model_config.json").is_file()


def test_a_pretrained_checkpoint_keeps_a_fresh_head(tmp_path: Path) -> None:
    """A pre-trained student (no task head) and a student fine-tuned on a 3-class task
    both load their encoder; the SST-2 head stays fresh."""
    net = _supernet()
    arch = Architecture.parse(EXPRESSIONS)
    batch = _batch()
    with torch.no_grad():
        theirs = net(batch, arch)
    mnli = _supernet(num_labels=3)  # the same encoder, a 3-class head
    mnli.load_state_dict({k: v for k, v in net.state_dict().items()
                          if not k.startswith("classifier.")}, strict=False)
    for name, source in (("pre", _write(tmp_path / "pre", net, head=False)),
                         ("mnli", _write(tmp_path / "mnli", mnli))):
        student = _create(tmp_path, source, name)
        with torch.no_grad():
            mine = student(batch, output_attentions=True)
            hidden = student.fit_dense(mine.encoder.hidden_states)
        for a, b in zip(hidden, theirs.hidden_states):
            assert torch.allclose(a, b, atol=1e-5), name
        assert not torch.allclose(mine.logits, theirs.logits, atol=1e-3), name


def test_bad_checkpoints_are_one_line_errors_that_write_nothing(tmp_path: Path) -> None:
    net = _supernet()
    good = _write(tmp_path / "good", net)
    two = _write(tmp_path / "two", net)
    (two / "best_model.bin").rename(two / "ckpt_ep1.bin")
    (two / "ckpt_ep2.bin").write_bytes((two / "ckpt_ep1.bin").read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = _write(tmp_path / "corrupt", net)
    (corrupt / "best_model.bin").write_bytes((good / "best_model.bin").read_bytes()[:200])
    unknown = _write(tmp_path / "unknown", net,
                     extra={"module.encoder.0.adapter.weight": torch.zeros(2)})
    novocab = _write(tmp_path / "novocab", net, vocab=False)
    shortvocab = _write(tmp_path / "shortvocab", net)
    (shortvocab / "vocab.txt").write_text("\n".join(WORDS[:-3]) + "\n")
    repeated = _write(tmp_path / "repeated", net)
    (repeated / "vocab.txt").write_text("\n".join(WORDS[:-1] + ["film"]) + "\n")
    code = tmp_path / "code"
    code.mkdir()
    torch.save({"state_dict": {"x": Path("a")}}, code / "best_model.bin")  # a pickled object
    cases = [(tmp_path / "missing", {}, "no such checkpoint"),
             (empty, {}, "no EfficientBERT checkpoint here"),
             (two, {}, "2 checkpoint files here"),
             (corrupt, {}, "cannot read the checkpoint"),
             (code, {}, "cannot read the checkpoint"),
             (unknown, {}, "unexpected tensor 'module.encoder.0.adapter.weight'"),
             (novocab, {}, "no vocab.txt beside the checkpoint"),
             (shortvocab, {"vocab_size": len(WORDS) - 3}, "embeds 40 tokens"),
             (repeated, {}, "line 40: token 'film' repeats line 7"),
             (good, {"hidden_size": 32}, r"another student size \(embeddings.segment_"
              r"embeddings.weight is \[2, 64\] there, \[2, 32\] in this student\)"),
             (good, {"num_layers": 1, "ffn_expressions": EXPRESSIONS[:1]},
              "has an extra tensor layers.1"),
             (good, {"init_supernet": str(tmp_path / "s.safetensors")}, "not both")]
    for i, (source, change, message) in enumerate(cases):
        with pytest.raises(RefbenchError, match=message) as info:
            _create(tmp_path, source, f"bad{i}", **change)
        assert "\n" not in str(info.value), message
        assert not (tmp_path / f"bad{i}" / "model_config.json").exists(), message


@pytest.mark.parametrize("baseline, recipe, message", [
    ("efficientbert", "efficientbert_tiny_glue", "no such checkpoint file or folder"),
    ("bert", "bert_tiny_glue", "not a local checkpoint folder")])
def test_cli_refuses_a_bad_init_from_before_writing_the_run(tmp_path: Path, baseline: str,
                                                            recipe: str, message: str) -> None:
    """The runner asks the family (`check_init_from`) before it writes config.yaml."""
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "refbench", "train", baseline, "--benchmark", "glue-sst2",
         "--recipe", recipe, "--output-dir", str(out), "--name", "x",
         "--cache-dir", str(tmp_path / "cache"), "--init-from", str(tmp_path / "nothing")],
        capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_a_checkpoint_of_another_size_before_writing_the_run(tmp_path: Path) -> None:
    source = _write(tmp_path / "ckpt", _supernet())
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "refbench", "train", "efficientbert", "--benchmark", "glue-sst2",
         "--recipe", "efficientbert_tiny_glue", "--output-dir", str(out), "--name", "x",
         "--cache-dir", str(tmp_path / "cache"), "--init-from", str(source),
         "--set", "model.hidden_size=32"], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "another student size" in proc.stderr and not out.exists()
