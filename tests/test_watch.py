from __future__ import annotations

import queue
import threading
from pathlib import Path

from ragtune.rag.ingest.watch import watch


def test_watch_reindexes_after_files_change(rag, corpus, monkeypatch):
    named = []  # what each ingest after the first was told to look at
    ingest = rag.ingest
    monkeypatch.setattr(rag, "ingest", lambda path, **kw: named.append(kw.get("only")) or ingest(path, **kw))
    reports: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(
        target=watch,
        args=(rag, corpus, reports.put),
        kwargs={"settle_seconds": 0.3, "stop": stop},
        daemon=True,
    )
    thread.start()
    try:
        first = reports.get(timeout=60)
        assert len(first.added) == 6

        (corpus / "fresh.md").write_text("# Fresh\n\nA document written while the watcher runs.")
        second = reports.get(timeout=60)
        assert [Path(p).name for p in second.added] == ["fresh.md"]

        (corpus / "lora.md").unlink()
        third = reports.get(timeout=60)
        assert [Path(p).name for p in third.deleted] == ["lora.md"]

        (corpus / "notes").rename(corpus / "archive")  # a folder moved: its files go, and come back
        fourth = reports.get(timeout=60)
        assert sorted(Path(p).name for p in fourth.deleted) == sorted(Path(p).name for p in fourth.added)
        assert (len(fourth.added), fourth.unchanged, fourth.embedded) == (2, 4, 0)  # vectors reused
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert named[0] is None  # the first ingest reads the whole folder; the others only what changed
    names = [{Path(p).name for p in paths} for paths in named[1:4]]
    assert names[:2] == [{"fresh.md"}, {"lora.md"}] and {"archive", "notes"} <= names[2]
    assert {"bm25.txt", "qlora.md", "faiss.md"}.isdisjoint(names[2])
