"""A synthetic SQuAD release: the four official files, learnable answer spans.

Files are written like the official ones: one line of JSON with Python's default
separators and `\\uXXXX` escapes (some names carry accents, so character offsets are
exercised), `version` "1.1" / "v2.0", the official key order, 24-hex-digit question ids.

Paragraphs tell small events ("Maria Lopez bought the red camera at the market in
1998.") between filler sentences about a town (the article title). Questions ask for
one slot of one event, so the answer is a span a model can learn to find: "Who bought
the camera?" -> the person, "What did Maria Lopez buy?" -> the object phrase, "Where
..." -> the place, "When ..." -> the year. Train questions carry one answer; dev
questions three, as the official dev (one exact copy, one with or without the article or
a shorter/longer extent). For v2.0 about a third of the questions are unanswerable: they
ask about a person or object absent from the paragraph, with the span a careless reader
would give as `plausible_answers`. Output is a pure function of (n, seed).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from refbench.errors import RefbenchError
from refbench.io import atomic_write_text

FIRST = ["Maria", "Tom", "Anna", "Peter", "Lucy", "Samuel", "Clara", "Jonas", "Elena", "Mark",
         "Sofia", "David", "Ines", "Victor", "Nora", "Paul", "José", "Zoë", "Björn", "Amélie"]
LAST = ["Lopez", "Becker", "Novak", "Okafor", "Hansen", "Ricci", "Walsh", "Kowalski", "Duarte",
        "Brennan", "Moreau", "Lindqvist", "Tanaka", "Fischer", "Ortega", "Müller", "Núñez",
        "Dubois", "Sato", "Petrov"]
OBJECTS = ["camera", "guitar", "bicycle", "painting", "lamp", "clock", "violin", "telescope",
           "boat", "piano", "kettle", "radio", "carpet", "mirror", "ladder", "tractor",
           "microscope", "sculpture", "compass", "typewriter"]
ADJECTIVES = ["red", "old", "small", "heavy", "wooden", "new", "blue", "silver", "broken",
              "antique", "green", "famous"]
PLACES = ["market", "harbor", "museum", "library", "station", "bakery", "factory", "school",
          "theater", "hotel", "garden", "workshop", "castle", "chapel", "warehouse", "mill"]
VERBS = [("buy", "bought"), ("sell", "sold"), ("paint", "painted"), ("repair", "repaired"),
         ("find", "found"), ("build", "built"), ("borrow", "borrowed"),
         ("deliver", "delivered"), ("photograph", "photographed"), ("carry", "carried")]
TOWNS = ["Kelvik", "Brenna", "Aldmoor", "Castellon", "Dunraven", "Eskar", "Fenwick", "Grisholm",
         "Halden", "Irvale", "Jarrow", "Korsund", "Lanmere", "Montclair", "Norwell", "Ostrava"]
RIVERS = ["Vell", "Amber", "Tarn", "Cress", "Lune", "Dorran"]
FILLERS = ["{town} is a small town on the {river} river.",
           "Many visitors come to {town} in the summer.",
           "The streets of {town} are narrow and quiet.",
           "Local newspapers reported these events in detail.",
           "Most people in {town} still remember that year."]


@dataclass
class Event:
    """One told event and where each answerable slot sits in the context."""

    person: str
    verb: tuple[str, str]
    adj: str
    obj: str
    place: str
    year: int
    spans: dict[str, tuple[int, str]]  # slot -> (answer_start, text)


def _event_segments(ev: Event, fronted: bool) -> list[tuple[str, str | None]]:
    """The sentence as (text, slot) pieces; slots are the answer spans."""
    core: list[tuple[str, str | None]] = [
        (ev.person, "who"), (f" {ev.verb[1]} ", None), (f"the {ev.adj} {ev.obj}", "what"),
        (" at ", None), (f"the {ev.place}", "where")]
    if fronted:
        return [(f"In {ev.year}", "when"), (", ", None), *core, (".", None)]
    return [*core, (" ", None), (f"in {ev.year}", "when"), (".", None)]


class _Paragraph:
    """A context built piece by piece, so every span's offset is known exactly."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def add(self, text: str) -> int:
        if self.parts:
            self.parts.append(" ")
            self.length += 1
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def add_event(self, ev: Event, fronted: bool) -> None:
        if self.parts:
            self.parts.append(" ")
            self.length += 1
        for text, slot in _event_segments(ev, fronted):
            if slot is not None:
                ev.spans[slot] = (self.length, text)
            self.parts.append(text)
            self.length += len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _variants(slot: str, start: int, text: str, context: str) -> list[tuple[int, str]]:
    """Three dev gold answers for a span: itself, then variants in article and extent."""
    if slot == "who":  # "Maria Lopez" -> itself, itself, "Lopez"
        cut = text.index(" ") + 1
        return [(start, text), (start, text), (start + cut, text[cut:])]
    if slot == "what":  # "the red camera" -> "red camera", "camera"
        words = text.split(" ")
        second = len(words[0]) + 1
        last = len(text) - len(words[-1])
        return [(start, text), (start + second, text[second:]), (start + last, text[last:])]
    if slot == "where":  # "the market" -> "market", "at the market"
        at = context.rfind(" at ", 0, start + 1) + 1
        return [(start, text), (start + 4, text[4:]), (at, context[at:start + len(text)])]
    # when: "in 1998" -> "1998", itself
    return [(start, text), (start + 3, text[3:]), (start, text)]


def _question(slot: str, ev: Event, person: str | None = None, obj: str | None = None) -> str:
    person = person or ev.person
    obj = obj or ev.obj
    base, past = ev.verb
    if slot == "who":
        return f"Who {past} the {obj}?"
    if slot == "what":
        return f"What did {person} {base} at the {ev.place}?"
    if slot == "where":
        return f"Where did {person} {base} the {obj}?"
    return f"When did {person} {base} the {obj}?"


