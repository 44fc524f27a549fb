"""A streamed answer that is no longer read must not keep the model from the next question.

Each test leaves a stream unfinished (break, exception, close, `with`), keeps a reference to it, and
then asks again in a thread that must finish within a few seconds.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ragtune import RAG, AnswerConfig, GeneratorConfig, LocalLLM

QUESTION = "how does LoRA learn a low-rank update?"
MAX_NEW_TOKENS = 60


@pytest.fixture
def llm(tiny_llm_dir: Path) -> LocalLLM:
    loaded = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=MAX_NEW_TOKENS))
    loaded.tokenizer.eos_token_id = None  # a random model may end early; make it run to max_new_tokens
    return loaded


@pytest.fixture
def forward_calls(llm: LocalLLM) -> list[int]:
    calls: list[int] = []
    llm.model.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.fixture
def real_rag(tmp_path: Path, corpus: Path, embedder, llm: LocalLLM) -> RAG:
    # Free generation: the mode whose answer is streamed token by token (a grounded one comes whole).
    free = AnswerConfig(answer_mode="free")
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm, answer=free) as opened:
        opened.ingest(corpus, progress=False)
        yield opened


def answers_within(rag: RAG, seconds: float = 20.0) -> bool:
    """Whether a second, whole-answer question returns within `seconds` (it runs in a daemon thread,
    so a hang fails the test instead of the test run)."""
    done = threading.Event()

    def ask() -> None:
        rag.ask(QUESTION)
        done.set()

    threading.Thread(target=ask, daemon=True).start()
    return done.wait(seconds)


def generation_stopped(forward_calls: list[int]) -> bool:
    workers = [t for t in threading.enumerate() if t.name == "ragtune-generate"]
    return not any(t.is_alive() for t in workers) and len(forward_calls) < MAX_NEW_TOKENS


def test_breaking_out_of_a_kept_stream_frees_the_model(real_rag: RAG, forward_calls: list[int]):
    stream = real_rag.ask(QUESTION, stream=True)
    for _piece in stream:
        break
    assert generation_stopped(forward_calls)
    assert answers_within(real_rag)
    assert stream is not None  # still referenced: its reader went away, the stream object did not


def test_an_exception_inside_the_loop_frees_the_model(real_rag: RAG, forward_calls: list[int]):
    stream = real_rag.ask(QUESTION, stream=True)
    with pytest.raises(KeyError):
        for _piece in stream:
            raise KeyError("the client went away")
    assert generation_stopped(forward_calls)
    assert answers_within(real_rag)


def test_close_stops_generation_and_frees_the_model(real_rag: RAG, forward_calls: list[int]):
    stream = real_rag.ask(QUESTION, stream=True)
    pieces = iter(stream)
    assert next(pieces)
    stream.close()
    assert generation_stopped(forward_calls)
    assert answers_within(real_rag)
    with pytest.raises(RuntimeError, match="closed before"):
        stream.answer  # noqa: B018


def test_leaving_a_with_block_early_frees_the_model(real_rag: RAG, forward_calls: list[int]):
    with real_rag.ask(QUESTION, stream=True) as stream:
        pieces = iter(stream)
        assert next(pieces)
    assert generation_stopped(forward_calls)
    assert answers_within(real_rag)


def test_a_stream_read_to_the_end_in_a_with_block_keeps_its_answer(real_rag: RAG):
    with real_rag.ask(QUESTION, stream=True) as stream:
        text = "".join(stream)
    assert stream.answer.text == text.strip() and stream.answer.sources


def test_closing_a_conversation_stream_stops_generation(real_rag: RAG, forward_calls: list[int]):
    chat = real_rag.conversation()
    stream = chat.ask(QUESTION, stream=True)
    pieces = iter(stream)
    assert next(pieces)
    stream.close()
    assert generation_stopped(forward_calls)
    assert answers_within(real_rag)
    assert chat.turns == []  # an answer cut short is not remembered as a turn


def test_a_garbage_collected_inner_stream_stops_generation(llm: LocalLLM, forward_calls: list[int]):
    pieces = llm.stream([{"role": "user", "content": QUESTION}])
    assert next(pieces)
    del pieces  # the last reference: CPython closes the generator right away
    assert generation_stopped(forward_calls)
    assert not llm._lock.locked()


def test_close_from_another_thread_while_the_reader_waits_stops_generation(
    real_rag: RAG, forward_calls: list[int]
):
    stream = real_rag.ask(QUESTION, stream=True)
    pieces = iter(stream)
    assert next(pieces)
    closer = threading.Timer(0.0, stream.close)  # e.g. a server noticing the client hung up
    closer.start()
    read = list(pieces)  # returns once the generation stops, short of max_new_tokens
    closer.join()
    assert len(read) < MAX_NEW_TOKENS and generation_stopped(forward_calls)
    with pytest.raises(RuntimeError, match="closed before"):
        stream.answer  # noqa: B018
