"""Loading a causal LM and its tokenizer: device, dtype, bitsandbytes quantization, LoRA adapter.

torch, transformers, peft and bitsandbytes are imported inside the functions that need them, so
importing ragtune stays cheap and a CPU-only machine never imports what only CUDA can use.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.core.errors import ModelLoadError
from ragtune.rag.models.resolve import ADAPTER_CONFIG, ModelSource

QUANTIZATIONS = ("auto", "nf4", "int8", "none")
DEVICES = ("auto", "cpu", "cuda")

# A plain role-tagged prompt for models that ship no chat template of their own.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def choose_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise ModelLoadError("device='cuda' but torch sees no CUDA GPU; use device='cpu' or 'auto'")
    return device


def choose_quantization(quantization: str, device: str) -> str:
    """`auto` is nf4 on CUDA (the QLoRA recipe) and none on CPU, where fp32 generated 1.5-1.7x faster
    than nf4 and 2.1x faster than int8 (bench/generate.py)."""
    if quantization == "auto":
        return "nf4" if device == "cuda" and has_bitsandbytes() else "none"
    if quantization in ("nf4", "int8") and not has_bitsandbytes():
        raise ModelLoadError(
            f"quantization={quantization!r} needs bitsandbytes: pip install 'ragtune[gpu]' "
            "(or use quantization='none')"
        )
    return quantization


def has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def compute_dtype(device: str):
    """bf16 on CUDA GPUs that have it (the QLoRA recipe), fp16 on older ones; fp32 on CPU, where bf16
    matmuls were ~20x slower on these machines (shared/MODELS.md)."""
    import torch

    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(quantization: str, device: str):
    if quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype(device),
        )
    return BitsAndBytesConfig(load_in_8bit=True)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: str
    adapter: str | None
    quantization: str
    device: str
    dtype: str
    parameters: int
    load_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(_load_hint(path, exc)) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def _load_hint(path: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if Path(path).exists():
        return f"cannot load the model in {path}: {first}"
    return (
        f"cannot load model {path!r}: not a local folder and not in the local Hugging Face cache "
        f"(no model hub is reached). Give a folder or .gguf file. ({first})"
    )


def _drop_int8_cast_notice(record: logging.LogRecord) -> bool:
    return "inputs will be cast" not in record.getMessage()


def load_model(source: ModelSource, quantization: str = "none", device: str = "cpu"):
    """The causal LM at `source.path`, quantized as asked, with `source.adapter` attached."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    if quantization == "int8":
        # bitsandbytes logs on every int8 matmul that it casts fp32 inputs to fp16 (~200 lines a token).
        logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_int8_cast_notice)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": compute_dtype(device)}
    qconfig = quantization_config(quantization, device)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if device == "cuda":
        kwargs["device_map"] = "auto"  # accelerate places the layers (and quantizes them) on the GPU
    # Loading draws a per-weight progress bar that says nothing for a model loaded in seconds.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except Exception as exc:
        raise ModelLoadError(_load_hint(source.path, exc)) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if source.adapter is not None:
        model = attach_adapter(model, source.adapter)
    if device == "cpu" and qconfig is None:
        model = model.to(torch.device("cpu"))
    model.eval()
    return model


def attach_adapter(model, adapter: str):
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ModelLoadError(f"{adapter}: not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    try:
        return PeftModel.from_pretrained(model, str(folder))
    except Exception as exc:
        raise ModelLoadError(f"cannot attach adapter {adapter}: {exc}") from exc
