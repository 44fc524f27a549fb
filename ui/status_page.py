"""The Status page: what the index holds and which models answer."""

from __future__ import annotations

import time

import streamlit as st

from ragtune.ui.choices import Choices
from ragtune.ui.resources import index_exists, open_index
from ragtune.ui.settings import UISettings


def page(settings: UISettings, choices: Choices) -> None:
    st.header("Status")
    if not index_exists(settings.index):
        st.info(f"There is no index at {settings.index} yet: add documents on the Documents page.")
        return
    status = open_index(settings.index).status()
    documents, chunks, generation = st.columns(3)
    documents.metric("documents", status["documents"])
    chunks.metric("chunks", status["chunks"])
    generation.metric("index generation", status["generation"])
    last = status["last_ingest"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["finished_at"]))
        counts = ", ".join(f"{v} {k}" for k, v in last["summary"].items())
        st.markdown(f"**Last ingest:** {when} of `{last['root']}`: {counts}")
    else:
        st.markdown("**Last ingest:** never")
    st.markdown(
        f"**Files:** {status['sources']} ({status['skipped_sources']} skipped)  \n"
        f"**Embedding model:** `{status['embedding_model']}` ({status['dense_index']} index)  \n"
        f"**Chunking:** {status['chunking']['chunk_size']} characters, {status['chunking']['chunk_overlap']} overlap  \n"
        f"**Generator:** `{choices.model}`"
        + (f" + adapter `{choices.adapter}`" if choices.adapter else "")
        + f", answer mode {choices.answer_mode}  \n"
        f"**Index folder:** `{status['index']}`"
    )
