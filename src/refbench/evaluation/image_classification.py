"""Image classification accuracy: top-1 and top-5 in percent, and the mean per-class accuracy.

What the reference code computes. Pi-NAS reports ImageNet top-1 / top-5 with
PyTorch-Encoding's `encoding.utils.accuracy` (the same as the PyTorch ImageNet example's):
the k best classes of each image by score (`output.topk(k)`), an image counts when its
label is among them, and the count is divided by the number of images and multiplied by
100. The ILSVRC2012 devkit's `eval_flat.m` scores a submission of up to 5 ranked labels
per image the same way, as an error (1 - accuracy): a line with fewer than 5 labels is
padded with labels that match nothing, so its missing guesses are simply misses; k
guesses are the first k labels of a line. refbench reports accuracies (`top1`, `top5`),
which are 100 minus the devkit's flat errors for 1 and 5 guesses.

- `top1`: percentage of images whose first label is the true class.
- `top5`: percentage whose true class is among the first five labels. Reported only when
  every prediction ranks at least five labels (or gives per-class scores, from which the
  five best are taken) and there are at least five classes: a file of single labels has
  no top-5, and refbench does not invent one (the result says why it is absent).
- `mean_class_accuracy`: the top-1 accuracy of each class that has images, averaged over
  those classes (scikit-learn's `balanced_accuracy_score`), in percent.

A missing prediction (None) is an image whose guesses are all wrong. Scores are ranked
best first with ties broken by the lower class index (a stable sort; `torch.topk` leaves
ties unspecified). Labels of a prediction are class indices, or class names resolved
against the label set of the references (`ClassRef.classes`): a token that is one of the
names is that class, else a decimal integer is an index, so where the names are digits
('0'..'9') the two readings agree. An unknown name, an index outside the classes, a
repeated label, scores of the wrong length or with NaN are one-line errors naming the
prediction's file and line (or id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.base import Metric
from refbench.registry import METRICS

#: how many guesses top-5 allows (and the most the devkit reads per line)
TOP_K = 5
#: a padding label that matches no class: the devkit's zero-filled missing guesses
NO_GUESS = -1
#: below this many images one image moves the accuracy by more than one point
FEW_IMAGES = 100


class ClassNames:
    """The label set of the references, in label order (label i is `names[i]`); its repr
    is a digest, so the scorer's label-set hash covers the names without repeating them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(str(n) for n in names)
        self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise RefbenchError("the label set names a class twice")
        self.digest = hashlib.sha256("\n".join(self.names).encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassNames) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"ClassNames({len(self.names)} classes, sha256 {self.digest[:16]})"


@dataclass(frozen=True)
class ClassRef:
    """A reference label: the class index and, when known, the label set it indexes."""

    index: int
    classes: ClassNames | None = None


@dataclass(frozen=True, eq=False)
class Guesses:
    """One image's prediction as a file gives it: ranked `labels` (best first; class
    indices or tokens to resolve against the label set), or per-class `scores`; and where
    it came from (`path`, `line`, `id`), so errors name the file and line."""

    labels: tuple[int | str, ...] = ()
    scores: np.ndarray | None = field(default=None, repr=False)
    path: str | None = None
    line: int | None = None
    id: str = ""

    def error(self, message: str) -> RefbenchError:
        """A one-line error about this prediction, naming its file and line (or id)."""
        key = None if self.line is not None or not self.id else f"id {self.id}"
        text = message if self.line is None or not self.id else f"id {self.id}: {message}"
        return RefbenchError(text, path=self.path, line=self.line, key=key)


def resolve_token(token: int | str, classes: ClassNames | None, num_classes: int | None,
                  where: Guesses) -> int:
    """A label of a prediction as a class index (module docstring: names first, then
    decimal indices); `NO_GUESS` passes through as the devkit's padding."""
    if isinstance(token, (bool, np.bool_)):
        raise where.error(f"label {token!r} is neither a class index nor a class name")
    if isinstance(token, (str, np.str_)):
        text = str(token)
        if classes is not None and text in classes.index:
            return classes.index[text]
        if not (text.isascii() and text.isdigit()):
            known = "" if classes is None else f" (names like {', '.join(classes.names[:3])})"
            raise where.error(f"label {text!r:.40} is not a class name of the references"
                              f"{known} nor a class index")
        token = int(text)
    if not isinstance(token, (int, np.integer)):
        raise where.error(f"label {token!r:.40} is neither a class index nor a class name")
    index = int(token)
    if index == NO_GUESS:
        return index
    if index < 0 or (num_classes is not None and index >= num_classes):
        upper = "" if num_classes is None else f"..{num_classes - 1}"
        raise where.error(f"class index {index} is out of range 0{upper}")
    return index


