"""The Streamlit page, driven by Streamlit's AppTest: a tiny index, a tiny real model, real files."""

from __future__ import annotations

from pathlib import Path

import pytest

# Imported, not importorskip'd: the README's set-up installs the ui extra, so a missing streamlit is a
# broken install and must fail here rather than skip.
import streamlit as st
from streamlit.testing.v1 import AppTest

from ragtune import RAG, RAGConfig
from ragtune.indexes.embedding import EmbeddingConfig
from ragtune.ui.settings import UISettings
from tests.test_eval_run import tiny_config, tiny_suite_run

TIMEOUT = 120  # the first run of a test loads the tiny models


def _app(settings_json: str) -> None:
    from ragtune.ui.app import main
    from ragtune.ui.settings import UISettings

    main(UISettings.from_json(settings_json))


@pytest.fixture
def settings(tmp_path, corpus, tiny_model_dir, tiny_llm_dir) -> UISettings:
    """An index of the tiny corpus (tiny sentence-transformers model), answered by the tiny Llama."""
    st.cache_resource.clear()  # one server process per test, as if the app had just started
    index = tmp_path / "index"
    config = RAGConfig(embedding=EmbeddingConfig(model=str(tiny_model_dir)))
    with RAG.open(index, config) as rag:
        rag.ingest(corpus, progress=False)
    return UISettings(
        index=str(index),
        model=str(tiny_llm_dir),
        adapters_dir=str(tmp_path / "adapters"),
        runs_dir=str(tmp_path / "runs"),
    )


@pytest.fixture
def app(settings) -> AppTest:
    at = AppTest.from_function(_app, args=(settings.to_json(),), default_timeout=TIMEOUT)
    return at.run()


def go(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page)
    return at.run()


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question)
    return at.run()


def texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n" + "\n".join(c.value for c in at.caption)


def test_the_page_opens_on_the_chat_without_an_error(app):
    assert not app.exception and not app.error
    assert app.header[0].value == "Ask your documents"
    assert len(app.chat_input) == 1


def test_an_answer_shows_its_verdict_and_its_sources(app):
    ask(app, "What does QLoRA quantize the base model to?")
    assert not app.exception and not app.error
    assert [m.name for m in app.chat_message] == ["user", "assistant"]
    expander = app.expander[0]
    assert expander.label == "Sources (3)"
    shown = "\n".join(m.value for m in expander.markdown)
    assert "**[1]**" in shown and "hybrid" not in shown  # per-retriever evidence, not the fused mode
    assert "bm25 #" in shown and "dense #" in shown
    verdict = app.chat_message[1].caption[0].value
    assert verdict.startswith(("verified against [", "declined (grounded)", "not verified"))


def test_a_question_no_passage_is_relevant_to_is_shown_declined_with_its_reason(app):
    app.sidebar.slider(key="min_dense").set_value(1.0)
    ask(app.run(), "Who won the 2018 football World Cup?")
    assert not app.exception
    assert app.warning[0].value == "Declined: no chunk reached the relevance threshold"
    assert len(app.expander) == 0  # no passage was given to the model


def test_switching_the_retriever_to_bm25_answers_from_bm25_alone(app):
    app.sidebar.selectbox(key="mode").set_value("bm25")
    ask(app.run(), "What does BM25 rank documents by?")
    shown = "\n".join(m.value for m in app.expander[0].markdown)
    assert "bm25 #1" in shown and "dense #" not in shown
    assert "bm25" in shown.split("\n")[0] or "bm25.txt" in shown


def test_follow_ups_stay_in_the_chat_and_new_chat_clears_it(app):
    ask(app, "What does LoRA learn?")
    ask(app, "And what scales it?")
    assert [m.name for m in app.chat_message] == ["user", "assistant"] * 2
    assert len(app.session_state["conversation"].turns) == 2
    app.sidebar.button(key="sidebar_new_chat").click().run()
    assert len(app.chat_message) == 0


def test_changing_the_model_does_not_open_the_index_again(app, monkeypatch, tiny_llm_dir):
    opened = []
    real_open = RAG.open.__func__
    monkeypatch.setattr(
        RAG, "open", classmethod(lambda cls, *a, **k: opened.append(a) or real_open(cls, *a, **k))
    )
    ask(app, "What does LoRA learn?")  # opens the index: the page had not needed it yet
    app.sidebar.selectbox(key="answer_mode").set_value("extractive")
    app.sidebar.selectbox(key="mode").set_value("dense")
    ask(app.run(), "What does Faiss search?")
    assert len(opened) == 1 and len(app.chat_message) == 4


def test_a_model_that_does_not_load_is_one_message_and_the_chat_stays(app, tmp_path):
    app.sidebar.text_input(key="model_path").set_value(str(tmp_path / "no-such-model"))
    ask(app.run(), "What does LoRA learn?")
    assert not app.exception
    assert len(app.error) == 1 and "no-such-model" in app.error[0].value
    assert "Traceback" not in app.error[0].value
    assert len(app.chat_input) == 1


