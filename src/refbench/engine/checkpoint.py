"""Checkpoints on disk: safetensors for tensors, JSON for everything else, never half-written.

Layout of a run directory's `checkpoints/`:

    step-00000100/model.safetensors       model weights (shared tensors stored once)
    step-00000100/optimizer.safetensors   optimizer tensors (`state.<param>.<name>`)
    step-00000100/trainer_state.json      param groups, scheduler, step, epoch, RNG, best, ...
    best.json                             which step folder holds the best evaluation

Every file is written to a temporary sibling, fsynced and renamed (`refbench.io`), and a
checkpoint folder is assembled under a dot-name and renamed into place, so a folder named
`step-*` is always complete, even after SIGKILL. Deletion goes the other way round
(rename to a dot-name, then remove), and dot-names are swept on the next start.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors
from torch import nn

from refbench.errors import RefbenchError
from refbench.io import atomic_dir_replace, atomic_write_bytes, atomic_write_json

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
BEST_FILE = "best.json"
STATE_FORMAT = 1
_STEP_RE = re.compile(r"^step-(\d{8,})$")
_REQUIRED_STATE = ("format", "step", "epoch", "position", "optimizer", "scheduler", "rng",
                   "config_hash")


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# -- tensors <-> safetensors bytes --------------------------------------------------------
def _tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize tensors, storing tensors that share memory (tied weights) once."""
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tuple(tensor.stride()), tensor.dtype, tensor.device)
        if tensor.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        ptr = tensor.untyped_storage().data_ptr()
        cpu = tensor.to("cpu", copy=ptr in storages or tensor.device.type != "cpu").contiguous()
        storages.add(ptr)
        out[name] = cpu
    meta = dict(metadata)
    if aliases:
        meta["aliases"] = json.dumps(aliases, sort_keys=True)
    return dump_tensors(out, metadata=meta)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (aliases restored); RefbenchError when missing or corrupt."""
    try:
        data = path.read_bytes()
        tensors = load_tensors(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + header_len])
    except FileNotFoundError:
        raise RefbenchError("checkpoint file not found", path=path) from None
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"corrupt safetensors file ({exc})", path=path) from None
    aliases = json.loads((header.get("__metadata__") or {}).get("aliases", "{}"))
    for name, target in aliases.items():
        tensors[name] = tensors[target]
    return tensors


def save_model_file(path: Path, model: nn.Module) -> None:
    """Write `model.state_dict()` to `path` atomically as safetensors."""
    atomic_write_bytes(path, _tensors_to_bytes(model.state_dict(), {"format": "pt"}))


def load_model_weights(model: nn.Module, checkpoint_dir: Path) -> None:
    """Load a checkpoint folder's `model.safetensors` into `model` (strict: every key must match)."""
    path = Path(checkpoint_dir) / MODEL_FILE
    tensors = _read_tensors(path)
    missing, unexpected = _key_mismatch(model, tensors)
    if missing or unexpected:
        raise RefbenchError(f"checkpoint does not fit the model: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}", path=path)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise RefbenchError(f"checkpoint does not fit the model: {first}", path=path) from None


def _key_mismatch(model: nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(tensors)), sorted(set(tensors) - expected)


# -- optimizer state ------------------------------------------------------------------------
def split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`optimizer.state_dict()` -> (tensors for safetensors, the JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def join_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `split_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in rest.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


def load_optimizer_tensors(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    return _read_tensors(Path(checkpoint_dir) / OPTIMIZER_FILE)


# -- RNG state ------------------------------------------------------------------------------
def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng(device: torch.device) -> dict[str, Any]:
    """Python, NumPy and torch (CPU and this process's CUDA device) RNG states, as JSON."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    out: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if device.type == "cuda":
        out["cuda"] = _b64(torch.cuda.get_rng_state(device))
    return out


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_unb64(state["cuda"]), device)


# -- folders --------------------------------------------------------------------------------
def write_checkpoint(root: Path, step: int, model: nn.Module, optimizer_tensors: dict[str, torch.Tensor],
                     state: dict[str, Any]) -> Path:
    """Write one complete checkpoint folder `root/step-XXXXXXXX` (built aside, renamed in)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
    try:
        save_model_file(tmp / MODEL_FILE, model)
        atomic_write_bytes(tmp / OPTIMIZER_FILE, _tensors_to_bytes(optimizer_tensors, {}))
        atomic_write_json(tmp / STATE_FILE, state)
        atomic_dir_replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and child.is_dir() and all((child / f).is_file()
                                            for f in (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE)):
            found.append((int(match.group(1)), child))
    return sorted(found)


def read_best(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CHECKPOINTS / BEST_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        str(data["checkpoint"])
    except (ValueError, KeyError, TypeError):
        raise RefbenchError("corrupt best-checkpoint record", path=path) from None
    return data


def write_best(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / CHECKPOINTS / BEST_FILE, record)


def find_checkpoint(run_dir: Path, which: Literal["best", "last"]) -> Path:
    """The newest complete checkpoint (`last`) or the best-evaluated one (`best`)."""
    run_dir = Path(run_dir)
    if which == "last":
        found = list_checkpoints(run_dir)
        if not found:
            raise RefbenchError("no complete checkpoint in this run", path=run_dir / CHECKPOINTS)
        return found[-1][1]
    if which == "best":
        record = read_best(run_dir)
        if record is None:
            raise RefbenchError("no best checkpoint (no evaluation with a primary metric ran); "
                                "use the last one instead", path=run_dir / CHECKPOINTS)
        folder = run_dir / CHECKPOINTS / str(record["checkpoint"])
        if folder not in [p for _, p in list_checkpoints(run_dir)]:
            raise RefbenchError(f"best checkpoint {record['checkpoint']!r} is missing or incomplete",
                                path=run_dir / CHECKPOINTS / BEST_FILE)
        return folder
    raise ValueError(f"which must be 'best' or 'last', got {which!r}")


def read_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    """Parse and check a `trainer_state.json`; RefbenchError naming the file when corrupt."""
    path = Path(checkpoint_dir) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RefbenchError("trainer state not found", path=path) from None
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise RefbenchError(f"corrupt trainer state: invalid JSON ({exc.args[0].split(':')[0]})",
                            path=path, line=getattr(exc, "lineno", None)) from None
    if not isinstance(state, dict):
        raise RefbenchError("corrupt trainer state: expected a JSON object", path=path)
    for key in _REQUIRED_STATE:
        if key not in state:
            raise RefbenchError("corrupt trainer state: missing field", path=path, key=key)
    if state["format"] != STATE_FORMAT:
        raise RefbenchError(f"unsupported trainer state format {state['format']!r}", path=path,
                            key="format")
    for key in ("step", "epoch", "position"):
        if not isinstance(state[key], int) or state[key] < 0:
            raise RefbenchError("corrupt trainer state: expected a non-negative integer",
                                path=path, key=key)
    return state


def rotate(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete step checkpoints beyond the newest `keep_last` (0 keeps all); never the best."""
    found = list_checkpoints(run_dir)
    if keep_last <= 0 or len(found) <= keep_last:
        return []
    record = read_best(run_dir)
    best = None if record is None else str(record["checkpoint"])
    removed = []
    for _, folder in found[:-keep_last]:
        if folder.name == best:
            continue
        doomed = folder.with_name(f".del-{folder.name}")
        folder.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(folder)
    return removed


def sweep_temporaries(run_dir: Path) -> None:
    """Remove half-built or half-deleted folders left by a crash (their names start with '.')."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".del-")) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(".") and child.name.endswith(".tmp") and child.is_file():
            child.unlink(missing_ok=True)
