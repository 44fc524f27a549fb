"""`RAG`: the public façade over one index folder (store, index generations, embedder).

rag = RAG.open("./my-index")
report = rag.ingest("./docs")
hits = rag.search("how do I merge a LoRA adapter?", k=5, mode="hybrid")
answer = rag.ask("how do I merge a LoRA adapter?")           # or stream=True for the text as it comes
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.core.errors import IndexBusyError, InputError, StoreFormatError
from ragtune.core.schema import SearchHit
from ragtune.indexes.embedding import Embedder, SentenceTransformerEmbedder
from ragtune.rag.config import RAGConfig
from ragtune.rag.generation.answer import LLM, Answer, AnswerConfig
from ragtune.rag.generation.answerer import Answerer, AnswerStream, Conversation
from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM
from ragtune.rag.ingest.ingestor import Ingestor, IngestReport, ProgressCallback
from ragtune.rag.ingest.ray_engine import IngestEngineConfig, RayEmbedder
from ragtune.rag.retrieval import retrieve
from ragtune.rag.store.database import Store
from ragtune.rag.store.generations import Generation, Generations

STORE_FILE = "store.sqlite"
CONFIG_FILE = "config.json"
LOCK_FILE = "write.lock"


class RAG:
    """One index folder. Safe to search from several threads while another thread or process ingests."""

    def __init__(
        self,
        folder: Path,
        config: RAGConfig,
        embedder: Embedder | None = None,
        generator: GeneratorConfig | LLM | None = None,
        answer: AnswerConfig | None = None,
    ):
        self.folder = folder
        self.config = config
        self.answer_config = answer or AnswerConfig()
        # A config is loaded on the first question; anything else is an LLM already loaded (or a fake).
        self._llm = None if generator is None or isinstance(generator, GeneratorConfig) else generator
        self.generator_config = generator if isinstance(generator, GeneratorConfig) else None
        self._llm_lock = threading.Lock()
        self.store = Store(folder / STORE_FILE)
        self.generations = Generations(folder)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._generation: Generation | None = None
        self._generation_lock = threading.Lock()
        self.remote = _remote_backend(folder, config, self.store)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: RAGConfig | None = None,
        embedder: Embedder | None = None,
        *,
        generator: GeneratorConfig | LLM | None = None,
        answer: AnswerConfig | None = None,
    ) -> RAG:
        """Open the index folder at `path`, creating it (with `config`, or the defaults) if it is new.

        An existing folder keeps the index-time settings it was created with (`RAGConfig.INDEX_TIME`);
        `config` may change the others (reader, retrieval) for this session. `embedder` replaces the
        configured sentence-transformers model. `generator` chooses the LLM that `ask` uses (a config,
        loaded on the first question, or an already loaded `LocalLLM`, or anything with its `generate`,
        `stream` and `count_tokens`); `answer` how it is prompted.
        """
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{str(path)!r} is a file; an index is a folder (it is created if missing)")
        blocker = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise InputError(f"cannot create index folder {str(path)!r}: {str(blocker)!r} is a file")
        config_path = folder / CONFIG_FILE
        if config_path.exists():
            saved = RAGConfig.load(config_path)
            if config is not None and config.index_time() != saved.index_time():
                changed = [k for k, v in config.index_time().items() if saved.index_time()[k] != v]
                raise InputError(
                    f"{folder} was built with other {', '.join(changed)} settings; "
                    "use a new index folder for new settings"
                )
            config = config or saved  # equal to `saved` on every index-time section, checked above
        else:
            config = config or RAGConfig()
            if embedder is None:
                # Loaded before config.json is written: a folder saved with a model that does not load
                # would refuse every later run with the right one ("built with other settings").
                embedder = SentenceTransformerEmbedder(config.embedding)
                embedder.model  # noqa: B018 (loads it, or raises ModelLoadError)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                config.save(config_path)
            except OSError as exc:
                raise InputError(f"cannot create index folder {str(path)!r}: {exc.strerror or exc}") from exc
        return cls(folder, config, embedder, generator, answer)

    # -- components -------------------------------------------------------------------------------

    def embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = SentenceTransformerEmbedder(self.config.embedding)
            return self._embedder

    def llm(self) -> LLM:
        """The generator, loaded on first use (the default model takes seconds, not milliseconds)."""
        with self._llm_lock:
            if self._llm is None:
                self._llm = LocalLLM.load(self.generator_config)
            return self._llm

    def _current_generation(self) -> Generation:
        """The generation the store calls current; call inside a store read transaction."""
        number = self.store.generation()
        with self._generation_lock:
            if self._generation is None or self._generation.number != number:
                self._generation = (
                    self.remote.generation(number, self.embedder)
                    if self.remote is not None
                    else self.generations.open(number, self.embedder)
                )
            return self._generation

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        lock_path = self.folder / LOCK_FILE
        with open(lock_path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusyError(
                    f"another ingest is writing to {self.folder}; wait for it to finish and try again"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- public API -------------------------------------------------------------------------------

    def ingest(
        self,
        path: str | os.PathLike[str],
        *,
        rebuild: bool = False,
        compact: bool = False,
        only: Iterable[str | os.PathLike[str]] | None = None,
        progress: bool = True,
        on_progress: ProgressCallback | None = None,
        engine: IngestEngineConfig | None = None,
    ) -> IngestReport:
        """Bring the index in line with the files at `path`: only new and edited documents are
        re-chunked and re-embedded; documents whose files are gone are removed from every index.

        `rebuild=True` re-reads every file and rebuilds all indexes from scratch. `compact=True` then
        merges every segment into one and drops deleted rows (nothing is re-read or re-embedded: the
        merge copies rows; searches go on meanwhile, on the generation before). `only` names the files
        or folders under `path` that changed (a watcher knows them): just those are looked at, so the
        cost follows the change rather than the folder; one that is gone is deleted. `progress` draws
        progress bars on the terminal; `on_progress(IngestProgress)` is called as files are read, chunks
        embedded and the new generation saved (the UI's progress bar). Searches keep being answered from
        the current generation meanwhile and see the new one once it is committed.

        `engine=IngestEngineConfig(engine="ray", ...)` embeds the new chunks on a Ray cluster (needs the
        `ray` extra); everything else, and the index written, is as without it.
        """
        with self._write_lock():
            embedder, ray_embedder = self.embedder, None
            if engine is not None and engine.engine == "ray":
                # Made (and Ray reached) before any file is read: a wrong address fails in seconds.
                ray_embedder = RayEmbedder(self.embedder(), engine)
                embedder = lambda: ray_embedder  # noqa: E731
            try:
                ingestor = Ingestor(
                    self.store, self.generations, self.config, embedder, progress, on_progress, self.remote
                )
                return ingestor.run(path, rebuild=rebuild, compact=compact, only=only)
            finally:
                if ray_embedder is not None:
                    ray_embedder.close()  # shuts down a Ray it started; one the caller started runs on

    def search(
        self, query: str, k: int = 5, mode: str | None = None, weights: dict[str, float] | None = None
    ) -> list[SearchHit]:
        """The k chunks that best answer `query`, best first.

        mode: bm25, tfidf, dense or hybrid (default from the config); weights: hybrid weight per retriever.
        """
        retrieval = self.config.retrieval
        if mode is not None or weights is not None:
            retrieval = dataclasses.replace(
                retrieval, mode=mode or retrieval.mode, weights=weights or retrieval.weights
            )
        failed: tuple[int, StoreFormatError] | None = None  # the generation that failed, and how
        while True:
            with self.store.transaction():
                number = self.store.generation()
                if failed is not None and failed[0] == number:
                    raise failed[1]  # the store has not moved on: that generation itself is damaged
                try:
                    chosen = retrieve(self._current_generation(), query, k, retrieval)
                except StoreFormatError as exc:
                    # Ingests keep the current generation and the one before. A snapshot taken before two
                    # ingests in a row committed names one they have pruned: look again in a new snapshot.
                    failed = (number, exc)
                    continue
                rows = self.store.chunks([c.chunk_id for c in chosen])
                break
        return [
            SearchHit(
                rank=rank,
                score=c.score,
                chunk_id=c.chunk_id,
                document_id=row.document_id,
                source=row.source,
                text=row.text,
                position=row.position,
                metadata=row.metadata,
                scores=c.scores,
                ranks=c.ranks,
            )
            for rank, (c, row) in enumerate(((c, rows[c.chunk_id]) for c in chosen if c.chunk_id in rows), 1)
        ]

    def ask(
        self,
        question: str,
        *,
        stream: bool = False,
        llm: LLM | None = None,
        answer: AnswerConfig | None = None,
    ) -> Answer | AnswerStream:
        """Answer `question` from the indexed documents, citing passages as [1], [2].

        With `stream=True` the result is an `AnswerStream`: iterate over it for the text as it is
        generated, then read `.answer`. When no chunk is relevant enough the answer is a refusal and the
        model is not loaded. `llm` and `answer` replace this index's generator and answer settings for
        this question only: one open index serves several models without being loaded again.
        """
        return self._answerer(llm, answer).ask(question, stream=stream)

    def ask_many(self, questions: list[str], *, batch_size: int = 8) -> list[Answer]:
        """`ask` for many questions, generating up to `batch_size` answers at once: on a CPU a batch of 8
        takes about twice the time of one answer. Same prompts, citations and refusals as `ask`."""
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size}: must be >= 1")
        return self._answerer().ask_many(list(questions), batch_size=batch_size)

    def conversation(self, *, llm: LLM | None = None, answer: AnswerConfig | None = None) -> Conversation:
        """A chat whose follow-up questions are read with the recent turns; `llm` and `answer` as in `ask`."""
        return Conversation(self._answerer(llm, answer))

    def _answerer(self, llm: LLM | None = None, answer: AnswerConfig | None = None) -> Answerer:
        return Answerer(
            lambda q, k, mode: self.search(q, k=k, mode=mode),
            self.llm if llm is None else (lambda: llm),
            answer or self.answer_config,
            self._similarity,
        )

    def _similarity(self, question: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine of each text to the question, with this index's embedding model."""
        embedder = self.embedder()
        return embedder.encode(list(texts)) @ embedder.encode([question], query=True)[0]

    def as_langchain_retriever(self, mode: str | None = None, k: int = 5):
        """This index as a LangChain `BaseRetriever` (needs the `langchain` extra): `invoke(query)` gives
        `Document`s with source, chunk id, scores and ranks in their metadata."""
        from ragtune.rag.interop import langchain_retriever

        return langchain_retriever(self, mode=mode, k=k)

    def as_llamaindex_retriever(self, mode: str | None = None, k: int = 5):
        """This index as a LlamaIndex `BaseRetriever` (needs the `llamaindex` extra): `retrieve(query)`
        gives `NodeWithScore`s, ready for a `RetrieverQueryEngine`."""
        from ragtune.rag.interop import llamaindex_retriever

        return llamaindex_retriever(self, mode=mode, k=k)

    def status(self, verify: bool = False) -> dict[str, Any]:
        """Counts, the current generation, the last ingest and the models in use.

        `verify=True` also reads every file of the current generation and compares it with the checksum
        its manifest recorded (about 0.6 s per GB): the result gains a "verified" entry, or
        StoreFormatError names the damaged file (`ragtune ingest` rebuilds it)."""
        with self.store.transaction():
            counts = self.store.counts()
            generation = self.store.generation()
            last = self.store.last_ingest()
            # The generation of this same snapshot, not one an ingest made current meanwhile.
            if self.remote is not None:
                where = {"backend": "milvus", **self.remote.status(generation)}
                checked = self.remote.verify(generation, counts["chunks"]) if verify else None
            else:
                where = {"backend": "local"}
                checked = self.generations.open(generation, self.embedder).verify() if verify else None
        return {
            "index": str(self.folder.resolve()),
            **counts,
            "generation": generation,
            "last_ingest": None
            if last is None
            else {
                "root": last["root"],
                "finished_at": last["finished_at"],
                "summary": {
                    key: len(value) if isinstance(value, list) else value
                    for key, value in last["report"].items()
                    if key
                    in ("added", "changed", "deleted", "unchanged", "skipped", "chunks_added", "embedded")
                },
            },
            "embedding_model": self.config.embedding.model,
            "dense_index": self.config.dense.index,
            **where,
            "chunking": dataclasses.asdict(self.config.chunking),
            **({"verified": checked} if verify else {}),
        }

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remote_backend(folder: Path, config: RAGConfig, store: Store):
    """The server an index's rows live on, when its config names one (the Milvus backend)."""
    if config.backend.kind != "milvus":
        return None
    from ragtune.rag.backends.milvus_backend import MilvusBackend  # pymilvus is imported when it connects

    return MilvusBackend(folder, config, store)
