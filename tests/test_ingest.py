"""Ingestion into a RAG folder: what is (re)indexed, what vanishes, what is skipped and why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ragtune.core.errors import InputError

from ragtune import RAG, RAGConfig, ReaderConfig

MODES = ["bm25", "tfidf", "dense", "hybrid"]


def sources(rag: RAG, query: str, mode: str, k: int = 10) -> set[str]:
    return {Path(h.source).name for h in rag.search(query, k=k, mode=mode)}


def test_first_ingest_adds_every_document(rag, corpus, embedder):
    report = rag.ingest(corpus, progress=False)
    assert len(report.added) == 6
    assert report.generation == 1
    assert report.embedded == report.chunks_added == len(embedder.embedded)
    assert rag.status()["documents"] == 6


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_finds_the_document_that_answers(rag, corpus, mode):
    rag.ingest(corpus, progress=False)
    hits = rag.search("double quantization 4-bit NormalFloat", k=3, mode=mode)
    assert Path(hits[0].source).name == "qlora.md"
    assert hits[0].text.startswith("# QLoRA")


def test_reingesting_an_unchanged_folder_changes_nothing(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    embedded_before = len(embedder.embedded)
    report = rag.ingest(corpus, progress=False)
    assert (report.added, report.changed, report.deleted, report.unchanged) == ([], [], [], 6)
    assert report.generation == 1
    assert len(embedder.embedded) == embedded_before
    assert rag.status()["chunks"] == report.unchanged  # no duplicates: one chunk per tiny document


def test_touching_a_file_without_changing_it_reindexes_nothing(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    os.utime(corpus / "lora.md", (1, 1))
    report = rag.ingest(corpus, progress=False)
    assert report.changed == [] and report.generation == 1


def test_only_the_edited_document_is_rechunked_and_reembedded(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    embedder.calls.clear()
    (corpus / "bm25.txt").write_text("BM25 now explains inverse document frequency in detail.")
    report = rag.ingest(corpus, progress=False)
    assert [Path(p).name for p in report.changed] == ["bm25.txt"]
    assert embedder.embedded == ["BM25 now explains inverse document frequency in detail."]
    assert report.generation == 2
    assert "bm25.txt" in sources(rag, "inverse document frequency", "bm25")


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_document_vanishes_from_every_index(rag, corpus, mode):
    rag.ingest(corpus, progress=False)
    (corpus / "qlora.md").unlink()
    report = rag.ingest(corpus, progress=False)
    assert [Path(p).name for p in report.deleted] == ["qlora.md"]
    assert "qlora.md" not in sources(rag, "QLoRA double quantization NormalFloat", mode, k=20)
    assert rag.status()["documents"] == 5


def test_a_document_that_comes_back_is_indexed_again(rag, corpus):
    text = (corpus / "qlora.md").read_text()
    rag.ingest(corpus, progress=False)
    (corpus / "qlora.md").unlink()
    rag.ingest(corpus, progress=False)
    (corpus / "qlora.md").write_text(text)
    report = rag.ingest(corpus, progress=False)
    assert [Path(p).name for p in report.added] == ["qlora.md"]
    assert "qlora.md" in sources(rag, "QLoRA double quantization", "bm25")


def test_ingesting_a_second_folder_keeps_the_first(rag, corpus, tmp_path):
    rag.ingest(corpus, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "extra.md").write_text("Perplexity is the exponential of the mean token loss.")
    report = rag.ingest(other, progress=False)
    assert report.deleted == [] and len(report.added) == 1
    assert rag.status()["documents"] == 7


def test_ingesting_one_file_of_a_folder_touches_only_that_file(rag, corpus):
    rag.ingest(corpus, progress=False)
    report = rag.ingest(corpus / "lora.md", progress=False)
    assert (report.added, report.deleted, report.unchanged) == ([], [], 1)


def test_hidden_files_and_folders_are_ignored(rag, corpus):
    (corpus / ".secret.md").write_text("hidden words")
    (corpus / ".git").mkdir()
    (corpus / ".git" / "config.txt").write_text("more hidden words")
    report = rag.ingest(corpus, progress=False)
    assert len(report.added) == 6 and report.skipped == []


def test_an_index_folder_inside_the_documents_is_not_ingested(corpus, embedder):
    with RAG.open(corpus / "index", embedder=embedder) as rag:
        rag.ingest(corpus, progress=False)
        (corpus / "lora.md").write_text("# LoRA\n\nEdited, so a second generation is written.")
        report = rag.ingest(corpus, progress=False)
    assert report.added == [] and report.skipped == []


def test_jsonl_records_become_separate_documents_and_bad_lines_are_reported(rag, tmp_path):
    folder = tmp_path / "faq"
    folder.mkdir()
    (folder / "faq.jsonl").write_text(
        '{"id": "q1", "question": "What is r?", "answer": "The LoRA rank."}\n'
        "{not json\n"
        '{"id": "q2", "question": "What is NF4?", "answer": "A 4-bit data type."}\n'
    )
    report = rag.ingest(folder, progress=False)
    assert sorted(p.rsplit("#", 1)[1] for p in report.added) == ["q1", "q2"]
    assert [p.reason.split(":")[0] for p in report.problems] == ["line 2"]


def test_bad_files_are_skipped_with_a_reason_and_the_batch_completes(tmp_path, embedder):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("A perfectly fine document about adapters.")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("   \n\n  ")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog")
    (folder / "huge.txt").write_bytes(b"word " * 300_000)
    (folder / "image.png").write_bytes(b"\x89PNG")
    config = RAGConfig(reader=ReaderConfig(max_file_mb=1))
    with RAG.open(tmp_path / "index", config, embedder=embedder) as rag:
        report = rag.ingest(folder, progress=False)
    reasons = {Path(n.path).name: n.reason for n in report.skipped}
    assert [Path(p).name for p in report.added] == ["good.md"]
    assert reasons["empty.txt"] == "empty file"
    assert reasons["blank.md"].startswith("empty")
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert reasons["broken.pdf"].startswith("cannot read PDF")
    assert reasons["huge.txt"].startswith("too large")
    assert "unsupported file type" in reasons["image.png"]


def test_reader_settings_can_change_when_an_index_is_reopened(tmp_path, corpus, embedder):
    RAG.open(tmp_path / "index", embedder=embedder).ingest(corpus, progress=False)
    (corpus / "big.txt").write_bytes(b"word " * 300_000)
    reopened = RAG.open(tmp_path / "index", RAGConfig(reader=ReaderConfig(max_file_mb=1)), embedder=embedder)
    report = reopened.ingest(corpus, progress=False)
    assert [Path(n.path).name for n in report.skipped] == ["big.txt"]


def test_an_unreadable_file_is_skipped_and_keeps_its_last_good_version(rag, corpus, monkeypatch):
    rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nAn edit the reader will not be allowed to see.")
    real_open = Path.open

    def refuse_lora(self, *args, **kwargs):
        if self.name == "lora.md":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse_lora)
    report = rag.ingest(corpus, progress=False)
    assert {Path(n.path).name: n.reason for n in report.skipped} == {
        "lora.md": "cannot read: permission denied"
    }
    assert report.deleted == []
    assert "lora.md" in sources(rag, "low-rank update", "bm25")


def test_a_file_that_vanishes_during_the_scan_is_skipped(rag, corpus, monkeypatch):
    import ragtune.rag.ingest.ingestor as ingest_module

    real_list = ingest_module.list_files
    monkeypatch.setattr(
        ingest_module, "list_files", lambda root, exclude: [*real_list(root), root / "ghost.md"]
    )
    report = rag.ingest(corpus, progress=False)
    assert [Path(n.path).name for n in report.skipped] == ["ghost.md"]
    assert len(report.added) == 6


def test_a_missing_path_is_one_clear_error(rag, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        rag.ingest(tmp_path / "nope", progress=False)


def test_rebuild_reembeds_everything_and_keeps_the_same_documents(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    embedder.calls.clear()
    report = rag.ingest(corpus, rebuild=True, progress=False)
    assert report.generation == 2
    assert len(embedder.embedded) == 6
    assert rag.status()["documents"] == 6 and rag.status()["chunks"] == 6
