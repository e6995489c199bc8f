"""Synthetic copies of the NAS-Bench-Macro and NASLib zero-cost files, in their exact layouts.

The accuracies follow a learnable structure (each layer's block adds a fixed amount, plus
seed noise), and every zero-cost proxy is a noisy monotone function of the accuracy, so a
ranking metric over synthetic data gives a clearly positive, non-trivial tau.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from refbench.datasets.nasbench.readers import (
    MACRO_FILE,
    NASLIB_CONFIGS,
    NB101_FILE,
    NB201_FILE,
    PROXIES_101,
    PROXIES_201,
)
from refbench.datasets.nasbench.spaces import MACRO_LAYERS, NB101_NODES, format_tuple
from refbench.io import atomic_write_text


def synthesize_macro(out: Path, n: int = 6561, seed: int = 0) -> Path:
    """Write NAS-Bench-Macro into `out`: every one of the 6,561 architectures whatever `n`
    (the official table is the complete space, and its benchmark scores all of it), in a
    seeded file order."""
    rng = np.random.default_rng(seed)
    codes = ["".join(c) for c in itertools.product("012", repeat=MACRO_LAYERS)]
    chosen = [codes[i] for i in rng.permutation(len(codes))]
    gain = rng.uniform(0.2, 1.2, size=(MACRO_LAYERS, 3))
    gain[:, 0] = 0.0  # Identity adds nothing
    table = {}
    for arch in chosen:
        choices = [int(c) for c in arch]
        base = 84.0 + sum(gain[layer, c] for layer, c in enumerate(choices))
        accs = [round(float(base + rng.normal(0, 0.25)), 2) for _ in range(3)]
        params = 400_000 + sum(150_000 * c * c for c in choices)
        table[arch] = {"test_acc": accs, "mean_acc": float(np.mean(accs)),
                       "std": float(np.std(accs)), "params": params,
                       "flops": params * 23 + 1_000_000}
    out = Path(out)
    atomic_write_text(out / MACRO_FILE, json.dumps(table))
    return out


def _nb201_arch(rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(x) for x in rng.integers(0, 5, size=6))


def _nb101_arch(rng: np.random.Generator) -> tuple[int, ...]:
    adjacency = np.triu(rng.integers(0, 2, size=(NB101_NODES, NB101_NODES)), k=1)
    adjacency[0, 1] = adjacency[NB101_NODES - 2, NB101_NODES - 1] = 1
    ops = (0, *(int(x) for x in rng.integers(2, 5, size=NB101_NODES - 2)), 1)
    return tuple(int(x) for x in adjacency.reshape(-1)) + ops


def _entry(rng: np.random.Generator, arch: tuple[int, ...], timed: bool,
           proxies: tuple[str, ...]) -> tuple[float, dict]:
    accuracy = round(float(np.clip(55 + 1.5 * sum(arch[-6:]) + rng.normal(0, 1.5), 0, 100)), 2)
    entry: dict = {"val_accuracy": accuracy}
    for proxy in proxies:
        score = float(accuracy * rng.uniform(0.5, 2.0) + rng.normal(0, 8))
        entry[proxy] = {"score": score, "time": float(rng.uniform(0.05, 1.5))} if timed else score
    return accuracy, entry


def synthesize_naslib(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write `zc_nasbench201.json` (3 datasets) and `zc_nasbench101.json` with `n`
    architectures per table into `out`."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    nb201: dict = {}
    for file, inside, _space, _proxies in NASLIB_CONFIGS.values():
        if file != NB201_FILE:
            continue
        table: dict = {}
        while len(table) < max(n, 2):
            ops = _nb201_arch(rng)
            key = format_tuple(ops)
            if key in table:
                continue
            _, entry = _entry(rng, ops, True, PROXIES_201)
            index = sum(op * 5 ** i for i, op in enumerate(ops))
            table[key] = {"idx": str(index), "arch": key, **entry}
        nb201[inside[0]] = table
    nb101: dict = {}
    while len(nb101) < max(n, 2):
        arch = _nb101_arch(rng)
        key = format_tuple(arch)
        if key not in nb101:
            nb101[key] = _entry(rng, arch, False, PROXIES_101)[1]
    atomic_write_text(out / NB201_FILE, json.dumps(nb201))
    atomic_write_text(out / NB101_FILE, json.dumps({"nasbench101": {"cifar10": nb101}}))
    return out
