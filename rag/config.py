"""The configuration of one index folder: every component's config, saved beside the index as JSON.

Index-time settings (reading, chunking, tokenizing, embedding) are fixed when the folder is created,
because changing them would silently mix incompatible chunks; search-time settings may differ per call.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from ragtune.core.errors import InputError, StoreFormatError
from ragtune.indexes.bm25 import BM25Config
from ragtune.indexes.dense import DenseConfig
from ragtune.indexes.embedding import EmbeddingConfig
from ragtune.indexes.tfidf import TfidfConfig
from ragtune.indexes.tokenize import TokenizerConfig
from ragtune.rag.ingest.chunking import ChunkingConfig

CONFIG_FORMAT = 1
MODES = ("bm25", "tfidf", "dense", "hybrid")


@dataclass(frozen=True)
class ReaderConfig:
    max_file_mb: float = field(default=50.0, metadata={"help": "Larger files are skipped with a reason."})

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_file_mb) and self.max_file_mb > 0):
            raise InputError(f"max_file_mb={self.max_file_mb}: must be a number of megabytes > 0")


@dataclass(frozen=True)
class RetrievalConfig:
    mode: str = field(default="hybrid", metadata={"help": "Retriever.", "choices": MODES})
    rrf_k: int = field(default=60, metadata={"help": "Reciprocal rank fusion constant (Cormack et al.)."})
    weights: dict[str, float] = field(
        default_factory=lambda: {"bm25": 1.0, "dense": 1.0, "tfidf": 0.0},
        metadata={"help": "Hybrid weight of each retriever; 0 leaves it out."},
    )
    depth: int = field(default=50, metadata={"help": "Candidates each retriever contributes to fusion."})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.rrf_k < 1:
            raise InputError(f"rrf_k={self.rrf_k}: must be >= 1")
        unknown = set(self.weights) - {"bm25", "tfidf", "dense"}
        if unknown:
            raise InputError(f"weights for {sorted(unknown)}: only bm25, tfidf and dense can be weighted")
        weights = self.weights.values()
        if not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):
            raise InputError(f"weights={self.weights}: need non-negative weights, at least one above 0")
        if self.depth < 1:
            raise InputError(f"depth={self.depth}: must be >= 1")


BACKENDS = ("local", "milvus")


@dataclass(frozen=True)
class BackendConfig:
    """Where an index folder's searchable rows live. The SQLite store in the folder stays the record of
    documents and chunks either way; saved with the folder, so later runs need only its path."""

    kind: str = field(
        default="local",
        metadata={
            "help": "local: segments in the index folder; milvus: a Milvus server.",
            "choices": BACKENDS,
        },
    )
    milvus_uri: str = field(default="", metadata={"help": "Milvus server, e.g. http://localhost:19530."})
    milvus_collection: str = field(
        default="", metadata={"help": "Milvus collection (default: a name derived from the index folder)."}
    )

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise InputError(f"backend {self.kind!r}: use one of {', '.join(BACKENDS)}")
        if self.kind == "milvus" and not self.milvus_uri.strip():
            raise InputError("the milvus backend needs the server's address: --milvus-uri http://HOST:19530")
        if self.kind == "local" and (self.milvus_uri or self.milvus_collection):
            raise InputError("--milvus-uri and --milvus-collection go with --backend milvus")


@dataclass(frozen=True)
class RAGConfig:
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    bm25: BM25Config = field(default_factory=BM25Config)
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)

    # What the indexes are built from, and where they are; a saved folder cannot change these.
    INDEX_TIME = ("chunking", "tokenizer", "bm25", "tfidf", "embedding", "dense", "backend")

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RAGConfig:
        if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise StoreFormatError(f"config format {found}: this ragtune reads {CONFIG_FORMAT}")
        sections = {}
        for f in fields(cls):
            section_type = f.default_factory  # type: ignore[misc]
            values = data.get(f.name, {})
            if not isinstance(values, dict):
                raise InputError(
                    f"config [{f.name}] is {type(values).__name__}: expected an object of settings"
                )
            known = {g.name for g in fields(section_type)}
            unknown = set(values) - known
            if unknown:
                raise InputError(
                    f"config [{f.name}] has unknown keys {sorted(unknown)}; valid: {sorted(known)}"
                )
            hints = get_type_hints(section_type)
            for key, value in values.items():
                if not matches_type(value, hints[key]):
                    raise InputError(f"config [{f.name}] {key}={value!r}: expected {type_name(hints[key])}")
            sections[f.name] = section_type(**values)
        return cls(**sections)

    def index_time(self) -> dict[str, Any]:
        sections = {name: asdict(getattr(self, name)) for name in self.INDEX_TIME}
        for key in EmbeddingConfig.SEARCH_TIME:
            sections["embedding"].pop(key, None)
        return sections

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RAGConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreFormatError(f"cannot read config {path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None


def matches_type(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON fits a dataclass field's annotation (bool is not a number here)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(matches_type(value, arg) for arg in get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is dict:
        key_hint, value_hint = get_args(hint)
        return isinstance(value, dict) and all(
            matches_type(k, key_hint) and matches_type(v, value_hint) for k, v in value.items()
        )
    if origin in (list, tuple):
        (item_hint, *_rest) = get_args(hint) or (Any,)
        return isinstance(value, (list, tuple)) and all(matches_type(v, item_hint) for v in value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def type_name(hint: Any) -> str:
    """How a field's annotation reads in an error message: int, float, str or None, dict[str, float]."""
    if get_origin(hint) in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in get_args(hint))
    if hint is type(None):
        return "None"
    return hint.__name__ if isinstance(hint, type) else str(hint)
