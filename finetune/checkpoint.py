"""Training checkpoints as plain data: the adapter, the optimizer state and the RNG state are written as
safetensors plus JSON, never pickled, so loading a checkpoint folder someone else made can fail but
can never run code.

A folder holds `adapter_model.safetensors` + `adapter_config.json` (peft's own), `optimizer.safetensors`
(every tensor of the optimizer state, keyed "<param index>.<name>"), `optimizer.json` (param groups and
the state's non-tensor values), `rng.safetensors` (torch's CPU and CUDA generator states) and
`state.json` (step, config, losses). Checkpoints from before this format kept the optimizer and RNG in a
pickled `trainer_state.pt`; such a folder is refused and the file is never opened.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.finetune.config import FinetuneConfig

CHECKPOINT = "checkpoint"
CHECKPOINT_FORMAT = 2
STATE_JSON = "state.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
RNG_TENSORS = "rng.safetensors"
LEGACY_STATE = "trainer_state.pt"  # pickled by older versions: refused, never read
REQUIRED = (STATE_JSON, ADAPTER_WEIGHTS, OPTIMIZER_TENSORS, OPTIMIZER_JSON, RNG_TENSORS)


def optimizer_to_data(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `optimizer.state_dict()` into tensors (for safetensors) and JSON values."""
    import torch

    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, Any] = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            key = f"{int(index)}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().to("cpu").contiguous()
            elif value is None or isinstance(value, bool | int | float | str):
                values[key] = value
            else:  # a new optimizer with richer state: fail when saving, not when resuming
                raise TypeError(f"optimizer state {key} is a {type(value).__name__}; cannot store it as data")
    groups = [
        {name: list(value) if isinstance(value, tuple) else value for name, value in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "values": values}


def optimizer_from_data(tensors: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `optimizer_to_data`: a state dict `optimizer.load_state_dict` accepts."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *data["values"].items()]:
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    # JSON has no tuples; optimizers unpack hyperparameters like betas either way, but keep them as saved.
    groups = [
        {
            name: tuple(value) if isinstance(value, list) and name != "params" else value
            for name, value in g.items()
        }
        for g in data["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def rng_tensors() -> dict[str, Any]:
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = rng
    return tensors


def restore_rng(tensors: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(model, optimizer, out: Path, state: dict[str, Any]) -> None:
    """Write the checkpoint beside the old one and rename it into place: a crash mid-write leaves the
    previous checkpoint intact."""
    from safetensors.torch import save_file

    tmp = out / f".{CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tensors, data = optimizer_to_data(optimizer.state_dict())
    save_file(tensors, str(tmp / OPTIMIZER_TENSORS))
    (tmp / OPTIMIZER_JSON).write_text(json.dumps(data))
    save_file(rng_tensors(), str(tmp / RNG_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps({"format": CHECKPOINT_FORMAT, **state}))
    old = out / CHECKPOINT
    if old.exists():
        shutil.rmtree(old)
    tmp.rename(old)


def _refuse(path: Path, why: str) -> InputError:
    folder = path if path.name == CHECKPOINT else path.parent
    return InputError(f"{path}: {why}; pass --no-resume to start over, or delete {folder}")


def read_state(folder: Path) -> dict[str, Any]:
    """The checkpoint's state.json, checked field by field (it is read before anything else is trusted)."""
    path = folder / STATE_JSON
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _refuse(path, f"unreadable checkpoint state ({exc})") from exc
    ok = (
        isinstance(state, dict)
        and isinstance(state.get("step"), int)
        and state["step"] >= 1
        and isinstance(state.get("config"), dict)
        and isinstance(state.get("losses"), list)
        and all(isinstance(x, int | float) for x in state["losses"])
        and isinstance(state.get("eval_losses"), list)
        and all(isinstance(x, list) and len(x) == 2 for x in state["eval_losses"])
    )
    if not ok:
        raise _refuse(path, "not a checkpoint state ragtune wrote (step, config, losses, eval_losses)")
    return state


def load_checkpoint(model, optimizer, out: Path, config: FinetuneConfig) -> dict[str, Any] | None:
    """Restore adapter weights, optimizer and RNG from `out/checkpoint`; None when there is none.

    Returns the saved state (step, losses, eval losses). Raises InputError for a checkpoint of other
    settings, of the old pickled format, or one that is damaged.
    """
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = out / CHECKPOINT
    if not folder.is_dir():
        return None
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        if (folder / LEGACY_STATE).exists():
            raise _refuse(
                folder / LEGACY_STATE, "a checkpoint in the old pickled format, which is never loaded"
            )
        if missing == list(REQUIRED):
            return None  # an empty or foreign folder: nothing to resume
        raise _refuse(folder, f"an incomplete checkpoint (no {', '.join(missing)})")
    state = read_state(folder)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise _refuse(
            folder / STATE_JSON,
            f"checkpoint format {state.get('format')!r}, this ragtune reads {CHECKPOINT_FORMAT}",
        )
    if state["config"] != config.to_dict():
        raise InputError(
            f"{out} holds a checkpoint from a run with other settings; use a new --out, or --no-resume "
            "to start over"
        )
    try:
        set_peft_model_state_dict(model, load_file(str(folder / ADAPTER_WEIGHTS)))
        data = json.loads((folder / OPTIMIZER_JSON).read_text())
        optimizer.load_state_dict(optimizer_from_data(load_file(str(folder / OPTIMIZER_TENSORS)), data))
        restore_rng(load_file(str(folder / RNG_TENSORS)))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _refuse(folder, f"a damaged checkpoint ({first})") from exc
    return state