def ranked(prediction: Any, classes: ClassNames | None, num_classes: int | None
           ) -> tuple[tuple[int, ...], int]:
    """(the first `TOP_K` guesses as class indices, how many guesses the prediction gives:
    its label count, or the class count for scores). None gives ((), 0)."""
    if prediction is None:
        return (), 0
    where = prediction if isinstance(prediction, Guesses) else Guesses()
    if isinstance(prediction, Guesses) and prediction.scores is not None:
        prediction = prediction.scores
    elif isinstance(prediction, Guesses):
        prediction = prediction.labels
    if isinstance(prediction, np.ndarray) and prediction.dtype.kind == "f":
        scores = prediction
        if scores.ndim != 1 or scores.size == 0:
            raise where.error(f"scores must be one non-empty row, got shape {scores.shape}")
        if num_classes is not None and scores.size != num_classes:
            raise where.error(f"{scores.size} scores for {num_classes} classes")
        if not np.isfinite(scores).all():
            raise where.error(f"score {int(np.flatnonzero(~np.isfinite(scores))[0])} is NaN "
                              f"or infinite")
        order = np.argsort(-scores, kind="stable")[:TOP_K]
        return tuple(int(i) for i in order), int(scores.size)
    if isinstance(prediction, (int, str, np.integer, np.str_, ClassRef)):
        prediction = (prediction,)
    if isinstance(prediction, np.ndarray):
        prediction = prediction.tolist()
    if not isinstance(prediction, (tuple, list)) or not prediction:
        raise where.error(f"expected a label, ranked labels or scores, got "
                          f"{type(prediction).__name__}")
    labels = [resolve_token(t.index if isinstance(t, ClassRef) else t, classes, num_classes,
                            where) for t in prediction]
    if labels[0] == NO_GUESS:
        raise where.error("the first guess is empty")
    real = [x for x in labels if x != NO_GUESS]
    if len(set(real)) != len(real):
        again = next(x for i, x in enumerate(real) if x in real[:i])
        name = classes.names[again] if classes is not None and again < len(classes) else again
        raise where.error(f"class {name} is ranked twice")
    return tuple(labels[:TOP_K]), len(labels)


def hit_rank(guesses: Sequence[int], label: int) -> int:
    """Where the true label is among the guesses (0 = first), or `TOP_K` when absent."""
    for position, guess in enumerate(guesses[:TOP_K]):
        if guess == label:
            return position
    return TOP_K


def topk_accuracy(ranks: np.ndarray, k: int) -> float:
    """Percentage of images whose true label is among their first k guesses."""
    return 100.0 * float(np.mean(ranks < k)) if ranks.size else 0.0