def _spans(pairs: list[tuple[int, str]]) -> list[dict]:
    return [{"text": text, "answer_start": start} for start, text in pairs]


class _Writer:
    """Generates the articles of one file."""

    def __init__(self, rng: random.Random, version: str, dev: bool) -> None:
        self.rng, self.version, self.dev = rng, version, dev
        self.ids: set[str] = set()

    def new_id(self) -> str:
        while True:
            qid = f"{self.rng.getrandbits(96):024x}"
            if qid not in self.ids:
                self.ids.add(qid)
                return qid

    def paragraph(self, town: str) -> tuple[str, list[Event]]:
        rng = self.rng
        count = rng.randint(2, 4)
        firsts, lasts = rng.sample(FIRST, count), rng.sample(LAST, count)
        objects, places = rng.sample(OBJECTS, count), rng.sample(PLACES, count)
        events = [Event(f"{firsts[i]} {lasts[i]}", rng.choice(VERBS), rng.choice(ADJECTIVES),
                        objects[i], places[i], rng.randint(1890, 2015), {})
                  for i in range(count)]
        para = _Paragraph()
        river = rng.choice(RIVERS)
        fillers = rng.sample(FILLERS, 2)
        para.add(fillers[0].format(town=town, river=river))
        for i, ev in enumerate(events):
            para.add_event(ev, fronted=rng.random() < 0.3)
            if i == 0:
                para.add(fillers[1].format(town=town, river=river))
        return para.text, events

    def answerable(self, context: str, ev: Event, qid: str) -> dict:
        slot = self.rng.choice(["who", "what", "where", "when"])
        start, text = ev.spans[slot]
        golds = _variants(slot, start, text, context) if self.dev else [(start, text)]
        return self._qa(qid, _question(slot, ev), _spans(golds), impossible=False)

    def unanswerable(self, context: str, events: list[Event], qid: str) -> dict:
        rng = self.rng
        ev = rng.choice(events)
        slot = rng.choice(["who", "what", "where", "when"])
        if slot == "who":  # an object the paragraph never mentions
            obj = rng.choice([o for o in OBJECTS if o not in context])
            question = _question(slot, ev, obj=obj)
        else:  # a person the paragraph never mentions
            while True:
                first, last = rng.choice(FIRST), rng.choice(LAST)
                if first not in context and last not in context:
                    break
            question = _question(slot, ev, person=f"{first} {last}")
        start, text = ev.spans[slot]
        plausible = _variants(slot, start, text, context)[:2] if self.dev else [(start, text)]
        qa = self._qa(qid, question, [], impossible=True)
        qa["plausible_answers"] = _spans(plausible)
        return qa

    def _qa(self, qid: str, question: str, answers: list[dict], impossible: bool) -> dict:
        if self.version == "1.1":  # the official v1.1 key order
            return {"answers": [{"answer_start": a["answer_start"], "text": a["text"]}
                                for a in answers], "question": question, "id": qid}
        return {"question": question, "id": qid, "answers": answers,
                "is_impossible": impossible}

    def file(self, count: int) -> dict:
        """A file of exactly `count` questions (a third unanswerable in v2.0)."""
        rng = self.rng
        unanswerable = [False] * count
        if self.version == "2.0":
            for i in range(count // 3):
                unanswerable[i] = True
            rng.shuffle(unanswerable)
        articles: list[dict] = []
        towns = TOWNS[:]
        rng.shuffle(towns)
        done = 0
        while done < count:
            number = len(articles)
            town = towns[number % len(towns)]
            title = town if number < len(towns) else f"{town}_{number // len(towns) + 1}"
            paragraphs = []
            for _ in range(rng.randint(2, 4)):
                if done >= count:
                    break
                context, events = self.paragraph(town)
                qas = []
                for _ in range(min(rng.randint(2, 5), count - done)):
                    qid = self.new_id()
                    qas.append(self.unanswerable(context, events, qid) if unanswerable[done]
                               else self.answerable(context, rng.choice(events), qid))
                    done += 1
                paragraphs.append({"qas": qas, "context": context} if self.version == "2.0"
                                  else {"context": context, "qas": qas})
            articles.append({"title": title, "paragraphs": paragraphs})
        if self.version == "1.1":
            return {"data": articles, "version": "1.1"}
        return {"version": "v2.0", "data": articles}


def synthesize_squad(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write `train-v1.1.json`, `dev-v1.1.json`, `train-v2.0.json`, `dev-v2.0.json` into
    `out` and return it. Train files hold `n` questions, dev files `max(8, n // 4)`; the
    same (n, seed) always writes the same bytes."""
    if n < 1:
        raise RefbenchError(f"n must be at least 1 (got {n})", key="n")
    root = Path(out)
    small = max(8, n // 4)
    for version in ("1.1", "2.0"):
        for split, count in (("train", n), ("dev", small)):
            rng = random.Random(f"squad-{seed}-{version}-{split}")
            data = _Writer(rng, version, dev=split == "dev").file(count)
            _verify(data)
            atomic_write_text(root / f"{split}-v{version}.json", json.dumps(data))
    return root


def _verify(data: dict) -> None:
    """Every written offset must point at its text (a bug here would poison tests)."""
    for article in data["data"]:
        for para in article["paragraphs"]:
            context = para["context"]
            for qa in para["qas"]:
                for answer in qa["answers"] + qa.get("plausible_answers", []):
                    start, text = answer["answer_start"], answer["text"]
                    if context[start:start + len(text)] != text:
                        raise AssertionError(f"synthetic span {text!r} at {start} is off in "
                                             f"{context!r}")
