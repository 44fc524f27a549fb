"""Searches while ingests commit, from threads and from other processes; ingests killed with SIGKILL at
each step; changed index-time settings refused; faiss searched from many threads at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ragtune import RAG
from ragtune.core.errors import InputError, StoreFormatError
from ragtune.indexes.dense import DenseIndex
from ragtune.rag.config import RAGConfig
from ragtune.rag.ingest.chunking import ChunkingConfig
from tests.conftest import FakeEmbedder

REPO = Path(__file__).resolve().parents[1]
FILES_PER_ROUND = 4
ALL_THREE = {"bm25": 1.0, "tfidf": 1.0, "dense": 1.0}


def write_round(folder: Path, number: int) -> None:
    """Round `number` of the documents: new file names every round, so a search that mixed one round's
    index with another round's store would find chunks the store no longer has, and come back short."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for item in range(FILES_PER_ROUND):
        (folder / f"r{number}-{item}.txt").write_text(f"shared topic words round{number} item{item}")


def rounds_seen(rag: RAG, mode: str) -> tuple[int, set[str]]:
    """How many hits a search for what every document says returns, and which rounds they come from."""
    hits = rag.search("shared topic words", k=10, mode=mode, weights=ALL_THREE if mode == "hybrid" else None)
    return len(hits), {Path(h.source).name.split("-")[0] for h in hits}


def test_searches_in_threads_during_ingest_commits_never_mix_generations(tmp_path):
    docs = tmp_path / "docs"
    write_round(docs, 0)
    rag = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    rag.ingest(docs, progress=False)
    stop = threading.Event()
    seen: list[tuple[int, set[str]]] = []
    errors: list[BaseException] = []

    def search(mode: str) -> None:
        while not stop.is_set():
            try:
                seen.append(rounds_seen(rag, mode))
            except BaseException as exc:  # collected: an exception in a thread would be lost
                errors.append(exc)

    readers = [threading.Thread(target=search, args=(mode,)) for mode in ("bm25", "dense", "hybrid")]
    for reader in readers:
        reader.start()
    try:
        for number in range(1, 6):
            write_round(docs, number)
            assert rag.ingest(docs, progress=False).generation == number + 1
            time.sleep(0.05)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert errors == []
    assert all(count == FILES_PER_ROUND and len(rounds) == 1 for count, rounds in seen), seen
    assert len({next(iter(rounds)) for _, rounds in seen}) >= 2  # the searches did overlap the ingests


READER = """
import json, sys, time
from pathlib import Path
from ragtune import RAG
from tests.conftest import FakeEmbedder
from tests.test_concurrency import rounds_seen

index, out, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
rag = RAG.open(index, embedder=FakeEmbedder())
seen, errors = [], []
while True:
    try:
        count, rounds = rounds_seen(rag, "hybrid")
        seen.append([count, sorted(rounds)])
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    out.with_suffix(".ready").touch()
    if stop.exists():
        break
out.write_text(json.dumps({"seen": seen, "errors": errors}))
"""


def test_searches_in_other_processes_during_ingest_commits_never_mix_generations(tmp_path):
    docs = tmp_path / "docs"
    write_round(docs, 0)
    rag = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    rag.ingest(docs, progress=False)
    stop = tmp_path / "stop"
    outs = [tmp_path / f"reader{i}.json" for i in range(2)]
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(rag.folder), str(out), str(stop)], cwd=REPO)
        for out in outs
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(out.with_suffix(".ready").exists() for out in outs):
            assert time.monotonic() < deadline and all(r.poll() is None for r in readers), "readers died"
            time.sleep(0.05)
        for number in range(1, 6):
            write_round(docs, number)
            rag.ingest(docs, progress=False)
            time.sleep(0.1)
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=120)
    results = [json.loads(out.read_text()) for out in outs]
    assert [r["errors"] for r in results] == [[], []]
    seen = [entry for r in results for entry in r["seen"]]
    assert all(count == FILES_PER_ROUND and len(rounds) == 1 for count, rounds in seen), seen
    assert len({rounds[0] for _, rounds in seen}) >= 2  # the searches did overlap the ingests


# A child ingest that stops for good at one named step, so the test can SIGKILL it there.
KILLED_INGEST = """
import sys, time
from pathlib import Path
from ragtune import RAG
from ragtune.rag.store import segment_writer
from ragtune.rag.store.database import Store
from ragtune.rag.store.generations import Generations
from tests.conftest import FakeEmbedder

index, docs, point, marker = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])

def stop_here():
    marker.touch()
    time.sleep(600)

def after(owner, name):
    original = getattr(owner, name)
    def patched(*args, **kwargs):
        result = original(*args, **kwargs)
        stop_here()
        return result
    setattr(owner, name, patched)

class StoppingEmbedder(FakeEmbedder):
    def encode(self, texts, *, query=False, progress=False):
        if not query:
            stop_here()
        return super().encode(texts, query=query, progress=progress)

if point == "saving":
    after(segment_writer, "write_segment")  # inside the new segment's temporary folder
elif point == "written":
    after(Generations, "write_segmented")  # the generation is in place, the store does not name it yet
elif point == "committing":
    after(Store, "record_ingest")  # inside the store's write transaction, before COMMIT
rag = RAG.open(index, embedder=StoppingEmbedder() if point == "embedding" else FakeEmbedder())
rag.ingest(docs, progress=False)
"""


