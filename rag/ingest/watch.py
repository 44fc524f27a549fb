"""Keep an index in sync with a folder: ingest once, then again whenever files settle after a change."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from ragtune.rag.ingest.ingestor import IngestReport


class IngestsFolders(Protocol):
    """What `watch` needs of an index (a `RAG`): its folder, and an ingest."""

    folder: Path

    def ingest(
        self, path: str | Path, *, only: Iterable[str] | None = None, progress: bool = True
    ) -> IngestReport: ...


def watch(
    rag: IngestsFolders,
    path: str | Path,
    on_report: Callable[[IngestReport], None],
    *,
    settle_seconds: float = 1.0,
    stop: threading.Event | None = None,
    progress: bool = False,
) -> None:
    """Ingest `path`, then re-ingest after every burst of file changes, until `stop` is set.

    A burst ends when no file event has arrived for `settle_seconds`, so an editor's save-rename-delete
    dance or a copy of many files causes one ingest, not dozens. That ingest looks only at the paths the
    events named (a folder's whole content when a folder was created, moved or removed), so its cost
    follows the burst, not the size of the folder.
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    root = Path(path).expanduser().resolve()
    index_folder = rag.folder.resolve()
    stop = stop or threading.Event()
    changed = threading.Event()
    paths: set[str] = set()  # named by the events of the current burst
    paths_lock = threading.Lock()

    def relevant(event_path: str) -> bool:
        p = Path(event_path)
        if p == index_folder or index_folder in p.parents:
            return False  # our own writes
        try:
            parts = p.relative_to(root).parts
        except ValueError:
            return True
        return not any(part.startswith(".") for part in parts)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            if event.is_directory and event.event_type == "modified":
                return  # a folder's own time changed: the events of its files name what changed
            named = [str(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
            named = [p for p in named if relevant(p)]
            if named:
                with paths_lock:
                    paths.update(named)
                changed.set()

    # Watch before the first ingest, so that nothing changed while it runs goes unnoticed.
    observer = Observer()
    observer.schedule(Handler(), str(root if root.is_dir() else root.parent), recursive=True)
    observer.start()
    try:
        on_report(rag.ingest(root, progress=progress))
        while not stop.is_set():
            if not changed.wait(timeout=0.2):
                continue
            # Wait until the burst is over before reading anything.
            while True:
                changed.clear()
                if stop.wait(settle_seconds) or not changed.is_set():
                    break
            if stop.is_set():
                break
            with paths_lock:
                burst = sorted(paths)
                paths.clear()
            if root.exists():
                on_report(rag.ingest(root, only=None if root.is_file() else burst, progress=progress))
    finally:
        observer.stop()
        observer.join()
