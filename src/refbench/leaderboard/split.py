"""A fixed, seeded public/private partition of a benchmark's hidden reference ids.

During a challenge the leaderboard shows the score on the public part only; the private
part decides the final ranking when the owner closes it. The partition depends only on
(seed, id), never on the order of the references or on the submission, so every
submission is split identically and re-scoring reproduces it exactly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping
from typing import Any

from refbench.errors import RefbenchError


def _unit(seed: int, ref_id: Any) -> float:
    """A uniform number in [0, 1) derived from sha256(seed, canonical JSON of the id)."""
    key = json.dumps(ref_id if not isinstance(ref_id, tuple) else list(ref_id),
                     sort_keys=True, default=str)
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def is_public(seed: int, ref_id: Any, public_fraction: float = 0.5) -> bool:
    """True when `ref_id` belongs to the public part for this seed."""
    return _unit(seed, ref_id) < public_fraction


def partition(ids: list[Hashable], seed: int,
              public_fraction: float = 0.5) -> tuple[list[Hashable], list[Hashable]]:
    """(public ids, private ids), each in the given order; both parts must be non-empty."""
    if not 0.0 < public_fraction < 1.0:
        raise RefbenchError(f"public fraction must be strictly between 0 and 1, got "
                            f"{public_fraction}", key="public_fraction")
    public = [i for i in ids if is_public(seed, i, public_fraction)]
    private = [i for i in ids if not is_public(seed, i, public_fraction)]
    if not public or not private:
        raise RefbenchError(f"{len(ids)} reference id(s) are too few to split into a public "
                            f"and a private part")
    return public, private


def split_pairs(preds: list[Any], refs: list[Any], keys: list[Hashable], seed: int,
                public_fraction: float = 0.5) -> dict[str, tuple[list[Any], list[Any]]]:
    """Aligned (predictions, references) lists for the 'public' and 'private' parts."""
    public_ids, _ = partition(keys, seed, public_fraction)
    public = set(public_ids)
    parts: dict[str, tuple[list[Any], list[Any]]] = {"public": ([], []), "private": ([], [])}
    for key, pred, ref in zip(keys, preds, refs):
        part = parts["public" if key in public else "private"]
        part[0].append(pred)
        part[1].append(ref)
    return parts


def part_sizes(references: Mapping[Any, Any], seed: int,
               public_fraction: float = 0.5) -> dict[str, int]:
    """How many reference ids fall in each part (for the owner's overview)."""
    public, private = partition(list(references), seed, public_fraction)
    return {"public": len(public), "private": len(private)}
