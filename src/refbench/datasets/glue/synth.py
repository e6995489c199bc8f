"""A synthetic GLUE release: every folder and file of the official layout, learnable labels.

The files copy the release byte for byte in form (CoLA train/dev without header, MRPC
train/dev with the UTF-8 BOM header, MNLI's 16/12/10 columns with parse strings, STS-B's
10/9 columns, test files without labels, `diagnostic/diagnostic.tsv`), so the parser is
exercised as on real data. Sentences come from a small English grammar; labels follow
the text the way the real tasks do (sentiment words, grammatical agreement, synonym
paraphrase vs unrelated pair, word overlap for STS-B scores, negation / hypernyms /
added facts for NLI), so a model trained on the synthetic train split beats the
majority class on dev. Output is a pure function of (n, seed).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from refbench.errors import RefbenchError
from refbench.io import atomic_write_text

PEOPLE = [("teacher", "teachers"), ("farmer", "farmers"), ("doctor", "doctors"),
          ("student", "students"), ("pilot", "pilots"), ("baker", "bakers"),
          ("lawyer", "lawyers"), ("nurse", "nurses"), ("artist", "artists"),
          ("writer", "writers"), ("soldier", "soldiers"), ("driver", "drivers"),
          ("singer", "singers"), ("scientist", "scientists"), ("chef", "chefs"),
          ("sailor", "sailors"), ("manager", "managers"), ("child", "children"),
          ("woman", "women"), ("neighbor", "neighbors")]
OBJECTS = ["book", "letter", "car", "box", "key", "map", "basket", "bicycle", "guitar",
           "window", "table", "picture", "ticket", "camera", "lamp", "coat", "bottle",
           "chair", "painting", "suitcase", "radio", "ladder", "blanket", "kettle"]
PLACES = ["garden", "kitchen", "station", "market", "library", "office", "park", "harbor",
          "school", "museum", "village", "hospital", "factory", "theater", "bakery", "hotel"]
TIMES = ["on Monday", "on Friday", "yesterday", "last week", "this morning", "at noon",
         "in the evening", "last summer"]
# base, third person singular, past, past participle
VERBS = [("carry", "carries", "carried", "carried"), ("find", "finds", "found", "found"),
         ("open", "opens", "opened", "opened"), ("paint", "paints", "painted", "painted"),
         ("clean", "cleans", "cleaned", "cleaned"), ("sell", "sells", "sold", "sold"),
         ("buy", "buys", "bought", "bought"), ("move", "moves", "moved", "moved"),
         ("fix", "fixes", "fixed", "fixed"), ("watch", "watches", "watched", "watched"),
         ("lift", "lifts", "lifted", "lifted"), ("hide", "hides", "hid", "hidden"),
         ("borrow", "borrows", "borrowed", "borrowed"), ("take", "takes", "took", "taken"),
         ("wash", "washes", "washed", "washed"), ("bring", "brings", "brought", "brought"),
         ("build", "builds", "built", "built"), ("draw", "draws", "drew", "drawn"),
         ("catch", "catches", "caught", "caught"), ("lose", "loses", "lost", "lost")]
ADJECTIVES = ["red", "old", "small", "large", "heavy", "wooden", "new", "blue", "green",
              "quiet", "bright", "dark", "round", "narrow", "broken", "shiny", "cheap", "rare"]
SYNONYMS = {"large": "big", "small": "little", "bought": "purchased", "fixed": "repaired",
            "found": "discovered", "carried": "hauled", "car": "automobile", "picture": "photo",
            "teacher": "instructor", "doctor": "physician", "children": "kids", "took": "grabbed",
            "cheap": "inexpensive", "old": "ancient", "shiny": "glossy", "moved": "shifted",
            "said": "stated", "rose": "climbed", "fell": "dropped", "begin": "start",
            "market": "bazaar", "hotel": "inn", "lifted": "raised", "quiet": "silent",
            "cleaned": "scrubbed", "yesterday": "the day before", "manager": "supervisor",
            "revenue": "income", "profit": "earnings", "reported": "announced",
            "watched": "observed", "built": "constructed", "broken": "damaged"}
HYPERNYMS = {"teacher": "person", "farmer": "worker", "doctor": "professional",
             "student": "person", "child": "young person", "woman": "person"}
ANTONYM_VERBS = {"opened": "closed", "bought": "sold", "sold": "bought", "found": "lost",
                 "lost": "found", "lifted": "dropped", "hid": "showed", "built": "destroyed",
                 "cleaned": "dirtied", "borrowed": "lent", "caught": "missed"}
POSITIVE = ["wonderful", "charming", "moving", "brilliant", "delightful", "funny", "warm",
            "clever", "beautiful", "gripping", "touching", "superb", "fresh", "engaging",
            "lovely", "inventive", "heartfelt", "witty", "stunning", "joyful"]
NEGATIVE = ["dull", "boring", "tedious", "clumsy", "bland", "awful", "lifeless", "stale",
            "predictable", "shallow", "messy", "tiresome", "ugly", "pointless", "flat",
            "painful", "forgettable", "silly", "lazy", "dreary"]
FILM_PARTS = ["film", "movie", "story", "script", "acting", "plot", "ending", "cast",
              "soundtrack", "direction", "dialogue", "pacing", "performance", "picture"]
INTENSIFIERS = ["very", "truly", "rather", "often", "simply", "quite", "remarkably", "always"]
COMPANIES = ["Acme Corp.", "Borealis", "Cardinal Systems", "Delta Foods", "Evergreen Bank",
             "Fulton Motors", "Granite Labs", "Harbor Airlines", "Ionic Media", "Juniper Energy"]
METRICS = ["revenue", "profit", "sales", "shares", "orders", "costs"]
NAMES_M = ["John", "Paul", "Mark", "Tom", "Peter", "Sam", "Bill", "George", "Frank", "Adam"]
NAMES_F = ["Mary", "Anna", "Susan", "Jane", "Emma", "Lucy", "Kate", "Sarah", "Alice", "Ruth"]
# WNLI: verb, adjectives making the subject the referent, adjectives making the object one
WNLI_VERBS = [("thanked", ["grateful", "relieved"], ["helpful", "generous"]),
              ("scolded", ["angry", "strict"], ["careless", "rude"]),
              ("admired", ["impressed", "humble"], ["talented", "brave"]),
              ("avoided", ["shy", "nervous"], ["dangerous", "aggressive"]),
              ("beat", ["faster", "stronger"], ["slower", "weaker"])]
NEUTRAL_TAILS = ["because it was needed", "for the first time", "after a long argument",
                 "to surprise a friend", "while it was raining", "for a large reward"]
GENRES_M = ["fiction", "government", "slate", "telephone", "travel"]
GENRES_MM = ["facetoface", "letters", "nineeleven", "oup", "verbatim"]
#: share of SST-2 reviews whose main clause is negated (the label flips the adjectives')
SST2_NEGATED = 0.3
COLA_SOURCES = ["gj04", "bc01", "ks08", "c_13", "r-67", "w_80", "ad03", "m_02"]


# -- small helpers --------------------------------------------------------------------
def _balanced(rng: random.Random, count: int, weights: list[int]) -> list[int]:
    """`count` labels in proportion `weights`, shuffled (so classes are never missing)."""
    pool = [label for label, w in enumerate(weights) for _ in range(w)]
    labels = [pool[i % len(pool)] for i in range(count)]
    rng.shuffle(labels)
    return labels


def _finish(words: list[str], tokenized: bool = False) -> str:
    """Capitalize and join; `tokenized` keeps the space before punctuation (SST/MRPC style)."""
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    if not tokenized:
        text = text.replace(" .", ".").replace(" ,", ",").replace(" ?", "?").replace(" 's", "'s")
    return text


def _synonymize(words: list[str], rng: random.Random, p: float = 0.7) -> list[str]:
    return [SYNONYMS[w] if w in SYNONYMS and rng.random() < p else w for w in words]


def _event(rng: random.Random) -> dict:
    """A random event: who did what to which object, where and when."""
    return {"subj": rng.choice(PEOPLE)[0], "verb": rng.choice(VERBS), "adj": rng.choice(ADJECTIVES),
            "obj": rng.choice(OBJECTS), "place": rng.choice(PLACES), "time": rng.choice(TIMES)}


def _say(ev: dict, style: int = 0) -> list[str]:
    """An event as words; styles differ in order (active, fronted time, passive)."""
    core = ["the", ev["subj"], ev["verb"][2], "the", ev["adj"], ev["obj"]]
    if style == 1:
        return ev["time"].split() + [","] + core + ["in", "the", ev["place"], "."]
    if style == 2:
        return (["the", ev["adj"], ev["obj"], "was", ev["verb"][3], "by", "the", ev["subj"], "in",
                 "the", ev["place"]] + ev["time"].split() + ["."])
    return core + ["in", "the", ev["place"]] + ev["time"].split() + ["."]


def _other(rng: random.Random, ev: dict, keys: list[str]) -> dict:
    """A copy of `ev` with the slots in `keys` changed to different values."""
    pools = {"subj": [p[0] for p in PEOPLE], "verb": VERBS, "adj": ADJECTIVES, "obj": OBJECTS,
             "place": PLACES, "time": TIMES}
    new = dict(ev)
    for key in keys:
        new[key] = rng.choice([v for v in pools[key] if v != ev[key]])
    return new


def _write(path: Path, rows: list[list[str]], header: list[str] | None = None,
           bom: bool = False) -> None:
    lines = ([] if header is None else ["\t".join(header)]) + ["\t".join(r) for r in rows]
    width = lines[0].count("\t")
    for line in lines:  # a generator bug must not produce a file the parser would reject
        if "\n" in line or "\r" in line or line.count("\t") != width:
            raise ValueError(f"synthetic GLUE row breaks the TSV layout of {path}: {line!r}")
    atomic_write_text(path, ("\ufeff" if bom else "") + "\n".join(lines) + "\n")


# -- one generator per task: (rng, count) -> rows of (texts..., label) -------------------
def _sst2(rng: random.Random, count: int) -> list[tuple]:
    """A review whose main clause carries the label. In a share `SST2_NEGATED` of them the
    main clause is negated ("is not very dull" is positive): the label is then an
    interaction of two words, which a bag of words cannot express (real SST-2 is full of
    negation), so small models do not all reach 100% at once and architectures differ."""
    out = []
    for label in _balanced(rng, count, [1, 1]):
        good, bad = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        part, other = rng.sample(FILM_PARTS, 2)
        negated = rng.random() < SST2_NEGATED
        head = bad if negated else good
        words = ["the", part, "is", *(["not"] if negated else []), rng.choice(INTENSIFIERS),
                 rng.choice(head)]
        if rng.random() < 0.6:
            words += ["and", rng.choice(head)]
        if rng.random() < 0.5:  # a weaker contrasting clause, as in real reviews
            words += [",", "though", "the", other, "is", rng.choice(bad + good)]
        else:
            words += [",", "with", "a", rng.choice(good), other]
        out.append((" ".join(words + ["."]) + " ", label))
    return out


#: SST-2 variants of `synthesize_glue(sst2=...)` ("compositional": `synth_variants`)
SST2_VARIANTS = ("standard", "compositional", "negation")


def _cola(rng: random.Random, count: int) -> list[tuple]:
    out = []
    for label in _balanced(rng, count, [1, 2]):
        sing, plur = rng.choice(PEOPLE)
        verb, obj, adj = rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ADJECTIVES)
        plural = rng.random() < 0.5
        subj, good_verb = (plur, verb[0]) if plural else (sing, verb[1])
        words = ["the", subj, good_verb, "the", adj, obj, "."]
        if rng.random() < 0.4:
            words = ["the", subj, verb[2], "the", obj, "in", "the", rng.choice(PLACES), "."]
        if label == 0:
            kind = rng.randrange(5)
            if kind == 0:  # agreement error
                words = ["the", subj, verb[1] if plural else verb[0], "the", adj, obj, "."]
            elif kind == 1:  # auxiliary followed by a past form
                words = ["the", subj, rng.choice(["did", "does", "will"]), verb[2], "the", obj, "."]
            elif kind == 2:  # object pronoun as subject
                words = [rng.choice(["him", "them", "us", "me"]), verb[2], "the", obj, "."]
            elif kind == 3:  # transitive verb without its object
                words = ["the", subj, verb[2], "the", "."]
            else:  # reflexive without antecedent
                words = [rng.choice(["himself", "themselves", "herself"]), verb[2], "the", adj,
                         obj, "."]
        out.append((_finish(words), label))
    return out


def _report(rng: random.Random, company: str) -> list[str]:
    """A financial news sentence about `company` (MRPC's typical genre)."""
    return [company, "said", "its", rng.choice(METRICS), rng.choice(["rose", "fell"]),
            f"{rng.randint(2, 40)}.{rng.randint(0, 9)}", "percent", "in", "the",
            rng.choice(["first", "second", "third", "fourth"]), "quarter", "."]


def _mrpc(rng: random.Random, count: int) -> list[tuple]:
    """Paraphrase = the same facts reworded with synonyms (and reordered); otherwise an
    unrelated sentence or, for 40%, the same subject with different facts."""
    out = []
    for label in _balanced(rng, count, [1, 1]):
        near = rng.random() < 0.4
        if rng.random() < 0.5:
            company = rng.choice(COMPANIES)
            s1 = _report(rng, company)
            if label:
                s2 = _synonymize(s1[:1] + ["reported"] + s1[2:], rng)
            else:
                s2 = _report(rng, company if near else rng.choice(COMPANIES))
        else:
            ev = _event(rng)
            s1 = _say(ev, rng.choice([0, 1]))
            if label:
                s2 = _synonymize(_say(ev, rng.choice([0, 1, 2])), rng)
            elif near:
                s2 = _say(_other(rng, ev, rng.sample(["verb", "adj", "obj", "place"], 3)), 0)
            else:
                s2 = _say(_event(rng), rng.choice([0, 1, 2]))
        out.append((_finish(s1, True), _finish(s2, True), label))
    return out


def _qqp(rng: random.Random, count: int) -> list[tuple]:
    forms = [["how", "can", "I", "{v}", "a", "{a}", "{o}", "?"],
             ["what", "is", "the", "best", "way", "to", "{v}", "a", "{a}", "{o}", "?"],
             ["where", "should", "I", "{v}", "a", "{a}", "{o}", "?"],
             ["is", "it", "hard", "to", "{v}", "a", "{a}", "{o}", "?"]]

    def ask(form: list[str], v: str, a: str, o: str) -> str:
        return _finish([w.replace("{v}", v).replace("{a}", a).replace("{o}", o) for w in form])

    out = []
    for label in _balanced(rng, count, [3, 2]):
        f1, f2 = rng.sample(forms, 2)
        v, a, o = rng.choice(VERBS)[0], rng.choice(ADJECTIVES), rng.choice(OBJECTS)
        if label:
            q2 = ask(f2, v, SYNONYMS.get(a, a), SYNONYMS.get(o, o))
        else:
            q2 = ask(f2, rng.choice(VERBS)[0], rng.choice(ADJECTIVES), rng.choice(OBJECTS))
        out.append((ask(f1, v, a, o), q2, label))
    return out


def _stsb(rng: random.Random, count: int) -> list[tuple]:
    out = []
    slots = ["subj", "verb", "adj", "obj", "place"]
    for _ in range(count):
        ev = _event(rng)
        changed = rng.randint(0, len(slots))
        ev2 = _other(rng, ev, rng.sample(slots, changed))
        s2 = _say(ev2, rng.choice([0, 1]))
        if changed == 0 and rng.random() < 0.5:
            s2 = _synonymize(s2, rng)
        score = 5.0 * (len(slots) - changed) / len(slots) + rng.uniform(-0.3, 0.3)
        out.append((_finish(_say(ev)), _finish(s2), round(min(5.0, max(0.0, score)), 3)))
    return out


def _nli_pair(rng: random.Random, label: int) -> tuple[str, str]:
    """Premise/hypothesis with label 0 entailment, 1 neutral, 2 contradiction."""
    ev = _event(rng)
    premise = _say(ev, rng.choice([0, 1]))
    subj, verb, obj = ev["subj"], ev["verb"], ev["obj"]
    kind = rng.randrange(3)
    if label == 0:
        hyp = [["a", HYPERNYMS.get(subj, "person"), verb[2], "something", "."],
               ["the", subj, verb[2], "a", obj, "."],
               ["someone", "was", "in", "the", ev["place"]] + ev["time"].split() + ["."]][kind]
        hyp = _synonymize(hyp, rng, 0.3)
    elif label == 1:
        hyp = [["the", subj, verb[2], "the", obj] + rng.choice(NEUTRAL_TAILS).split() + ["."],
               ["the", subj, "wanted", "to", verb[0], "another", obj, "."],
               ["the", obj, "belonged", "to", "the", subj + "'s", "brother", "."]][kind]
    else:
        flip = ANTONYM_VERBS.get(verb[2])
        hyp = [["the", subj, "did", "not", verb[0], "the", obj, "."],
               ["nobody", "was", "in", "the", ev["place"]] + ev["time"].split() + ["."],
               ["the", subj, flip, "the", obj, "."] if flip
               else ["the", subj, "never", "saw", "any", obj, "."]][kind]
    return _finish(premise), _finish(hyp)


def _mnli(rng: random.Random, count: int) -> list[tuple]:
    return [(*_nli_pair(rng, label), label) for label in _balanced(rng, count, [1, 1, 1])]


def _rte(rng: random.Random, count: int) -> list[tuple]:
    out = []
    for label in _balanced(rng, count, [1, 1]):  # 0 entailment, 1 not_entailment
        premise, hyp = _nli_pair(rng, 0 if label == 0 else rng.choice([1, 2]))
        extra = _finish(_say(_event(rng), 2))
        out.append((f"{premise} {extra}" if rng.random() < 0.5 else premise, hyp, label))
    return out


def _qnli(rng: random.Random, count: int) -> list[tuple]:
    """Entailment when the sentence holds the answer; otherwise the same event with the
    asked-for slot left out, or a sentence about another event."""
    out = []
    for label in _balanced(rng, count, [1, 1]):  # 0 entailment, 1 not_entailment
        ev = _event(rng)
        s, v, o, p = ev["subj"], ev["verb"], ev["obj"], ev["place"]
        kind = rng.randrange(3)
        question = [["where", "did", "the", s, v[0], "the", o, "?"],
                    ["what", "did", "the", s, v[0], "in", "the", p, "?"],
                    ["who", v[2], "the", ev["adj"], o, "?"]][kind]
        if label == 0:
            sentence = _say(ev, rng.choice([0, 1, 2]))
        elif rng.random() < 0.5:
            sentence = [["the", s, v[2], "the", ev["adj"], o] + ev["time"].split() + ["."],
                        ["the", s, "was", "busy", "in", "the", p] + ev["time"].split() + ["."],
                        ["the", ev["adj"], o, "was", v[3], "in", "the", p] + ev["time"].split()
                        + ["."]][kind]
        else:
            sentence = _say(_event(rng), rng.choice([0, 2]))
        out.append((_finish(question), _finish(sentence), label))
    return out


def _wnli(rng: random.Random, count: int) -> list[tuple]:
    out = []
    for label in _balanced(rng, count, [1, 1]):  # 0 not_entailment, 1 entailment
        names, pronoun = rng.choice([(NAMES_M, "he"), (NAMES_F, "she")])
        a, b = rng.sample(names, 2)
        verb, subj_adjs, obj_adjs = rng.choice(WNLI_VERBS)
        about_subject = rng.random() < 0.5
        adj = rng.choice(subj_adjs if about_subject else obj_adjs)
        referent, wrong = (a, b) if about_subject else (b, a)
        s1 = f"{a} {verb} {b} because {pronoun} was {adj}."
        out.append((s1, f"{referent if label else wrong} was {adj}.", label))
    return out


# -- writing the release layout -------------------------------------------------------
def _index_rows(rows: list[tuple]) -> list[list[str]]:
    """Unlabeled test rows `index, texts...` (the label of the generated row is dropped)."""
    return [[str(i), *row[:-1]] for i, row in enumerate(rows)]


def _labeled_rows(rows: list[tuple], names: tuple[str, ...]) -> list[list[str]]:
    return [[str(i), *row[:-1], names[row[-1]]] for i, row in enumerate(rows)]


def _parses(text: str) -> tuple[str, str]:
    """Stand-ins for the MNLI binary and Penn parse columns (tokens in brackets)."""
    tokens = text.replace(".", " .").replace(",", " ,").replace("?", " ?").split()

    def binary(ts: list[str]) -> str:
        return ts[0] if len(ts) == 1 else f"( {ts[0]} {binary(ts[1:])} )"

    tags = " ".join(f"({'DT' if t.lower() in ('the', 'a') else '.' if t in '.,?' else 'NN'} {t})"
                    for t in tokens)
    return binary(tokens), f"(ROOT (S {tags}))"


def _mnli_rows(rng: random.Random, rows: list[tuple], genres: list[str], annotators: int,
               labeled: bool, start: int) -> list[list[str]]:
    names = ("entailment", "neutral", "contradiction")
    out = []
    for i, (premise, hyp, label) in enumerate(rows):
        prompt = start + i
        (b1, p1), (b2, p2) = _parses(premise), _parses(hyp)
        row = [str(i), str(prompt), f"{prompt}{names[label][0] if labeled else ''}",
               rng.choice(genres), b1, b2, p1, p2, premise, hyp]
        if labeled:
            votes = [names[label]] + [names[label] if rng.random() < 0.8 else rng.choice(names)
                                      for _ in range(annotators - 1)]
            row += votes + [names[label]]
        out.append(row)
    return out


def synthesize_glue(out: Path, n: int = 200, seed: int = 0, *, sst2: str = "standard",
                    dev_rows: int | None = None) -> Path:
    """Write a synthetic GLUE root (all ten configs) into `out` and return it.

    Train files get `n` rows, every dev/test file `dev_rows` (default `max(8, n // 4)`; more
    dev rows shrink evaluation noise); test files carry no labels. `sst2` picks the SST-2
    generator (`SST2_VARIANTS`; "compositional": the label depends on connectives and double
    negation; "negation": the same with single negation only). The same arguments always
    write the same bytes; the defaults, the old ones."""
    if n < 1:
        raise RefbenchError(f"n must be at least 1 (got {n})", key="n")
    if dev_rows is not None and dev_rows < 1:
        raise RefbenchError(f"dev_rows must be at least 1 (got {dev_rows})", key="dev_rows")
    if sst2 not in SST2_VARIANTS:
        raise RefbenchError(f"unknown SST-2 variant {sst2!r} (choose from "
                            f"{', '.join(SST2_VARIANTS)})", key="sst2")
    from refbench.datasets.glue.synth_variants import sst2_compositional, sst2_negation
    sst2_gen = {"standard": _sst2, "compositional": sst2_compositional,
                "negation": sst2_negation}[sst2]
    root = Path(out)
    small = max(8, n // 4) if dev_rows is None else dev_rows

    def rng_for(task: str, split: str) -> random.Random:
        return random.Random(f"glue-{seed}-{task}-{split}")

    def make(gen: Callable[[random.Random, int], list[tuple]], task: str, split: str,
             count: int) -> list[tuple]:
        return gen(rng_for(task, split), count)

    # CoLA: train/dev have no header: source, label, original mark ('*' when bad), sentence
    for split, count in (("train", n), ("dev", small)):
        rng = rng_for("cola-src", split)
        rows = [[rng.choice(COLA_SOURCES), str(label), "" if label else "*", text]
                for text, label in make(_cola, "cola", split, count)]
        _write(root / "CoLA" / f"{split}.tsv", rows)
    _write(root / "CoLA" / "test.tsv", _index_rows(make(_cola, "cola", "test", small)),
           ["index", "sentence"])

    for split, count in (("train", n), ("dev", small)):
        _write(root / "SST-2" / f"{split}.tsv",
               [[t, str(y)] for t, y in make(sst2_gen, "sst2", split, count)],
               ["sentence", "label"])
    _write(root / "SST-2" / "test.tsv",
           [[str(i), t.strip()]
            for i, (t, _) in enumerate(make(sst2_gen, "sst2", "test", small))],
           ["index", "sentence"])

    mrpc_cols = ["#1 ID", "#2 ID", "#1 String", "#2 String"]
    ids = random.Random(f"glue-{seed}-mrpc-ids")
    dev_ids = []
    for split, count in (("train", n), ("dev", small), ("test", small)):
        rows = []
        for s1, s2, label in make(_mrpc, "mrpc", split, count):
            a = ids.randint(10_000, 3_500_000)
            pair = [str(a), str(a + ids.randint(1, 300))]
            rows.append([str(len(rows)) if split == "test" else str(label), *pair, s1, s2])
            if split == "dev":
                dev_ids.append(pair)
        header = (["index"] if split == "test" else ["Quality"]) + mrpc_cols
        _write(root / "MRPC" / f"{split}.tsv", rows, header, bom=split != "test")
    _write(root / "MRPC" / "dev_ids.tsv", dev_ids)

    sts_cols = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                "sentence1", "sentence2"]
    for split, count in (("train", n), ("dev", small), ("test", small)):
        rows = []
        for i, (s1, s2, score) in enumerate(make(_stsb, "stsb", split, count)):
            row = [str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1,
                   s2]
            rows.append(row if split == "test" else row + [f"{score:.3f}"])
        _write(root / "STS-B" / f"{split}.tsv", rows,
               sts_cols if split == "test" else sts_cols + ["score"])

    qrng = random.Random(f"glue-{seed}-qqp-ids")
    for split, count in (("train", n), ("dev", small)):
        rows = []
        for q1, q2, label in make(_qqp, "qqp", split, count):
            qid = qrng.randint(1, 530_000)
            rows.append([str(qrng.randint(0, 400_000)), str(qid), str(qid + 1), q1, q2, str(label)])
        _write(root / "QQP" / f"{split}.tsv", rows,
               ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"])
    _write(root / "QQP" / "test.tsv", _index_rows(make(_qqp, "qqp", "test", small)),
           ["id", "question1", "question2"])

    mnli_cols = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                 "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                 "sentence2"]
    mnli_files = [("train", n, GENRES_M, 1), ("dev_matched", small, GENRES_M, 5),
                  ("dev_mismatched", small, GENRES_MM, 5), ("test_matched", small, GENRES_M, 0),
                  ("test_mismatched", small, GENRES_MM, 0)]
    for number, (name, count, genres, annotators) in enumerate(mnli_files):
        rng = rng_for("mnli-cols", name)
        labeled = annotators > 0
        rows = _mnli_rows(rng, make(_mnli, "mnli", name, count), genres, annotators, labeled,
                          start=10_000 * (number + 1))
        votes = [f"label{i}" for i in range(1, annotators + 1)]
        extra = votes + ["gold_label"] if labeled else []
        _write(root / "MNLI" / f"{name}.tsv", rows, mnli_cols + extra)

    nli2 = ("entailment", "not_entailment")
    for folder, gen, fields, names in (("QNLI", _qnli, ["question", "sentence"], nli2),
                                       ("RTE", _rte, ["sentence1", "sentence2"], nli2),
                                       ("WNLI", _wnli, ["sentence1", "sentence2"], ("0", "1"))):
        for split, count in (("train", n), ("dev", small)):
            _write(root / folder / f"{split}.tsv",
                   _labeled_rows(make(gen, folder, split, count), names),
                   ["index", *fields, "label"])
        _write(root / folder / "test.tsv", _index_rows(make(gen, folder, "test", small)),
               ["index", *fields])

    _write(root / "diagnostic" / "diagnostic.tsv", _index_rows(make(_mnli, "ax", "test", small)),
           ["index", "sentence1", "sentence2"])
    return root
