"""The sidebar: which page, how to retrieve, which model answers. Returns the user's choices as one value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ragtune.rag.config import MODES
from ragtune.rag.generation.answer import AnswerConfig
from ragtune.ui.discovery import find_adapters
from ragtune.ui.settings import UISettings

PAGES = ("Ask", "Documents", "Status", "Experiments")
NO_ADAPTER = "(none)"
LOCAL_MODEL = "a local model folder…"
_ANSWER = AnswerConfig()
ANSWER_MODES = AnswerConfig.__dataclass_fields__["answer_mode"].metadata["choices"]


@dataclass(frozen=True)
class Choices:
    page: str
    mode: str
    k: int
    min_dense: float  # the dense relevance threshold (AnswerConfig.min_scores["dense"])
    answer_mode: str
    model: str
    adapter: str | None

    def answer_config(self) -> AnswerConfig:
        return AnswerConfig(
            k=self.k, mode=self.mode, min_scores={"dense": self.min_dense}, answer_mode=self.answer_mode
        )


def sidebar(settings: UISettings) -> Choices:
    with st.sidebar:
        st.title("ragtune")
        page = st.radio("Page", PAGES, key="page", label_visibility="collapsed")
        st.subheader("Retrieval")
        mode = st.selectbox("Retriever", MODES, index=MODES.index("hybrid"), key="mode")
        k = st.slider("Passages per question (k)", 1, 10, _ANSWER.k, key="k")
        min_dense = st.slider(
            "Relevance threshold (dense cosine)",
            0.0,
            1.0,
            _ANSWER.min_scores["dense"],
            0.05,
            key="min_dense",
            help="A passage counts when the dense retriever scored it at least this much; with none, the "
            "question is declined. Applies when the retriever includes dense (dense, hybrid).",
        )
        st.subheader("Model")
        model = _model(settings)
        adapters = [str(p) for p in find_adapters(settings.adapters_dir)]
        adapter = st.selectbox(
            "Adapter",
            [NO_ADAPTER, *adapters],
            key="adapter",
            help=f"LoRA adapters found under {settings.adapters_dir} (`ragtune finetune --out DIR`).",
        )
        answer_mode = st.selectbox(
            "Answer mode",
            ANSWER_MODES,
            index=ANSWER_MODES.index(_ANSWER.answer_mode),
            key="answer_mode",
            help=AnswerConfig.__dataclass_fields__["answer_mode"].metadata["help"],
        )
    return Choices(page, mode, k, min_dense, answer_mode, model, None if adapter == NO_ADAPTER else adapter)


def _model(settings: UISettings) -> str:
    start_local = settings.model != "default"
    kind = st.selectbox(
        "Generator",
        ["default (SmolLM2-135M-Instruct)", LOCAL_MODEL],
        index=int(start_local),
        key="model_kind",
    )
    if kind != LOCAL_MODEL:
        return "default"
    folder = st.text_input(
        "Model folder or .gguf file",
        value=settings.model if start_local else "",
        key="model_path",
        help="A Hugging Face model folder (e.g. from `ragtune merge`) or a .gguf file on this machine.",
    )
    return str(Path(folder).expanduser()) if folder.strip() else "default"
