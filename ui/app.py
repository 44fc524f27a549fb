"""The ragtune page: a thin layer over `ragtune.RAG` (ask, ingest, status) and the eval run folders.

`ragtune ui` runs `streamlit run` on streamlit_app.py, which calls `main` with the command's settings.
Every expected failure (a missing index, a model that does not load, a bad upload) is one readable
message on the page; anything unexpected is one line too, never a traceback, and the app keeps running.
"""

from __future__ import annotations

import streamlit as st

from ragtune.core.errors import RagtuneError
from ragtune.ui import chat, documents, experiments, status_page
from ragtune.ui.choices import sidebar
from ragtune.ui.settings import UISettings


def main(settings: UISettings) -> None:
    st.set_page_config(page_title="ragtune", page_icon=None, layout="wide")
    try:
        choices = sidebar(settings)
        if st.sidebar.button("New chat", key="sidebar_new_chat"):
            chat.new_chat()
        if choices.page == "Ask":
            chat.page(settings, choices)
        elif choices.page == "Documents":
            documents.page(settings)
        elif choices.page == "Status":
            status_page.page(settings, choices)
        else:
            experiments.page(settings)
    except RagtuneError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 (the page must survive anything; the message names it)
        st.error(f"Something went wrong: {type(exc).__name__}: {exc}. The app keeps running; try again.")