def mean_class_accuracy(ranks: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy per class present in `labels`, averaged over those classes (%)."""
    present = np.unique(labels)
    return 100.0 * float(np.mean([np.mean(ranks[labels == c] == 0) for c in present]))


def _reference(ref: Any) -> tuple[int, ClassNames | None]:
    if isinstance(ref, ClassRef):
        index, classes = ref.index, ref.classes
    elif isinstance(ref, (int, np.integer)) and not isinstance(ref, (bool, np.bool_)):
        index, classes = int(ref), None
    else:
        raise RefbenchError(f"a reference must be a class index, got {ref!r:.40}")
    if index < 0:
        raise RefbenchError(f"reference label {index} marks an unlabelled image; score a "
                            f"labelled split")
    if classes is not None and index >= len(classes):
        raise RefbenchError(f"reference label {index} is outside the {len(classes)} classes")
    return index, classes


@METRICS.register("image_classification", higher_is_better=True, version="1")
class ImageClassificationMetric(Metric):
    """Top-1 / top-5 accuracy and mean per-class accuracy in percent (module docstring).

    Predictions: None (missing), a class index or name, ranked labels, per-class scores
    (a float array) or a `Guesses`; references: class indices or `ClassRef`s. The class
    count comes from the references' label set, else from `num_classes`."""

    keys: ClassVar[dict[str, str]] = {
        "top1": "top-1 accuracy in percent",
        "top5": "top-5 accuracy in percent (only from ranked labels or scores)",
        "mean_class_accuracy": "top-1 accuracy of each class with images, averaged, percent",
    }

    def __init__(self, num_classes: int | None = None) -> None:
        if num_classes is not None and (isinstance(num_classes, bool) or
                                        not isinstance(num_classes, int) or num_classes < 2):
            raise RefbenchError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        super().__init__(num_classes=num_classes)
        self.num_classes = num_classes
        self.classes: ClassNames | None = None
        self._ranks: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.missing = 0
        self.short = 0
        self._top5_reason: str | None = None

    def _label_set(self, classes: ClassNames | None) -> int | None:
        if classes is not None:
            if self.classes is not None and classes != self.classes:
                raise RefbenchError("references of two label sets were mixed")
            if self.num_classes is not None and len(classes) != self.num_classes:
                raise RefbenchError(f"the references have {len(classes)} classes, the metric "
                                    f"was given num_classes={self.num_classes}")
            self.classes = classes
        return len(self.classes) if self.classes is not None else self.num_classes

    def update(self, predictions: Sequence[Any], references: Sequence[Any]) -> None:
        if len(predictions) != len(references):
            raise RefbenchError(f"{len(predictions)} predictions for {len(references)} "
                                f"references")
        ranks = np.empty(len(references), dtype=np.int64)
        labels = np.empty(len(references), dtype=np.int64)
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            labels[i], classes = _reference(ref)
            count = self._label_set(classes)
            guesses, given = ranked(pred, self.classes, count)
            if pred is None:
                self.missing += 1
            elif given < TOP_K:
                self.short += 1
            ranks[i] = hit_rank(guesses, int(labels[i]))
        self._ranks.append(ranks)
        self._labels.append(labels)

    def merge(self, other: Metric) -> None:
        if not isinstance(other, ImageClassificationMetric):
            raise TypeError(f"cannot merge {other!r} into an ImageClassificationMetric")
        self._label_set(other.classes)
        self._ranks.extend(other._ranks)
        self._labels.extend(other._labels)
        self.missing += other.missing
        self.short += other.short

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ranks = np.concatenate(self._ranks) if self._ranks else np.empty(0, np.int64)
        labels = np.concatenate(self._labels) if self._labels else np.empty(0, np.int64)
        return ranks, labels

    def top5_reason(self) -> str | None:
        """Why top-5 is not reported (None when it is)."""
        count = len(self.classes) if self.classes is not None else self.num_classes
        if count is not None and count < TOP_K:
            return f"top-5 is not reported: there are only {count} classes"
        if self.short:
            return (f"top-5 is not reported: {self.short} prediction(s) give fewer than "
                    f"{TOP_K} ranked labels (top-5 needs {TOP_K} ranked labels or per-class "
                    f"scores for every image)")
        return None

    def compute(self) -> dict[str, float]:
        ranks, labels = self._arrays()
        if not ranks.size:
            raise RefbenchError("no labelled image was scored")
        out = {"top1": topk_accuracy(ranks, 1)}
        self._top5_reason = self.top5_reason()
        if self._top5_reason is None:
            out["top5"] = topk_accuracy(ranks, TOP_K)
        out["mean_class_accuracy"] = mean_class_accuracy(ranks, labels)
        return out

    def counts(self) -> dict[str, int]:
        """`images/scored`, `images/no_prediction`, `top1/correct`, `top5/correct` (when
        top-5 is reported), `classes/with_images`, `predictions/fewer_than_5_labels`."""
        ranks, labels = self._arrays()
        out = {"images/scored": int(ranks.size), "images/no_prediction": self.missing,
               "top1/correct": int((ranks == 0).sum())}
        if self.top5_reason() is None:
            out["top5/correct"] = int((ranks < TOP_K).sum())
        out["classes/with_images"] = int(np.unique(labels).size)
        out["predictions/fewer_than_5_labels"] = self.short
        return out

    def warnings(self) -> list[str]:
        ranks, _ = self._arrays()
        out = []
        if 0 < ranks.size < FEW_IMAGES:
            out.append(f"only {ranks.size} images were scored: one image moves the accuracy "
                       f"by {100.0 / ranks.size:.2f} points")
        reason = self.top5_reason()
        if reason is not None:
            out.append(reason)
        return out


def score(predictions: Sequence[Any], references: Sequence[Any],
          num_classes: int | None = None) -> dict[str, float]:
    """The metric's values for aligned predictions and references, in one call."""
    metric = ImageClassificationMetric(num_classes)
    metric.update(predictions, references)
    return metric.compute()
