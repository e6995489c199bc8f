"""Size and CPU latency of the EfficientBERT student versus BERT-base, in one process.

The paper claims EfficientBERT is 6.9x smaller and 4.4x faster than BERT-base. Both models
here are randomly initialised (weights do not change size or speed) with a 2-class head and
the uncased 30522-token vocabulary:

- EfficientBERT: `refbench.baselines.nlp.efficientbert.model` with the published configuration
  (6 layers, hidden 540, 12 heads, embedding 128, the six searched FFNs);
- BERT-base: transformers `BertForSequenceClassification`, 12 layers, 768, 12 heads, 3072.

Parameters are printed three ways: all parameters; the official way (configs.py
`param_list`, which sums embeddings + fit-dense + attention + FFNs and leaves out pooler and
classifier; BERT-base is then its 109.5M backbone with pooler, the figure papers cite);
and without embeddings (the transformer layers only). Latency: sequence length 128, batch 1
and 8, `torch.inference_mode`, after warm-up runs; the two models alternate run by run and
the median of `--repeats` runs is reported. The student's forward is the inference path
(no fit-dense projection, which only distillation uses).

    python perf/efficientbert.py [--repeats 7] [--warmup 2] [--threads N] [--attn sdpa|eager]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from refbench.baselines.nlp.efficientbert.encoder import EfficientBertConfig
from refbench.baselines.nlp.efficientbert.model import EfficientBertClassifier

SEQ_LEN, VOCAB = 128, 30522
TARGET_SIZE, TARGET_SPEED = 6.9, 4.4


def build_models(attn: str) -> tuple[EfficientBertClassifier, torch.nn.Module]:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    student = EfficientBertClassifier(EfficientBertConfig(), vocab_size=VOCAB, num_labels=2).eval()
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12, intermediate_size=3072, num_labels=2,
                     attn_implementation=attn)
    bert = BertForSequenceClassification(cfg).eval()
    return student, bert


def count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_rows(student: EfficientBertClassifier,
                   bert: torch.nn.Module) -> list[tuple[str, int, int]]:
    core = bert.bert  # type: ignore[attr-defined]
    return [
        ("all parameters (with pooler + classifier)", count(student), count(bert)),
        ("official param_list way (emb + fit-dense + layers; BERT-base: backbone)",
         student.paper_parameter_count(), count(core)),
        ("without embeddings (transformer layers only)",
         count(student.encoder.layers), count(core.encoder)),
    ]


def inputs(batch: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(batch)
    ids = torch.randint(1000, VOCAB, (batch, SEQ_LEN), generator=gen)
    return {"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
            "attention_mask": torch.ones_like(ids)}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency(student: EfficientBertClassifier, bert: torch.nn.Module, batch: int, repeats: int,
            warmup: int, eager: bool) -> tuple[float, float]:
    """Median seconds per forward of each model, the runs interleaved. `eager`: the student
    computes its attention scores explicitly, like the official code."""
    data = inputs(batch)
    runs = {"student": lambda: student(data, output_attentions=eager),
            "bert": lambda: bert(**data)}
    times: dict[str, list[float]] = {"student": [], "bert": []}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in runs.values():
                fn()
        for i in range(repeats):
            order = ("student", "bert") if i % 2 == 0 else ("bert", "student")
            for name in order:
                times[name].append(timed(runs[name]))
    return statistics.median(times["student"]), statistics.median(times["bert"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa",
                        help="BERT attention kernel; the student uses the matching path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    student, bert = build_models(args.attn)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, attention {args.attn} "
          f"(BERT: {bert.config._attn_implementation}), "
          f"seq len {SEQ_LEN}, vocab {VOCAB}")
    print(f"\n{'parameters (M)':<76} {'EfficientBERT':>13} {'BERT-base':>10} {'ratio':>7}")
    for label, s, b in parameter_rows(student, bert):
        print(f"  {label:<74} {s / 1e6:13.2f} {b / 1e6:10.2f} {b / s:6.2f}x")
    print(f"  paper target: {TARGET_SIZE}x smaller")
    print(f"\n{'CPU latency (ms, median)':<76} {'EfficientBERT':>13} {'BERT-base':>10} "
          f"{'ratio':>7}")
    for batch in (1, 8):
        s, b = latency(student, bert, batch, args.repeats, args.warmup, args.attn == "eager")
        print(f"  {f'batch {batch}':<74} {s * 1e3:13.1f} {b * 1e3:10.1f} {b / s:6.2f}x")
    print(f"  paper target: {TARGET_SPEED}x faster")


if __name__ == "__main__":
    main()