@pytest.mark.parametrize("point", ["embedding", "saving", "written", "committing"])
def test_an_ingest_killed_at_any_step_leaves_the_previous_generation_serving(rag, corpus, point, tmp_path):
    rag.ingest(corpus, progress=False)
    before = [h.chunk_id for h in rag.search("adapter weights", k=4)]
    (corpus / "new.md").write_text("# Perplexity\n\nPerplexity is the exponential of the mean loss.")
    marker = tmp_path / "stopped"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_INGEST, str(rag.folder), str(corpus), point, str(marker)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "the child ingest never got there"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)

    reader = RAG.open(rag.folder, embedder=FakeEmbedder())
    assert reader.status()["generation"] == 1
    assert [h.chunk_id for h in reader.search("adapter weights", k=4)] == before
    assert not reader.search("perplexity exponential", k=3, mode="bm25")

    report = reader.ingest(corpus, progress=False)
    assert report.added == [str(corpus / "new.md")] and report.repaired is None
    assert [Path(h.source).name for h in reader.search("perplexity exponential", k=1, mode="bm25")] == [
        "new.md"
    ]
    generations = sorted(p.name for p in (rag.folder / "generations").iterdir())
    assert generations == ["000001", f"{report.generation:06d}"]  # no orphan, no temporary folder
    listed = {
        entry["name"]
        for number in generations
        for entry in json.loads((rag.folder / "generations" / number / "manifest.json").read_text())[
            "segments"
        ]
    }
    assert sorted(p.name for p in (rag.folder / "segments").iterdir()) == sorted(listed)


def test_an_existing_index_refuses_other_index_time_settings(tmp_path, corpus):
    rag = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    rag.ingest(corpus, progress=False)
    other = RAGConfig(chunking=ChunkingConfig(chunk_size=400, chunk_overlap=50))
    with pytest.raises(InputError, match="other chunking settings"):
        RAG.open(tmp_path / "index", other, embedder=FakeEmbedder())
    assert len(RAG.open(tmp_path / "index", embedder=FakeEmbedder()).search("adapter", k=10)) >= 1


def test_dense_searches_from_many_threads_run_faiss_on_one_thread_each():
    import faiss

    texts = [f"word{i} word{i % 7} word{i % 13}" for i in range(300)]
    index = DenseIndex.empty(FakeEmbedder()).updated(np.zeros(0, dtype=bool), texts)
    expected = {q: index.search(q, 5).rows.tolist() for q in ("word3", "word5 word6", "word12")}
    search = index.faiss_index.search
    during: list[int] = []

    def spy(*args, **kwargs):
        during.append(faiss.omp_get_max_threads())
        return search(*args, **kwargs)

    index.faiss_index.search = spy
    main_threads = faiss.omp_get_max_threads()
    results: list[bool] = []

    def searches() -> None:
        faiss.omp_set_num_threads(2)  # each thread's own OpenMP setting, which a search must restore
        for _ in range(50):
            results.extend(index.search(q, 5).rows.tolist() == rows for q, rows in expected.items())
        results.append(faiss.omp_get_max_threads() == 2)

    threads = [threading.Thread(target=searches) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 4 * 151 and all(results)
    assert set(during) == {1}
    assert faiss.omp_get_max_threads() == main_threads


def test_a_search_whose_snapshot_names_a_pruned_generation_looks_again(rag, corpus, monkeypatch):
    rag.ingest(corpus, progress=False)
    first = rag.store.generation()
    for item in range(2):  # two ingests in a row: the first generation is pruned
        (corpus / f"new{item}.txt").write_text(f"adapter note {item}: merging folds BA into the weights")
        rag.ingest(corpus, progress=False)
    assert not rag.generations.folder(first).exists()
    # The search's snapshot was taken before those ingests committed: it still names the first one.
    real = rag.store.generation
    stale = iter([first])
    monkeypatch.setattr(rag.store, "generation", lambda: next(stale, None) or real())
    hits = rag.search("merging folds BA into the weights", k=3, mode="bm25")
    assert {Path(h.source).name for h in hits} >= {"new0.txt", "new1.txt"}


def test_a_damaged_current_generation_is_still_reported(rag, corpus):
    rag.ingest(corpus, progress=False)
    (rag.generations.folder(rag.store.generation()) / "df.npy").write_text("garbage")
    with pytest.raises(StoreFormatError, match="df.npy"):
        rag.search("merging", k=3)
