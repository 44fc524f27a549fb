"""Damaged index files: one line naming the file instead of a traceback, checksums against silent bit rot,
and an ingest that repairs the current generation from the store by itself."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from ragtune import RAG
from ragtune.core.errors import StoreFormatError
from ragtune.indexes.segment import ARRAYS
from tests.conftest import FakeEmbedder

GENERATION = Path("generations") / "000001"
SEGMENT = Path("segments") / "000001-000"  # the one segment the first ingest writes
VECTORS = SEGMENT / "vectors.npy"

# Every file the first generation reads (relative to the index folder), and whether a repair must embed
# the chunks again: only when the vectors or their hashes (or the records vouching for them) are damaged.
FILES = [
    *[(SEGMENT / f"{name}.npy", name in ("vectors", "hashes")) for name in ARRAYS],
    (SEGMENT / "segment.json", False),
    (SEGMENT / "checksums.json", True),
    (Path("vocabulary") / "000001.json", False),
    (GENERATION / "df.npy", False),
    (GENERATION / "manifest.json", True),
]


def scribble(path: Path, keep_size: bool = True) -> None:
    """Overwrite a file with random bytes (of the same length, so no size check can notice)."""
    size = path.stat().st_size if keep_size else 37
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


ALL_THREE = {"bm25": 1.0, "tfidf": 1.0, "dense": 1.0}


def hybrid(rag: RAG, query: str = "adapter weights") -> list[tuple[str, str]]:
    """A search that reads every index of the generation."""
    return [(h.chunk_id, h.text) for h in rag.search(query, k=4, mode="hybrid", weights=ALL_THREE)]


@pytest.mark.parametrize(("name", "reembeds"), FILES)
def test_a_damaged_index_file_is_one_line_naming_it(rag, corpus, name, reembeds):
    rag.ingest(corpus, progress=False)
    scribble(rag.folder / name)
    fresh = RAG.open(rag.folder, embedder=FakeEmbedder())  # another process: nothing cached yet
    with pytest.raises(StoreFormatError) as caught:
        hybrid(fresh)
    message = str(caught.value)
    assert name.name in message and "ragtune ingest" in message and "\n" not in message


@pytest.mark.parametrize(("name", "reembeds"), FILES)
def test_ingest_rebuilds_a_damaged_generation_and_says_so(rag, corpus, embedder, name, reembeds):
    rag.ingest(corpus, progress=False)
    before = hybrid(rag)
    scribble(rag.folder / name)
    embedder.calls.clear()
    report = rag.ingest(corpus, progress=False)  # nothing changed in the documents
    assert report.repaired and name.name in report.repaired
    assert "rebuilt the damaged index" in report.summary()
    assert report.generation == 2
    assert len(embedder.embedded) == (6 if reembeds else 0)
    assert hybrid(RAG.open(rag.folder, embedder=FakeEmbedder())) == before


def test_a_truncated_file_is_caught_on_open_by_its_size(rag, corpus):
    rag.ingest(corpus, progress=False)
    scribble(rag.folder / SEGMENT / "post_rows.npy", keep_size=False)
    with pytest.raises(StoreFormatError, match=r"post_rows\.npy is damaged \(37 bytes, \d+ recorded"):
        RAG.open(rag.folder, embedder=FakeEmbedder()).search("adapter", mode="dense")


def test_random_vectors_past_the_header_are_refused_not_searched(rag, corpus):
    rag.ingest(corpus, progress=False)
    path = rag.folder / VECTORS
    header = len(path.read_bytes()) - 6 * 64 * 4  # 6 chunks of 64 float32 at the end of the file
    data = bytearray(path.read_bytes())
    data[header:] = np.random.default_rng(1).integers(0, 256, len(data) - header, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(StoreFormatError, match="vectors.npy is damaged .*not unit-length embeddings"):
        RAG.open(rag.folder, embedder=FakeEmbedder()).search("adapter", mode="dense")


def flip_one_vector_value(path: Path) -> None:
    """Bit rot that still looks like an embedding: one value of one row becomes 0."""
    vectors = np.load(path)
    row, col = np.argwhere(vectors != 0)[0]
    data = bytearray(path.read_bytes())
    offset = len(data) - vectors.nbytes + (row * vectors.shape[1] + col) * 4
    data[offset : offset + 4] = np.float32(0).tobytes()
    path.write_bytes(bytes(data))


def test_status_verify_names_a_file_whose_checksum_changed(rag, corpus):
    rag.ingest(corpus, progress=False)
    verified = rag.status(verify=True)["verified"]
    assert verified["generation"] == 1 and verified["checksums"] and verified["files"] == len(FILES) - 2
    assert verified["bytes"] > 6 * 64 * 4 and verified["seconds"] >= 0
    flip_one_vector_value(rag.folder / VECTORS)
    with pytest.raises(StoreFormatError, match=r"vectors\.npy does not match the checksum"):
        rag.status(verify=True)
    assert "verified" not in rag.status()  # without verify=True nothing is read


def test_ingest_verifies_the_checksums_of_the_generation_files_it_builds_on(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    df = np.load(rag.folder / GENERATION / "df.npy")
    df[0] += 1  # still a valid array of the same size: only its checksum tells
    np.save(rag.folder / GENERATION / "df.npy", df)
    (corpus / "new.md").write_text("# Perplexity\n\nPerplexity is the exponential of the mean loss.")
    embedder.calls.clear()
    report = rag.ingest(corpus, progress=False)
    assert report.repaired and "df.npy does not match the checksum" in report.repaired
    assert len(embedder.embedded) == 1  # the segment's vectors are intact and reused
    assert rag.status(verify=True)["verified"]["generation"] == 2


def test_a_repair_does_not_reuse_vectors_whose_checksum_changed(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    flip_one_vector_value(rag.folder / VECTORS)
    scribble(rag.folder / GENERATION / "df.npy")  # something the ingest notices, so it repairs
    embedder.calls.clear()
    report = rag.ingest(corpus, progress=False)
    assert report.repaired and len(embedder.embedded) == 6
    assert rag.status(verify=True)["verified"]["generation"] == 2


def test_a_missing_generation_folder_is_rebuilt(rag, corpus):
    rag.ingest(corpus, progress=False)
    before = hybrid(rag)
    for path in sorted((rag.folder / GENERATION).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (rag.folder / GENERATION).rmdir()
    with pytest.raises(StoreFormatError, match="manifest.json is missing or damaged"):
        RAG.open(rag.folder, embedder=FakeEmbedder()).search("adapter")
    assert rag.ingest(corpus, progress=False).repaired
    assert hybrid(rag) == before


def test_a_garbage_store_file_is_one_line(tmp_path):
    folder = tmp_path / "index"
    RAG.open(folder, embedder=FakeEmbedder()).close()
    for name in ("store.sqlite-wal", "store.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)
    scribble(folder / "store.sqlite")
    with pytest.raises(StoreFormatError) as caught:
        RAG.open(folder, embedder=FakeEmbedder())
    message = str(caught.value)
    assert "store.sqlite is damaged or not a ragtune store" in message and "\n" not in message


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": 99}'])
def test_a_garbage_config_file_is_one_line(tmp_path, text):
    folder = tmp_path / "index"
    RAG.open(folder, embedder=FakeEmbedder()).close()
    (folder / "config.json").write_text(text)
    with pytest.raises(StoreFormatError) as caught:
        RAG.open(folder, embedder=FakeEmbedder())
    assert "config" in str(caught.value) and "\n" not in str(caught.value)


def test_store_close_closes_the_connections_of_every_thread(rag, corpus):
    rag.ingest(corpus, progress=False)
    connections = [rag.store._connection()]

    def search() -> None:
        rag.search("adapter", mode="bm25")
        connections.append(rag.store._connection())  # this thread's own connection

    threads = [threading.Thread(target=search) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len({id(db) for db in connections}) == 5
    rag.close()
    for db in connections:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            db.execute("SELECT 1")
    assert [h.source.endswith("lora.md") for h in rag.search("LoRA freezes", k=1, mode="bm25")] == [True]


def test_close_from_several_threads_at_once(rag, corpus):
    rag.ingest(corpus, progress=False)
    connections: list[sqlite3.Connection] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def search_then_close() -> None:
        try:
            rag.search("adapter", mode="bm25")
            connections.append(rag.store._connection())
            barrier.wait(timeout=30)  # all six close at about the same time
            rag.close()
        except BaseException as exc:  # collected: an exception in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=search_then_close) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(connections) == 6
    for db in connections:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            db.execute("SELECT 1")
