"""Query encoding through ONNX Runtime: the same sentence-transformers model, exported once, without
torch on the query path.

A short query costs ~16 ms to embed with sentence-transformers on torch and ~3-5 ms here (2 cores),
which is most of a dense or hybrid search. The export is checked against torch on padded batches of
different lengths before it is used, and only models of the plain shape Transformer -> Pooling (mean
or cls) -> optional Normalize are exported; anything else stays on torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.core.cache import cache_dir, discard, publish, staging_folder
from ragtune.core.errors import ModelLoadError

FORMAT = 1
MODEL_FILE = "model.onnx"
META_FILE = "onnx_query.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Probes of different lengths, encoded in one padded batch: the export must match torch on padding too.
PROBES = (
    "what does double quantization save?",
    "LoRA",
    "How do I merge a LoRA adapter into the base model and keep the chat template with it afterwards?",
)
MIN_COSINE = 0.9999


def onnxruntime_available() -> bool:
    return (
        importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    )


def export_folder(model_dir: Path) -> Path:
    """Cache folder for a model's export, keyed by the model folder and its files' sizes and times."""
    stamp = [str(model_dir.resolve())]
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        stat = path.stat()
        stamp.append(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:12]
    return cache_dir() / "onnx" / f"{model_dir.name}-{key}"


def exportable(st_model) -> str | None:
    """None when the model has the plain shape this encoder reproduces; otherwise why not."""
    modules = [type(m).__name__ for m in st_model]
    if len(modules) < 2 or modules[0] != "Transformer" or modules[1] != "Pooling":
        return f"modules {modules} are not Transformer -> Pooling"
    if any(name != "Normalize" for name in modules[2:]):
        return f"modules {modules[2:]} after pooling are not just Normalize"
    mode = st_model[1].get_config_dict().get("pooling_mode")
    if mode not in ("mean", "cls"):
        return f"pooling mode {mode!r} is not mean or cls"
    if not getattr(st_model[0].tokenizer, "is_fast", False):
        return "the tokenizer has no fast (tokenizer.json) version"
    if query_prompt(st_model) and not st_model[1].get_config_dict().get("include_prompt", True):
        return "its query prompt is left out of pooling"
    return None


def query_prompt(st_model) -> str:
    """The text sentence-transformers' encode_query puts before a query (e.g. 'query: '), if any."""
    prompts = getattr(st_model, "prompts", None) or {}
    return (
        prompts.get("query", "")
        if getattr(st_model, "default_prompt_name", None) is None
        else prompts.get(st_model.default_prompt_name, "")
    )


def export(st_model, folder: Path) -> Path:
    """Write `st_model`'s transformer as ONNX plus its tokenizer and pooling settings into a temporary
    sibling of `folder`, and return it: the caller checks it, then publishes it as `folder`."""
    import torch

    transformer = st_model[0]

    class LastHidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    tmp = staging_folder(folder)
    tmp.mkdir(parents=True)
    sample = transformer.tokenizer(list(PROBES[:2]), padding=True, return_tensors="pt")
    sample.setdefault("token_type_ids", torch.zeros_like(sample["input_ids"]))
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    wrapped = LastHidden(transformer.auto_model).eval()
    # The tracer warns about shape-dependent Python branches in the model; the export is checked
    # against torch on padded batches of several lengths afterwards, which is what matters.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            tuple(sample[name] for name in INPUTS),
            str(tmp / MODEL_FILE),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT-style models
        )
    transformer.tokenizer.save_pretrained(str(tmp))
    meta = {
        "format": FORMAT,
        "pooling": st_model[1].get_config_dict()["pooling_mode"],
        "normalize": any(type(m).__name__ == "Normalize" for m in st_model),
        "max_seq_length": int(transformer.max_seq_length),
        "pad_id": int(transformer.tokenizer.pad_token_id or 0),
        "query_prompt": query_prompt(st_model),
    }
    (tmp / META_FILE).write_text(json.dumps(meta))
    return tmp


def _write_meta(folder: Path, **extra: Any) -> None:
    """Add to the export's metadata, with the size of every other file (a truncated file is caught
    on load without reading it)."""
    meta = json.loads((folder / META_FILE).read_text())
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.name != META_FILE}
    (folder / META_FILE).write_text(json.dumps({**meta, **extra, "sizes": sizes}))


class OnnxQueryEncoder:
    """Tokenize with the model's own tokenizer.json, run the exported transformer, pool in numpy."""

    def __init__(self, folder: Path, threads: int = 0):
        try:
            self._load(folder, threads)
        except ModelLoadError:
            raise
        except Exception as exc:  # json, tokenizers and onnxruntime each raise their own kinds
            raise ModelLoadError(
                f"{folder} is a damaged ONNX export ({type(exc).__name__}: {exc}); delete it and it is "
                "exported again"
            ) from exc

    def _load(self, folder: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ModelLoadError(f"{folder}: ONNX export format {meta.get('format')}, expected {FORMAT}")
        for name, size in meta.get("sizes", {}).items():
            if (folder / name).stat().st_size != size:
                raise ValueError(f"{name} has {(folder / name).stat().st_size} bytes, not {size}")
        self.pooling = meta["pooling"]
        self.prompt = meta.get("query_prompt", "")
        self.normalize = meta["normalize"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=meta["max_seq_length"])
        self.tokenizer.enable_padding(pad_id=meta["pad_id"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's choice (one per core)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch([self.prompt + text for text in texts])
        feeds: dict[str, Any] = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        hidden = self.session.run(None, feeds)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            mask = feeds["attention_mask"][..., None].astype(hidden.dtype)
            vectors = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def agreement(encoder: OnnxQueryEncoder, st_model) -> float:
    """Smallest cosine between the ONNX and torch vectors of the probes, encoded as one padded batch."""
    encode = getattr(st_model, "encode_query", st_model.encode)
    reference = encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True)
    ours = encoder.encode(list(PROBES))
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    return float(np.min(np.sum(reference * ours, axis=1)))


def load_or_export(model_dir: Path, load_st_model: Callable[[], Any], threads: int = 0) -> OnnxQueryEncoder:
    """The ONNX query encoder of the sentence-transformers model in `model_dir`: from the cache without
    touching torch, or exported now from `load_st_model()` and checked against it. Raises
    ModelLoadError when the model cannot be reproduced this way."""
    folder = export_folder(model_dir)
    if folder.exists():
        try:
            return OnnxQueryEncoder(folder, threads)
        except ModelLoadError as exc:
            # A damaged entry (disk error, a copy cut short) is thrown away and exported again.
            warnings.warn(f"ragtune: exporting again: {exc}", stacklevel=2)
            discard(folder)
    st_model = load_st_model()
    reason = exportable(st_model)
    if reason:
        raise ModelLoadError(f"no ONNX query encoder for {model_dir}: {reason}")
    try:
        tmp = export(st_model, folder)
    except Exception as exc:  # the exporter raises many types for unsupported operators
        raise ModelLoadError(f"cannot export {model_dir} to ONNX: {type(exc).__name__}: {exc}") from exc
    try:
        encoder = OnnxQueryEncoder(tmp, threads)  # the session holds the model in memory from here on
        cosine = agreement(encoder, st_model)
        if cosine < MIN_COSINE:
            raise ModelLoadError(f"the ONNX export of {model_dir} disagrees with torch (cosine {cosine:.6f})")
        _write_meta(tmp, checked_cosine=cosine)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, folder)  # only a checked export is ever visible under its final name
    return encoder
