from __future__ import annotations

import queue
import threading
from pathlib import Path

from ragtune.rag.ingest.watch import watch


def test_watch_reindexes_after_files_change(rag, corpus):
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
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
