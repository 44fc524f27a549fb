"""Answering: relevance threshold, numbered passages, citations, refusals, streaming, follow-ups."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragtune import RAG, AnswerConfig, GeneratorConfig, InputError, LocalLLM
from ragtune.core.schema import SearchHit
from ragtune.rag.generation.answer import (
    Turn,
    citations,
    fit_passages,
    is_refusal,
    relevant,
)
from ragtune.rag.generation.answerer import Answerer, AnswerStream


class ScriptedLLM:
    """Answers with a fixed text, word by word when streamed; records every prompt it is given."""

    def __init__(self, reply: str = "LoRA learns a low-rank update [1]."):
        self.reply = reply
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, max_new_tokens=None) -> str:
        self.prompts.append(messages)
        return self.reply

    def stream(self, messages, max_new_tokens=None) -> Iterator[str]:
        self.prompts.append(messages)
        for word in self.reply.split(" "):
            yield word + " "


def hit(rank: int, text: str, **scores: float) -> SearchHit:
    return SearchHit(rank, 0.0, f"d:{rank:05d}", "d", f"/docs/doc{rank}.md", text, rank, {}, scores, {})


@pytest.fixture
def llm() -> ScriptedLLM:
    return ScriptedLLM()


@pytest.fixture
def ask_rag(tmp_path, corpus, embedder, llm: ScriptedLLM) -> RAG:
    """An index of the tiny corpus answered by the scripted model (fake embedder: bag-of-words cosine)."""
    # The fake embedder's hashed bag of words gives unrelated questions a cosine up to ~0.33.
    answer = AnswerConfig(min_scores={"dense": 0.4})
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm, answer=answer) as opened:
        opened.ingest(corpus, progress=False)
        yield opened


def test_relevant_keeps_hits_every_thresholded_retriever_scored_high_enough():
    hits = [hit(1, "a", dense=0.6, bm25=2.0), hit(2, "b", dense=0.1, bm25=9.0), hit(3, "c", bm25=5.0)]
    assert [h.rank for h in relevant(hits, {"dense": 0.3})] == [1]  # hit 3 ranked below dense's candidates


def test_relevant_ignores_thresholds_of_retrievers_that_did_not_search():
    hits = [hit(1, "a", bm25=0.5)]
    assert relevant(hits, {"dense": 0.3}) == hits


@pytest.mark.parametrize(
    ("text", "expected"),
    [("see [2] and [1], again [2]", [2, 1]), ("no citation", []), ("[0] [4] [3]", [3])],
)
def test_citations_are_passage_numbers_in_first_cited_order(text, expected):
    assert citations(text, passages=3) == expected


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("I don't know.", True),
        ("The context does not contain the answer.", True),
        ("It is not in the documents.", True),
        ("LoRA learns a low-rank update [1].", False),
    ],
)
def test_refusals_are_recognised(text, refused):
    assert is_refusal(text) is refused


def test_passages_are_numbered_and_cut_to_the_token_budget():
    hits = [hit(1, "one two three four five six seven eight nine ten"), hit(2, "eleven twelve")]
    passages = fit_passages(hits, budget=10, count_tokens=lambda t: len(t.split()))
    assert len(passages) == 1 and passages[0].startswith("[1] doc1.md") and passages[0].endswith("…")
    assert len(passages[0].split()) <= 11
    assert fit_passages(hits, budget=100, count_tokens=lambda t: len(t.split()))[1].startswith("[2]")


def test_answer_cites_the_numbered_passages_it_was_given(ask_rag: RAG, llm: ScriptedLLM):
    answer = ask_rag.ask("how does LoRA learn a low-rank update?")
    assert not answer.refused and answer.citations == [1]
    assert "lora.md" in answer.sources[0].source
    prompt = llm.prompts[0][-1]["content"]
    assert "[1] " in prompt and "Question: how does LoRA learn a low-rank update?" in prompt


def test_no_relevant_chunk_is_a_refusal_without_calling_the_model(ask_rag: RAG, llm: ScriptedLLM):
    answer = ask_rag.ask("who won the football world cup in 1954?")
    assert answer.refused and answer.sources == [] and "threshold" in answer.reason
    assert llm.prompts == []


def test_a_model_that_says_it_does_not_know_is_a_refusal(ask_rag: RAG, llm: ScriptedLLM):
    llm.reply = "I don't know, the context does not say."
    answer = ask_rag.ask("what learning rate does LoRA use?")
    assert answer.refused and answer.sources and "model" in answer.reason


def test_a_model_given_for_one_question_answers_it_instead_of_the_index_model(ask_rag: RAG, llm: ScriptedLLM):
    other = ScriptedLLM("QLoRA quantizes to 4-bit NormalFloat [1].")
    answer = ask_rag.ask(
        "What does QLoRA quantize to?", llm=other, answer=AnswerConfig(k=1, answer_mode="free")
    )
    assert answer.text == "QLoRA quantizes to 4-bit NormalFloat [1]."
    assert len(answer.sources) == 1 and other.prompts and not llm.prompts


def test_a_conversation_with_its_own_model_keeps_using_it(ask_rag: RAG, llm: ScriptedLLM):
    other = ScriptedLLM("LoRA learns BA [1].")
    chat = ask_rag.conversation(llm=other, answer=AnswerConfig(answer_mode="free"))
    chat.ask("What does LoRA learn?")
    chat.ask("And what is it scaled by?")
    assert len(other.prompts) == 2 and not llm.prompts


def test_streaming_yields_pieces_then_the_whole_answer(ask_rag: RAG):
    stream = ask_rag.ask("how does LoRA learn a low-rank update?", stream=True)
    assert isinstance(stream, AnswerStream)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces).strip() == stream.answer.text


def test_a_refusal_streams_too(ask_rag: RAG):
    stream = ask_rag.ask("who won the football world cup in 1954?", stream=True)
    assert list(stream) == [AnswerConfig().refusal] and stream.answer.refused


def test_follow_up_is_asked_with_the_recent_turns(ask_rag: RAG, llm: ScriptedLLM):
    chat = ask_rag.conversation()
    chat.ask("how does LoRA learn a low-rank update?")
    chat.ask("and what scales it?")
    second = llm.prompts[1]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "how does LoRA learn a low-rank update?"


def test_conversation_keeps_only_the_window_of_turns(rag: RAG, corpus, llm: ScriptedLLM):
    rag.ingest(corpus, progress=False)
    config = AnswerConfig(history_turns=1, min_scores={})
    answerer = Answerer(lambda q, k, mode: rag.search(q, k=k, mode=mode), lambda: llm, config)
    from ragtune.rag.generation.answerer import Conversation

    chat = Conversation(answerer)
    for question in ("what is LoRA?", "what is QLoRA?", "what is BM25 length normalisation?"):
        chat.ask(question)
    roles = [m["role"] for m in llm.prompts[-1]]
    assert roles == ["system", "user", "assistant", "user"]
    assert llm.prompts[-1][1]["content"] == "what is QLoRA?"


def test_bad_answer_config_names_the_field():
    with pytest.raises(InputError, match="history_turns"):
        AnswerConfig(history_turns=-1)
    with pytest.raises(InputError, match="min_scores"):
        AnswerConfig(min_scores={"colbert": 0.5})
    with pytest.raises(InputError, match="min_confidence=1.5: must be between 0 and 1"):
        AnswerConfig(min_confidence=1.5)


def test_tiny_real_model_answers_and_streams(tmp_path, corpus, embedder, tiny_llm_dir):
    """The whole free-generation path with a real (random) transformers model: chat template, generate,
    stream, then verification."""
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=6))
    rag = RAG.open(
        tmp_path / "index", embedder=embedder, generator=llm, answer=AnswerConfig(answer_mode="free")
    )
    rag.ingest(corpus, progress=False)
    answer = rag.ask("how does LoRA learn a low-rank update?")
    assert answer.text and answer.sources
    stream = rag.ask("how does LoRA learn a low-rank update?", stream=True)
    pieces = list(stream)
    assert len(pieces) >= 2
    assert stream.answer.text == answer.text  # greedy: streamed and whole answers agree
    assert answer.mode == "free"


def test_auto_mode_answers_a_small_model_with_a_verified_span(tmp_path, corpus, embedder, tiny_llm_dir):
    """auto picks the grounded mode for a model under 1B parameters: the answer is a passage's own text,
    cited, verified, with the sentence that holds it."""
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=6))
    auto = AnswerConfig(answer_mode="auto")
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm, answer=auto) as rag:
        rag.ingest(corpus, progress=False)
        answer = rag.ask("What does QLoRA quantize the base model to?")
    assert answer.mode == "grounded" and answer.verified and not answer.refused
    (n,) = answer.citations
    (support,) = answer.supports
    assert support.n == n and answer.text.endswith(f" [{n}]")
    assert answer.sources[n - 1].text[support.start : support.end] == support.span
    assert support.span in answer.text  # the answer quotes the sentence that holds the span


def test_a_stricter_min_confidence_declines_what_the_fitted_threshold_answers(
    tmp_path, corpus, embedder, tiny_llm_dir
):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=6))
    question = "What does QLoRA quantize the base model to?"
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm) as rag:
        rag.ingest(corpus, progress=False)
        fitted = rag.ask(question)
    strict = AnswerConfig(min_confidence=1.0)
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm, answer=strict) as rag:
        declined = rag.ask(question)
    assert not fitted.refused and fitted.mode == "grounded"
    assert declined.refused and declined.reason.endswith(f"({fitted.confidence:.2f} < 1.00)")


class SmallWindowLLM(ScriptedLLM):
    """A scripted model with a context window of `window` words, `max_new_tokens` of them for the answer."""

    def __init__(self, window: int, max_new_tokens: int = 20):
        super().__init__()
        self.context_window = window
        self.max_new_tokens = max_new_tokens


def words(n: int, word: str = "lora") -> str:
    return " ".join([word] * n)


def answerer_over(hits: list[SearchHit], llm: ScriptedLLM, **config) -> Answerer:
    config = {"answer_mode": "free", **config}  # these tests are about the prompt the model writes from
    return Answerer(lambda q, k, mode: hits, lambda: llm, AnswerConfig(min_scores={}, **config))


def prompt_words(messages) -> int:
    return sum(len(m["content"].split()) + 4 for m in messages)  # as answer.prompt_tokens counts a fake


def test_lowest_ranked_passages_are_dropped_to_fit_the_context_window():
    llm = SmallWindowLLM(window=150)  # 130 words for the prompt; with three passages it has 165
    hits = [hit(1, words(40)), hit(2, words(40)), hit(3, words(40))]
    answer = answerer_over(hits, llm).ask("what is LoRA?")
    assert answer.notes == ["passage [3] dropped to fit the model's 150-token context"]
    assert [h.rank for h in answer.sources] == [1, 2]
    assert prompt_words(llm.prompts[0]) == 123


def test_a_passage_that_almost_fits_is_shortened_not_dropped():
    llm = SmallWindowLLM(window=140)  # 120 words for the prompt; with both passages it has 123
    answer = answerer_over([hit(1, words(40)), hit(2, words(40))], llm).ask("what is LoRA?")
    assert answer.notes == ["passage [2] shortened to fit the model's 140-token context"]
    assert len(answer.sources) == 2 and llm.prompts[0][-1]["content"].count("…") == 1
    assert prompt_words(llm.prompts[0]) <= 140 - 20


def test_older_turns_are_left_out_after_the_lower_passages():
    llm = SmallWindowLLM(window=160)  # 140 words: passage [1] and one turn (131)
    history = [Turn(f"question {n} " + words(20, "why"), words(20, "because")) for n in range(3)]
    hits = [hit(1, words(40)), hit(2, words(40))]
    answer = answerer_over(hits, llm).ask("what is LoRA?", history=history)
    assert answer.notes == [
        "passage [2] dropped to fit the model's 160-token context",
        "2 earlier turns left out to fit the model's 160-token context",
    ]
    prompt = llm.prompts[0]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"].startswith("question 2")  # the newest turn is the one kept
    assert "[1] doc1.md" in prompt[-1]["content"]


def test_a_question_too_long_for_the_model_is_refused_with_its_size_and_the_limit():
    llm = SmallWindowLLM(window=100)
    with pytest.raises(InputError, match=r"^the question is too long: 1,0\d\d tokens .* holds 100 tokens"):
        answerer_over([hit(1, words(10))], llm).ask(words(1000, "why"))
    assert llm.prompts == []


def test_a_question_that_leaves_no_room_for_a_passage_is_a_refusal_without_the_model():
    llm = SmallWindowLLM(window=100)
    answer = answerer_over([hit(1, words(40))], llm).ask(words(40, "why"))  # 76 of 80 words
    assert answer.refused and answer.sources == [] and "context" in answer.reason
    assert answer.notes == ["passage [1] dropped to fit the model's 100-token context"]
    assert llm.prompts == []


def test_a_prompt_that_fits_is_left_whole():
    llm = SmallWindowLLM(window=2048)
    answer = answerer_over([hit(1, words(40)), hit(2, words(40))], llm).ask("what is LoRA?")
    assert answer.notes == [] and len(answer.sources) == 2


def test_tiny_real_model_prompt_is_fitted_to_its_window(tmp_path, corpus, embedder, tiny_llm_dir):
    """The tiny model reads 512 tokens; long passages are cut so prompt + answer stay within it."""
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=200))
    read: list[int] = []  # the prompt length the model's first forward pass is given
    llm.model.register_forward_pre_hook(
        lambda module, args, kwargs: read.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    hits = [hit(n, words(150, "adapter")) for n in range(1, 4)]
    answer = answerer_over(hits, llm).ask("how does LoRA learn a low-rank update?")
    assert answer.notes and answer.notes[-1].endswith("to fit the model's 512-token context")
    assert llm.context_window == 512 and 512 - 200 - 20 < read[0] <= 512 - 200


def test_tiny_real_model_refuses_a_100kb_question_before_generating(tiny_llm_dir):
    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    question = "how does LoRA learn ? " * 4500  # ~100 KB
    with pytest.raises(InputError, match=r"tokens with its prompt, but the model's context holds 512 tokens"):
        answerer_over([hit(1, "LoRA learns a low-rank update")], llm).ask(question)


class BatchingLLM(ScriptedLLM):
    """A scripted model that also answers in batches, and records their sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def generate_batch(self, conversations, max_new_tokens=None) -> list[str]:
        self.batches.append(len(conversations))
        return [self.generate(messages) for messages in conversations]


