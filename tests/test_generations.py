"""Index generations: atomic switch, crash safety, readers during a rebuild, files without pickle."""

from __future__ import annotations

import os
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ragtune import RAG
from ragtune.core.errors import IndexBusyError
from tests.conftest import FakeEmbedder


def test_a_crash_while_writing_a_generation_leaves_the_previous_one_serving(rag, corpus, monkeypatch):
    rag.ingest(corpus, progress=False)
    before = [h.chunk_id for h in rag.search("QLoRA quantization", k=3)]
    (corpus / "qlora.md").unlink()

    def crash(folder, manifest, next_gen):
        raise OSError("disk full (injected)")

    # A deletion writes no segment, only the generation's own files (the deleted-row bitmaps).
    monkeypatch.setattr("ragtune.rag.store.segment_writer.write_generation_files", crash)
    with pytest.raises(OSError, match="injected"):
        rag.ingest(corpus, progress=False)

    assert rag.status()["generation"] == 1
    assert rag.status()["documents"] == 6
    assert [h.chunk_id for h in rag.search("QLoRA quantization", k=3)] == before
    assert not [p for p in (rag.folder / "generations").iterdir() if p.name.startswith(".tmp")]
    assert not [p for p in (rag.folder / "segments").iterdir() if p.name.startswith(".tmp")]

    monkeypatch.undo()
    report = rag.ingest(corpus, progress=False)
    assert report.generation == 2 and len(report.deleted) == 1


def test_a_generation_left_behind_by_a_crash_before_the_commit_is_replaced(rag, corpus):
    rag.ingest(corpus, progress=False)
    orphan = rag.folder / "generations" / "000002"
    orphan.mkdir()
    (orphan / "half-written").write_text("")
    (corpus / "lora.md").write_text("# LoRA\n\nEdited.")
    report = rag.ingest(corpus, progress=False)
    assert report.generation == 3
    assert not orphan.exists()


def test_searches_during_a_reindex_answer_from_the_old_generation(tmp_path, corpus):
    writer_embedder = GatedEmbedder()
    writer = RAG.open(tmp_path / "index", embedder=writer_embedder)
    writer_embedder.gate.set()
    writer.ingest(corpus, progress=False)
    writer_embedder.gate.clear()

    (corpus / "new.md").write_text("# Perplexity\n\nPerplexity is the exponential of the mean loss.")
    thread = threading.Thread(target=writer.ingest, args=(corpus,), kwargs={"progress": False})
    thread.start()
    assert writer_embedder.entered.wait(timeout=60)

    reader = RAG.open(tmp_path / "index", embedder=FakeEmbedder())  # a second process, in effect
    during = {Path(h.source).name for h in reader.search("perplexity exponential", k=10, mode="bm25")}
    assert "new.md" not in during
    assert reader.status()["generation"] == 1

    writer_embedder.gate.set()
    thread.join(timeout=120)
    after = {Path(h.source).name for h in reader.search("perplexity exponential", k=10, mode="bm25")}
    assert "new.md" in after


def test_a_second_writer_is_refused_while_an_ingest_runs(tmp_path, corpus):
    embedder = GatedEmbedder()
    first = RAG.open(tmp_path / "index", embedder=embedder)
    thread = threading.Thread(target=first.ingest, args=(corpus,), kwargs={"progress": False})
    thread.start()
    assert embedder.entered.wait(timeout=60)
    second = RAG.open(tmp_path / "index", embedder=FakeEmbedder())
    with pytest.raises(IndexBusyError, match="another ingest"):
        second.ingest(corpus, progress=False)
    embedder.gate.set()
    thread.join(timeout=120)


def test_a_damaged_generation_is_rebuilt_from_the_store(rag, corpus):
    rag.ingest(corpus, progress=False)
    (rag.folder / "generations" / "000001" / "chunk_ids.json").write_text("{broken")
    (corpus / "lora.md").write_text("# LoRA\n\nA small edit that forces a new generation.")
    report = rag.ingest(corpus, progress=False)
    assert report.generation == 2
    assert len(rag.search("adapter", k=10, mode="bm25")) >= 1
    assert rag.status()["chunks"] == 6


def test_only_the_current_and_previous_generations_are_kept(rag, corpus):
    for round_ in range(4):
        (corpus / "lora.md").write_text(f"# LoRA\n\nEdit number {round_}.")
        rag.ingest(corpus, progress=False)
    assert sorted(p.name for p in (rag.folder / "generations").iterdir()) == ["000003", "000004"]


def test_index_files_are_plain_arrays_and_json_never_pickle(rag, corpus):
    rag.ingest(corpus, progress=False)
    files = [p for p in (rag.folder / "generations").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".npy", ".npz", ".json", ".faiss"}
    for path in files:
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    with archive.open(name) as member:
                        np.lib.format.read_array(member, allow_pickle=False)


class GatedEmbedder(FakeEmbedder):
    """Blocks inside encode() until `gate` is set, so a test can act while an ingest is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def encode(self, texts, *, query=False, progress=False):
        if not query:
            self.entered.set()
            assert self.gate.wait(timeout=120), "test never released the gate"
        return super().encode(texts, query=query, progress=progress)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_foreign_entries_in_the_generations_folder_are_left_alone(rag, corpus):
    rag.ingest(corpus, progress=False)
    root = rag.folder / "generations"
    (root / "notes.txt").write_text("mine")
    for name in (".tmp-abc", ".tmp-000002-xyz", "backup"):
        (root / name).mkdir()
    (corpus / "lora.md").write_text("# LoRA\n\nEdited.")
    assert rag.ingest(corpus, progress=False).generation == 2
    assert sorted(p.name for p in root.iterdir()) == [
        ".tmp-000002-xyz",
        ".tmp-abc",
        "000001",
        "000002",
        "backup",
        "notes.txt",
    ]


def test_an_ingest_that_changes_nothing_still_removes_what_killed_ingests_left(rag, corpus):
    rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nEdited.")
    rag.ingest(corpus, progress=False)
    root = rag.folder / "generations"
    orphan = root / "000003"  # written, then killed before the store's commit
    killed = root / f".tmp-000004-{dead_pid()}"
    running = root / f".tmp-000004-{os.getppid()}"  # another ingest that is still running
    for folder in (orphan, killed, running):
        folder.mkdir()
    report = rag.ingest(corpus, progress=False)
    assert report.generation == 2 and report.added == report.changed == []
    assert sorted(p.name for p in root.iterdir()) == [running.name, "000001", "000002"]