def test_an_uploaded_file_is_indexed_and_answers_after_a_reindex(app, settings):
    go(app, "Documents")
    app.get("file_uploader")[0].set_value(
        ("heron notes.md", b"# Heron\n\nHeron nests in tall reeds by the lake.", "text/markdown")
    )
    app.run()
    assert app.success[0].value == "saved heron notes.md; re-index to search it"
    app.button(key="reindex").click().run()
    assert not app.exception and not app.error
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["added"] == "1" and metrics["skipped"] == "0"
    assert (settings.uploads / "heron notes.md").read_bytes().startswith(b"# Heron")
    go(app, "Ask")
    ask(app, "Where does the heron nest?")
    assert "heron notes.md" in "\n".join(m.value for m in app.expander[0].markdown)


def test_a_file_of_another_type_is_refused_at_upload_and_nothing_is_written(app, settings):
    go(app, "Documents")
    app.get("file_uploader")[0].set_value(("../../evil.exe", b"MZ\x90\x00", "application/octet-stream"))
    app.run()
    assert "file type .exe is not indexed" in app.error[0].value
    assert not settings.uploads.exists() or not any(settings.uploads.iterdir())


def test_a_damaged_pdf_is_saved_but_skipped_at_reindex_with_its_reason(app):
    go(app, "Documents")
    app.get("file_uploader")[0].set_value(("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))
    app.run()
    app.button(key="reindex").click().run()
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["skipped"] == "1" and metrics["added"] == "0"
    rows = app.table[0].value
    assert list(rows["file"]) == ["broken.pdf"] and rows["skipped because"][0]


def test_reindexing_a_folder_that_does_not_exist_is_one_message(app, tmp_path):
    go(app, "Documents")
    app.text_input(key="ingest_folder").set_value(str(tmp_path / "nowhere"))
    app.button(key="reindex").click().run()
    assert len(app.error) == 1 and "does not exist" in app.error[0].value


def test_status_shows_the_index_counts_and_models(app, settings, tiny_model_dir):
    go(app, "Status")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"documents": "6", "chunks": "6", "index generation": "1"}
    shown = texts(app)
    assert str(tiny_model_dir) in shown and "6 added" in shown


def test_a_missing_index_is_explained_on_every_page(tmp_path, tiny_llm_dir):
    settings = UISettings(index=str(tmp_path / "none"), model=str(tiny_llm_dir), runs_dir=str(tmp_path))
    at = AppTest.from_function(_app, args=(settings.to_json(),), default_timeout=TIMEOUT).run()
    assert "There is no index at" in at.info[0].value and len(at.chat_input) == 0
    go(at, "Status")
    assert "There is no index at" in at.info[0].value
    assert not (tmp_path / "none").exists()  # looking does not create it


def test_experiments_says_plainly_when_there_is_no_run(app):
    go(app, "Experiments")
    assert app.info[0].value.startswith("No evaluation run under")


def test_experiments_show_two_runs_side_by_side(app, settings, tiny_llm_dir):
    runs = Path(settings.runs_dir)
    config = tiny_config(tiny_llm_dir)
    first = tiny_suite_run(runs / "a", config, setups="closed-book,rag")
    second = tiny_suite_run(runs / "b", config, setups="closed-book,rag")
    go(app, "Experiments")
    app.multiselect(key="runs").set_value([str(first), str(second)]).run()
    assert not app.exception and not app.error
    assert len(app.columns) >= 2
    assert sum("## Phase v1" in m.value or "Phase v1" in m.value for m in app.markdown) >= 2
    assert len(app.get("image")) >= 4  # the metric and freshness plots of both runs
    assert "minus" in app.expander[0].label and "accuracy" in app.code[0].value


def test_another_tab_keeps_answering_during_a_reindex_and_then_sees_the_new_document(
    app, settings, monkeypatch
):
    import threading

    from ragtune.rag.store.generations import Generations

    writing, release = threading.Event(), threading.Event()
    real_write = Generations.write_segmented

    def slow_write(self, *args, **kwargs):
        writing.set()
        assert release.wait(60), "the test never released the ingest"
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Generations, "write_segmented", slow_write)
    uploader = go(
        AppTest.from_function(_app, args=(settings.to_json(),), default_timeout=TIMEOUT).run(), "Documents"
    )
    uploader.get("file_uploader")[0].set_value(
        ("heron.md", b"# Heron\n\nThe heron nests in tall reeds.", "text/markdown")
    )
    uploader.run().button(key="reindex").click()
    reindex = threading.Thread(target=uploader.run)
    reindex.start()
    try:
        assert writing.wait(60)
        ask(app, "Where does the heron nest?")  # the other tab, while the new generation is being written
        assert not app.exception and not app.error
        assert "heron" not in "\n".join(m.value for m in app.expander[0].markdown)
    finally:
        release.set()
        reindex.join(60)
    assert {m.label: m.value for m in uploader.metric}["added"] == "1"
    ask(app, "Where does the heron nest?")
    assert "heron.md" in app.expander[1].markdown[0].value.replace("\\", "")


def test_an_adapter_found_under_the_adapters_folder_answers_on_its_base(app, settings, tiny_llm_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = Path(settings.adapters_dir) / "runs" / "lora-v1"
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    app.run()
    assert app.sidebar.selectbox(key="adapter").options == ["(none)", str(adapter)]
    app.sidebar.selectbox(key="adapter").set_value(str(adapter))
    ask(app.run(), "What does LoRA learn?")
    assert not app.exception and not app.error
    assert app.session_state["conversation"].answerer.llm().info.adapter == str(adapter)
