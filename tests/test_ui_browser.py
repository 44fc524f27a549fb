"""The page in a real browser: `ragtune ui` served on localhost, headless Chromium typing and uploading.

Screenshots are saved under the test's temporary folder (and copied to $RAGTUNE_SCREENSHOTS when set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ragtune import RAG, RAGConfig
from ragtune.indexes.embedding import EmbeddingConfig
from tests.browser import browser_missing, by_css, chromium, screenshot, ui_server, wait_for

QUESTION = "What does QLoRA quantize the base model to?"


@pytest.fixture
def browser():
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {missing}")
        pytest.skip(f"no browser here: {missing}")
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def served(tmp_path, corpus, tiny_model_dir, tiny_llm_dir):
    index = tmp_path / "index"
    with RAG.open(index, RAGConfig(embedding=EmbeddingConfig(model=str(tiny_model_dir)))) as rag:
        rag.ingest(corpus, progress=False)
    with ui_server("--index", str(index), "--model", str(tiny_llm_dir), "--runs-dir", str(tmp_path)) as url:
        yield url, index


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    keep = os.environ.get("RAGTUNE_SCREENSHOTS")
    if keep:
        shutil.copytree(folder, keep, dirs_exist_ok=True)


def test_ask_see_sources_upload_and_reindex_in_a_real_browser(browser, served, shots, tmp_path):
    from selenium.webdriver.common.keys import Keys

    url, index = served
    browser.get(url)
    chat_input = wait_for(lambda: by_css(browser, "textarea[data-testid='stChatInputTextArea']"))[0]
    screenshot(browser, shots, "1-opened")

    chat_input.send_keys(QUESTION, Keys.ENTER)
    messages = wait_for(lambda: len(found := by_css(browser, "[data-testid='stChatMessage']")) == 2 and found)
    assert QUESTION in messages[0].text
    expander = wait_for(lambda: by_css(browser, "[data-testid='stExpander']"))[0]
    assert "Sources (3)" in expander.text  # after the arrow icon's ligature name
    verdict = messages[1].text
    assert "verified against [" in verdict or "declined (" in verdict or "not verified" in verdict
    expander.find_element("css selector", "summary").click()
    wait_for(lambda: "chunk " in by_css(browser, "[data-testid='stExpander']")[0].text)
    screenshot(browser, shots, "2-answer-with-sources")

    page_link = wait_for(
        lambda: [e for e in by_css(browser, "[data-testid='stSidebar'] label") if e.text == "Documents"]
    )
    page_link[0].click()
    upload = wait_for(lambda: by_css(browser, "input[type='file']"))[0]
    new_file = tmp_path / "heron notes.md"
    new_file.write_text("# Heron\n\nThe heron nests in tall reeds by the lake.\n")
    upload.send_keys(str(new_file))
    wait_for(lambda: "saved heron notes.md" in browser.find_element("tag name", "body").text)
    reindex = wait_for(lambda: [b for b in by_css(browser, "button") if b.text == "Re-index"])[0]
    reindex.click()
    summary = "1 added, 0 changed, 0 deleted, 0 unchanged, 0 skipped"
    wait_for(lambda: summary in browser.find_element("tag name", "body").text)
    screenshot(browser, shots, "3-reindexed")
    assert (index / "documents" / "heron notes.md").is_file()
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-opened.png",
        "2-answer-with-sources.png",
        "3-reindexed.png",
    ]
