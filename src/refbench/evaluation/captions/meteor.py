"""METEOR 1.5 through the official jar, only where a Java runtime and the jar exist.

METEOR's matcher (exact, stem, synonym and paraphrase modules, with its English tables) is
the jar; re-implementing it would not give the official numbers, so refbench never
imitates it. The jar is the one pycocoevalcap ships (`pycocoevalcap/meteor/meteor-1.5.jar`
with `data/paraphrase-en.gz`, the `captions` extra), or a folder holding both given by the
caller. Without `java` on the PATH or without the jar, `unavailable_reason()` says so in
one line and the metric leaves the key out of the result (never a made-up value).

The protocol is the one pycocoevalcap speaks to the jar (`-stdio -l en -norm`): per pair a
line `SCORE ||| ref 1 ||| ... ||| ref k ||| hypothesis` (the hypothesis with `|||` removed
and double spaces made single, as pycocoevalcap does), answered by a statistics line; then
one line `EVAL ||| stats 1 ||| ... ||| stats N`, answered by N segment scores and the
corpus score (from the pooled statistics, not the mean of the segment scores).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np

from refbench.errors import RefbenchError
from refbench.evaluation.captions.ngrams import check_pairs

JAR = "meteor-1.5.jar"
PARAPHRASES = Path("data") / "paraphrase-en.gz"


def jar_folder() -> Path | None:
    """pycocoevalcap's `meteor/` folder when it holds the jar and its paraphrase table."""
    spec = importlib.util.find_spec("pycocoevalcap")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(root) / "meteor"
        if (folder / JAR).is_file() and (folder / PARAPHRASES).is_file():
            return folder
    return None


def unavailable_reason(folder: Path | None = None) -> str | None:
    """Why METEOR cannot run here (one line), or None when it can."""
    if shutil.which("java") is None:
        return "METEOR needs a Java runtime (java on the PATH) for the official METEOR 1.5 jar"
    folder = folder if folder is not None else jar_folder()
    if folder is None:
        return ("METEOR needs the official METEOR 1.5 jar: pip install -e '.[captions]' "
                "(pycocoevalcap ships it)")
    if not (Path(folder) / JAR).is_file() or not (Path(folder) / PARAPHRASES).is_file():
        return f"METEOR needs {JAR} and {PARAPHRASES} in {folder}"
    return None


def _clean_hypothesis(text: str) -> str:
    return text.replace("|||", "").replace("  ", " ")


def meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
           folder: Path | None = None, memory: str = "2G") -> tuple[float, np.ndarray]:
    """(corpus METEOR, per-pair METEOR) from the official jar; a `RefbenchError` naming
    what is missing when it cannot run."""
    check_pairs(hypotheses, references)
    reason = unavailable_reason(folder)
    if reason is not None:
        raise RefbenchError(reason)
    folder = Path(folder) if folder is not None else jar_folder()
    assert folder is not None
    for i, (hyp, refs) in enumerate(zip(hypotheses, references)):
        if any("\n" in t or "\r" in t for t in (hyp, *refs)):
            raise RefbenchError(f"pair {i}: METEOR reads one line per pair; a text holds a "
                                f"line break")
        if any("|||" in r for r in refs):
            raise RefbenchError(f"pair {i}: a reference holds '|||', METEOR's field separator")
    command = ["java", "-jar", f"-Xmx{memory}", JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
    process = subprocess.Popen(command, cwd=folder, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, encoding="utf-8", bufsize=1)
    assert process.stdin is not None and process.stdout is not None
    try:
        stats = []
        for hyp, refs in zip(hypotheses, references):
            process.stdin.write(" ||| ".join(("SCORE", *refs, _clean_hypothesis(hyp))) + "\n")
            process.stdin.flush()
            stats.append(_read_line(process))
        process.stdin.write(" ||| ".join(("EVAL", *stats)) + "\n")
        process.stdin.flush()
        per_pair = np.array([float(_read_line(process)) for _ in stats], dtype=np.float64)
        score = float(_read_line(process))
    finally:
        process.stdin.close()
        process.kill()
        process.wait()
    return score, per_pair


def _read_line(process: subprocess.Popen) -> str:  # type: ignore[type-arg]
    line = process.stdout.readline() if process.stdout is not None else ""
    if not line:
        raise RefbenchError("the METEOR jar stopped answering (is the Java runtime working?)")
    return line.strip()
