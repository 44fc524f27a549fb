"""The Ask page: a chat whose answers stream in, each with its sources and how far it was verified."""

from __future__ import annotations

import os
import re

import streamlit as st

from ragtune.core.errors import RagtuneError
from ragtune.rag.generation.answer import Answer, verdict
from ragtune.ui.choices import Choices
from ragtune.ui.resources import index_exists, load_llm, open_index
from ragtune.ui.settings import UISettings

# Inline markup only: the text never starts a line (it follows "> " or a heading), so list and heading
# markers at a line start cannot occur. "$" would start LaTeX in Streamlit's markdown.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")


def plain(text: str) -> str:
    """`text` shown as written: markdown's special characters escaped (a document's "#" is not a heading)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def new_chat() -> None:
    for key in ("answers", "conversation", "conversation_key"):
        st.session_state.pop(key, None)


def page(settings: UISettings, choices: Choices) -> None:
    st.header("Ask your documents")
    answers: list[Answer] = st.session_state.setdefault("answers", [])
    for answer in answers:
        with st.chat_message("user"):
            st.markdown(plain(answer.question))
        with st.chat_message("assistant"):
            show(answer)
    if not index_exists(settings.index):
        st.info(
            f"There is no index at {settings.index} yet: add documents on the Documents page, "
            f"or run `ragtune ingest DIR --index {settings.index}`."
        )
        return
    question = st.chat_input("Ask a question about your documents")
    if question is None:
        return
    if not question.strip():
        st.warning("The question is empty.")
        return
    with st.chat_message("user"):
        st.markdown(plain(question))
    with st.chat_message("assistant"):
        answer = _ask(settings, choices, question)
    if answer is not None:
        answers.append(answer)


def _ask(settings: UISettings, choices: Choices, question: str) -> Answer | None:
    try:
        conversation = _conversation(settings, choices)
        live = st.empty()
        stream = conversation.ask(question, stream=True)
        with stream:
            live.write_stream(stream)
        answer = stream.answer
    except RagtuneError as exc:
        st.error(str(exc))
        return None
    with live.container():
        show(answer)
    return answer


def _conversation(settings: UISettings, choices: Choices):
    """The session's conversation, made again (keeping its turns) when the model or settings change."""
    key = (settings.index, choices.model, choices.adapter, choices.answer_config())
    if st.session_state.get("conversation_key") != key:
        llm = load_llm(choices.model, choices.adapter)
        conversation = open_index(settings.index).conversation(llm=llm, answer=choices.answer_config())
        previous = st.session_state.get("conversation")
        if previous is not None:
            conversation.turns = previous.turns
        st.session_state.conversation = conversation
        st.session_state.conversation_key = key
    return st.session_state.conversation


def show(answer: Answer) -> None:
    """One finished answer: its text (or the refusal and why), the verdict line, the sources."""
    if answer.refused:
        st.warning(f"Declined: {answer.reason or 'the passages do not answer the question'}")
    else:
        st.markdown(plain(answer.text))
    st.caption(verdict(answer) + f" · {answer.seconds:.2f} s")
    if answer.sources:
        _sources(answer)


def _sources(answer: Answer) -> None:
    supports = {s.n: s for s in answer.supports}
    with st.expander(f"Sources ({len(answer.sources)})"):
        for n, hit in enumerate(answer.sources, 1):
            cited = "  \n**cited** — " + (
                "verified against this passage" if answer.verified else "not verified"
            )
            title = hit.metadata.get("title")
            heading = f"**[{n}]** {plain(os.path.basename(hit.source))}" + (
                f" — {plain(str(title))}" if title else ""
            )
            evidence = " · ".join(
                f"{kind} #{rank} ({hit.scores[kind]:.3f})" if kind in hit.scores else f"{kind} #{rank}"
                for kind, rank in hit.ranks.items()
            )
            st.markdown(
                f"{heading}  \nchunk {hit.position} · score {hit.score:.4f} · {evidence}"
                + (cited if n in answer.citations else "")
            )
            if n in supports:
                st.markdown(f"supporting span: «{plain(supports[n].span)}»")
            st.markdown("> " + plain(" ".join(hit.text.split())))
