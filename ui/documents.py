"""The Documents page: upload files into the index's documents folder, name a folder, re-index with progress."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from ragtune.core.errors import RagtuneError
from ragtune.rag.ingest.ingestor import IngestProgress, IngestReport
from ragtune.rag.ingest.readers import SUPPORTED_SUFFIXES
from ragtune.ui.resources import open_index
from ragtune.ui.settings import UISettings
from ragtune.ui.uploads import save_upload

STAGE_LABELS = {
    "reading": "Reading files",
    "embedding": "Embedding new chunks",
    "indexing": "Building BM25 and TF-IDF",
    "saving": "Saving the new index generation",
}


def page(settings: UISettings) -> None:
    st.header("Documents")
    st.markdown(
        f"Uploaded files are kept in `{settings.uploads}` and indexed from there; "
        "uploading a file of the same name again replaces it (the next re-index sees the edit)."
    )
    _uploads(settings)
    folder = st.text_input(
        "Also index this folder (optional)",
        key="ingest_folder",
        help="A folder on the machine running the app; only files that changed since the last ingest are read again.",
    )
    if st.button("Re-index", type="primary", key="reindex"):
        reindex(settings, folder.strip())
    for root, report in st.session_state.get("last_reports", []):
        _summary(root, report)


def _uploads(settings: UISettings) -> None:
    # No `type=` filter: Streamlit would answer a wrong type with its own exception box; save_upload
    # refuses it with a message that lists the types ragtune reads.
    files = st.file_uploader(
        "Add documents",
        accept_multiple_files=True,
        key="uploads",
        help=f"{', '.join(sorted(SUPPORTED_SUFFIXES))}; up to {settings.max_upload_mb:g} MB a file.",
    )
    # The uploader keeps its files across reruns: each is saved once, and its outcome shown every time.
    outcomes: dict[str, tuple[bool, str]] = st.session_state.setdefault("upload_outcomes", {})
    for uploaded in files or []:
        if uploaded.file_id not in outcomes:
            try:
                saved = save_upload(
                    settings.uploads, uploaded.name, uploaded.getvalue(), int(settings.max_upload_mb * 2**20)
                )
                verb = "replaced" if saved.replaced else "saved"
                outcomes[uploaded.file_id] = (True, f"{verb} {saved.name}; re-index to search it")
            except RagtuneError as exc:
                outcomes[uploaded.file_id] = (False, str(exc))
            except OSError as exc:
                outcomes[uploaded.file_id] = (
                    False,
                    f"{uploaded.name!r} could not be written: {exc.strerror or exc}",
                )
        ok, message = outcomes[uploaded.file_id]
        (st.success if ok else st.error)(message)


def reindex(settings: UISettings, folder: str) -> None:
    """Ingest the uploads folder and `folder`, each with a progress bar; keep the reports for the summary."""
    roots = [r for r in (settings.uploads, Path(folder).expanduser() if folder else None) if r is not None]
    roots = [r for r in roots if r != settings.uploads or _has_files(r)]
    if folder and not Path(folder).expanduser().exists():
        st.error(f"{folder} does not exist: give a folder on the machine running the app")
        return
    if not roots:
        st.warning("Nothing to index yet: upload files or give a folder.")
        return
    reports = []
    try:
        rag = open_index(settings.index)
        for root in roots:
            bar = st.progress(0.0, text=f"Indexing {root}")

            def moved(progress: IngestProgress, bar=bar, root=root) -> None:
                label = STAGE_LABELS.get(progress.stage, progress.stage)
                bar.progress(progress.fraction, text=f"{root}: {label} ({progress.done}/{progress.total})")

            reports.append((str(root), rag.ingest(root, progress=False, on_progress=moved)))
            bar.empty()
    except RagtuneError as exc:
        st.error(str(exc))
    st.session_state.last_reports = reports


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(not name.startswith(".") for name in os.listdir(folder))


def _summary(root: str, report: IngestReport) -> None:
    st.subheader(f"Indexed {Path(root).name}")
    st.caption(root)
    counts = {
        "added": len(report.added),
        "changed": len(report.changed),
        "deleted": len(report.deleted),
        "unchanged": report.unchanged,
        "skipped": len(report.skipped),
    }
    for column, (name, value) in zip(st.columns(len(counts)), counts.items(), strict=True):
        column.metric(name, value)
    st.caption(report.summary())
    if report.skipped:
        st.table([{"file": os.path.basename(n.path), "skipped because": n.reason} for n in report.skipped])
    if report.problems:
        st.table([{"file": os.path.basename(n.path), "problem": n.reason} for n in report.problems[:50]])
