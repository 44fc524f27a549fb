"""The index and the models, loaded once per server process and shared by every browser session.

`st.cache_resource` keeps one `RAG` per index folder and one LLM per (model, adapter): changing the
model in the sidebar loads that model (once) and leaves the index as it is. A load that fails is not
cached, so fixing the path and choosing it again works.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ragtune.rag.api import CONFIG_FILE, RAG
from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM


def index_exists(index: str) -> bool:
    return (Path(index).expanduser() / CONFIG_FILE).is_file()


@st.cache_resource(show_spinner="Opening the index…")
def open_index(index: str) -> RAG:
    """The index folder `index` (created with the default settings when it does not exist yet)."""
    return RAG.open(Path(index).expanduser())


@st.cache_resource(show_spinner="Loading the model (the default model converts itself once, ~30 s)…")
def load_llm(model: str, adapter: str | None) -> LocalLLM:
    return LocalLLM.load(GeneratorConfig(model=model, adapter=adapter))
