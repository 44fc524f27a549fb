"""Ingestion into a RAG folder: what is (re)indexed, what vanishes, what is skipped and why."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ragtune import RAG, RAGConfig, ReaderConfig
from ragtune.core.errors import InputError

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


def test_progress_callback_follows_reading_embedding_indexing_and_saving(rag, corpus, monkeypatch):
    monkeypatch.setattr("ragtune.indexes.embedding.EMBED_SLICE", 4)  # 6 chunks: two slices
    heard = []
    rag.ingest(corpus, progress=False, on_progress=lambda p: heard.append((p.stage, p.done, p.total)))
    stages = [stage for stage, _, _ in heard]
    assert stages == sorted(stages, key=["reading", "embedding", "indexing", "saving"].index)
    assert [h for h in heard if h[0] == "embedding"] == [
        ("embedding", 0, 6),
        ("embedding", 4, 6),
        ("embedding", 6, 6),
    ]
    assert ("reading", 6, 6) in heard and heard[-1] == ("saving", 1, 1)


def test_an_unchanged_folder_reports_only_its_reading(rag, corpus):
    rag.ingest(corpus, progress=False)
    heard = []
    rag.ingest(corpus, progress=False, on_progress=lambda p: heard.append(p.stage))
    assert set(heard) == {"reading"}


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


def make_lora_unreadable(corpus: Path, monkeypatch) -> None:
    """Edit lora.md, then refuse to open it, as a file whose permissions changed would be."""
    (corpus / "lora.md").write_text("# LoRA\n\nAn edit the reader will not be allowed to see.")
    real_open = Path.open

    def refuse_lora(self, *args, **kwargs):
        if self.name == "lora.md":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse_lora)


def test_an_unreadable_file_is_skipped_and_keeps_its_last_good_version(rag, corpus, monkeypatch):
    rag.ingest(corpus, progress=False)
    make_lora_unreadable(corpus, monkeypatch)
    report = rag.ingest(corpus, progress=False)
    assert {Path(n.path).name: n.reason for n in report.skipped} == {
        "lora.md": "cannot read: permission denied"
    }
    assert report.deleted == []
    assert "lora.md" in sources(rag, "low-rank update", "bm25")


def test_a_file_that_vanishes_during_the_scan_is_skipped(rag, corpus, monkeypatch):
    import ragtune.rag.ingest.scan as scan_module

    real_list = scan_module.list_files
    monkeypatch.setattr(
        scan_module, "list_files", lambda root, exclude: [*real_list(root), root / "ghost.md"]
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


# ---------------------------------------------------------------------------------------------------------
# Files that must not cost or leak anything: archive bombs, links, FIFOs; every skip recorded


def zip_bomb_docx(inflated_mb: int) -> bytes:
    """A DOCX of a few KB whose document.xml inflates to `inflated_mb` MB of identical paragraphs."""
    import io
    import zipfile

    import docx

    plain = io.BytesIO()
    docx.Document().save(plain)
    template = zipfile.ZipFile(io.BytesIO(plain.getvalue()))
    head, tail = template.read("word/document.xml").decode().split("<w:body>")
    paragraph = "<w:p><w:r><w:t>boom</w:t></w:r></w:p>"
    body = head + "<w:body>" + paragraph * (inflated_mb * 2**20 // len(paragraph)) + tail
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info in template.infolist():
            archive.writestr(info, body if info.filename == "word/document.xml" else template.read(info))
    return out.getvalue()


def test_a_docx_zip_bomb_is_skipped_by_its_uncompressed_size_and_the_rest_is_indexed(tmp_path, embedder):
    import zipfile

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a-good.md").write_text("Adapters are small.")
    (folder / "bomb.docx").write_bytes(zip_bomb_docx(inflated_mb=3))
    (folder / "z-good.txt").write_text("Quantization saves memory.")
    assert (folder / "bomb.docx").stat().st_size < 50_000
    with zipfile.ZipFile(folder / "bomb.docx") as archive:  # the document plus Word's styles and theme
        inflated = sum(info.file_size for info in archive.infolist()) / 2**20
    assert 3 < inflated < 4
    with RAG.open(
        tmp_path / "index", RAGConfig(reader=ReaderConfig(max_file_mb=1)), embedder=embedder
    ) as rag:
        report = rag.ingest(folder, progress=False)
    assert sorted(Path(p).name for p in report.added) == ["a-good.md", "z-good.txt"]
    assert [(Path(n.path).name, n.reason) for n in report.skipped] == [
        (
            "bomb.docx",
            f"too large uncompressed: this DOCX inflates to {inflated:.1f} MB (> 1.0 MB limit; raise max_file_mb)",
        )
    ]


def skip_reasons(report) -> dict[str, str]:
    return {Path(n.path).name: n.reason for n in report.skipped}


def test_a_symlink_to_a_file_outside_the_folder_is_not_indexed(rag, corpus, tmp_path):
    (tmp_path / "secret.md").write_text("The outside password is swordfish.")
    (corpus / "leak.md").symlink_to(tmp_path / "secret.md")
    report = rag.ingest(corpus, progress=False)
    assert skip_reasons(report) == {"leak.md": "symlink to outside the folder"}
    assert rag.search("swordfish password", k=3, mode="bm25") == []


def test_a_symlink_to_a_folder_outside_is_reported_not_walked(rag, corpus, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.md").write_text("Elsewhere words about swordfish.")
    (corpus / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    report = rag.ingest(corpus, progress=False)
    assert skip_reasons(report) == {"linked": "symlink to outside the folder"}
    assert len(report.added) == 6


def test_a_symlink_inside_the_folder_is_skipped_and_its_target_indexed_once(rag, corpus):
    (corpus / "also-lora.md").symlink_to(corpus / "lora.md")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "up").symlink_to(corpus, target_is_directory=True)  # would loop if followed
    report = rag.ingest(corpus, progress=False)
    assert skip_reasons(report) == {
        "also-lora.md": "symlink to lora.md inside the folder: links are not followed, so nothing is indexed twice",
        "up": "symlink to . inside the folder: links are not followed, so nothing is indexed twice",
    }
    assert sorted(Path(p).name for p in report.added).count("lora.md") == 1 and len(report.added) == 6


def test_a_symlink_loop_and_a_dangling_link_each_have_their_own_reason(rag, corpus):
    (corpus / "loop.md").symlink_to(corpus / "loop.md")
    (corpus / "gone.md").symlink_to(corpus / "deleted.md")
    report = rag.ingest(corpus, progress=False)
    assert skip_reasons(report) == {
        "loop.md": "symlink loop",
        "gone.md": f"dangling symlink: its target {corpus / 'deleted.md'} does not exist",
    }


def test_a_fifo_never_blocks_the_ingest(rag, corpus):
    import threading

    fifo = corpus / "pipe.txt"
    os.mkfifo(fifo)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(rag.ingest(corpus, progress=False)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader so the test run can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(timeout=30)
        pytest.fail("ingest blocked on a FIFO")
    assert skip_reasons(reports[0]) == {"pipe.txt": "not a regular file"}
    assert len(reports[0].added) == 6


def test_status_counts_every_skip_the_report_counts(rag, corpus, monkeypatch):
    import ragtune.rag.ingest.scan as scan_module

    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01binary")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    os.mkfifo(corpus / "pipe.md")
    (corpus / "gone.md").symlink_to(corpus / "deleted.md")
    real_list = scan_module.list_files
    monkeypatch.setattr(
        scan_module, "list_files", lambda root, exclude: [*real_list(root, exclude), root / "ghost.md"]
    )
    report = rag.ingest(corpus, progress=False)
    assert sorted(skip_reasons(report)) == [
        "binary.txt",
        "empty.txt",
        "ghost.md",
        "gone.md",
        "image.png",
        "pipe.md",
    ]
    assert rag.status()["skipped_sources"] == len(report.skipped) == 6
    again = rag.ingest(corpus, progress=False)
    assert rag.status()["skipped_sources"] == len(again.skipped) == 6


def test_an_unreadable_file_counts_as_skipped_in_status_and_keeps_its_last_good_version(
    rag, corpus, monkeypatch
):
    rag.ingest(corpus, progress=False)
    make_lora_unreadable(corpus, monkeypatch)
    report = rag.ingest(corpus, progress=False)
    assert rag.status()["skipped_sources"] == len(report.skipped) == 1
    assert "lora.md" in sources(rag, "low-rank update", "bm25")
    monkeypatch.undo()
    retried = rag.ingest(corpus, progress=False)  # readable again: read, not taken from the stored stat
    assert [Path(p).name for p in retried.changed] == ["lora.md"] and retried.skipped == []
    assert rag.status()["skipped_sources"] == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_text_with_a_byte_order_mark_is_indexed(rag, tmp_path, encoding):
    folder = tmp_path / "bom"
    folder.mkdir()
    text = "Café notes: LoRA adapters are small."
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # the -be/-le codecs write no BOM themselves
    (folder / "notes.txt").write_bytes(data)
    report = rag.ingest(folder, progress=False)
    assert report.skipped == [] and len(report.added) == 1
    assert rag.search("café adapters", k=1, mode="bm25")[0].text == text


def test_an_indexed_file_replaced_by_a_link_to_outside_is_removed_from_the_index(rag, corpus, tmp_path):
    rag.ingest(corpus, progress=False)
    (tmp_path / "secret.md").write_text("The outside password is swordfish.")
    (corpus / "lora.md").unlink()
    (corpus / "lora.md").symlink_to(tmp_path / "secret.md")
    report = rag.ingest(corpus, progress=False)
    assert [Path(p).name for p in report.deleted] == ["lora.md"]
    assert skip_reasons(report) == {"lora.md": "symlink to outside the folder"}
    assert rag.search("swordfish password", k=3, mode="bm25") == []
    assert "lora.md" not in sources(rag, "low-rank update", "bm25")


def test_only_the_named_paths_are_looked_at_and_gone_ones_are_deleted(rag, corpus, embedder):
    rag.ingest(corpus, progress=False)
    (corpus / "lora.md").write_text("# LoRA\n\nLoRA, edited: a low-rank update of frozen weights.")
    (corpus / "faiss.md").unlink()
    (corpus / "new").mkdir()
    (corpus / "new" / "heron.md").write_text("# Heron\n\nHerons nest in reed beds.")
    (corpus / "bm25.txt").write_text("BM25, edited too, but not named: not looked at.")
    shutil.rmtree(corpus / "notes")  # a whole folder gone: both its files go
    named = [
        corpus / "lora.md",
        corpus / "faiss.md",
        corpus / "new",
        corpus / "notes",
        corpus.parent / "elsewhere.md",
    ]
    embedder.calls.clear()
    report = rag.ingest(corpus, only=named, progress=False)
    assert [Path(p).name for p in report.changed] == ["lora.md"]
    assert [Path(p).name for p in report.added] == ["heron.md"]
    assert sorted(Path(p).name for p in report.deleted) == ["faiss.md", "merge.md", "rrf.txt"]
    assert report.unchanged == 2  # qlora.md and bm25.txt, counted, not read
    assert sorted(t.split()[1] for t in embedder.embedded) == ["Heron", "LoRA"]  # one chunk each
    assert "not named" not in " ".join(h.text for h in rag.search("BM25 edited", k=6, mode="bm25"))
    again = rag.ingest(corpus, progress=False)  # a full scan then finds the one edit left
    assert [Path(p).name for p in again.changed] == ["bm25.txt"] and not again.added and not again.deleted