def test_ask_many_batches_the_prompts_and_keeps_refusals_in_place(tmp_path, corpus, embedder):
    llm = BatchingLLM()
    answer = AnswerConfig(min_scores={"dense": 0.4})
    with RAG.open(tmp_path / "index", embedder=embedder, generator=llm, answer=answer) as rag:
        rag.ingest(corpus, progress=False)
        questions = [
            "how does LoRA learn a low-rank update?",
            "who won the football world cup in 1954?",
            "what does QLoRA quantize the base model to?",
            "how does LoRA learn a low-rank update BA scaled by alpha?",
        ]
        answers = rag.ask_many(questions, batch_size=2)
        one_by_one = [rag.ask(q) for q in questions]
    assert [a.question for a in answers] == questions
    assert [a.refused for a in answers] == [False, True, False, False]
    assert llm.batches == [2, 1]  # the refusal never reached the model
    for batched, alone in zip(answers, one_by_one, strict=True):
        assert (batched.text, batched.citations, batched.sources) == (
            alone.text,
            alone.citations,
            alone.sources,
        )


def test_ask_many_works_with_a_model_that_cannot_batch(ask_rag: RAG, llm: ScriptedLLM):
    answers = ask_rag.ask_many(["how does LoRA learn a low-rank update?"] * 3, batch_size=2)
    assert [a.text for a in answers] == [llm.reply] * 3 and len(llm.prompts) == 3


def test_ask_many_refuses_a_batch_size_below_one(ask_rag: RAG):
    with pytest.raises(InputError, match="batch_size=0"):
        ask_rag.ask_many(["q"], batch_size=0)
