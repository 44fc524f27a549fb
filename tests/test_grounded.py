"""Answering modes over hand-made passages: verified spans, system citations, abstention, auto mode."""

from __future__ import annotations

from ragtune.rag.generation import grounded
from ragtune.rag.generation.grounded import Calibration

PASSAGES = [
    "Heron's watcher waits 5 seconds after the last change before it re-indexes.",
    "The llama-server listens on port 8081 by default. Its context size is 4,096 tokens.",
]
QUESTION = "Which port does the llama-server listen on?"
MESSAGES = [{"role": "user", "content": QUESTION}]
REFUSAL = "I don't know."
NEVER_ABSTAIN = Calibration()


class PreferringLLM:
    """Scores a continuation by how much it looks like `liked`; records what it was asked to score."""

    def __init__(self, liked: str):
        self.liked = liked
        self.scored: list[str] = []

    def score_continuations(self, messages, continuations, with_end=False):
        self.scored += continuations
        return [0.0 if c == self.liked else -5.0 for c in continuations]


def extract(
    llm, passages=PASSAGES, question=QUESTION, calibration=NEVER_ABSTAIN, retrieval=0.6, abstain=False
):
    return grounded.extractive(question, passages, MESSAGES, llm, REFUSAL, retrieval, calibration, abstain)


def test_extractive_answers_with_a_passage_span_and_cites_it():
    result = extract(PreferringLLM("8081"))
    # The answer quotes the span's sentence; the support points at the span itself.
    sentence = "The llama-server listens on port 8081 by default."
    assert (result.text, result.citations, result.verified, result.refused) == (
        f"{sentence} [2]",
        [2],
        True,
        False,
    )
    (support,) = result.supports
    assert (support.n, support.span) == (2, "8081") and PASSAGES[1][support.start : support.end] == "8081"


def test_the_model_score_decides_between_candidates():
    question = "How many tokens is the llama-server context?"
    lexical_only = extract(PreferringLLM(""), question=question)  # the model likes no candidate more
    assert (
        lexical_only.supports[0].span == "4,096"
    )  # the lexical fit alone prefers the number beside "context"
    llm = PreferringLLM("8081")
    swayed = extract(llm, question=question, calibration=Calibration(model_weight=1.0))
    assert {"4,096", "8081"} <= set(llm.scored) and swayed.supports[0].span == "8081"


def test_an_unrelated_passage_gives_no_candidate_and_an_abstention():
    result = extract(PreferringLLM("x"), passages=["Owls hunt over the meadow at dusk."])
    assert result.refused and result.text == REFUSAL and not result.citations
    assert result.reason == "no passage sentence shares a word with the question"


def test_calibrated_abstention_declines_a_weak_best_span():
    # Confidence grows with the retrieval score only: a weak retrieval score is declined.
    calibration = Calibration(weights=(10.0, 0.0, 0.0), bias=-5.0, threshold=0.5)
    weak = extract(PreferringLLM("8081"), calibration=calibration, retrieval=0.2, abstain=True)
    strong = extract(PreferringLLM("8081"), calibration=calibration, retrieval=0.8, abstain=True)
    assert weak.refused and "not a confident answer" in weak.reason and weak.confidence < 0.5
    assert not strong.refused and strong.supports[0].span == "8081"


def test_a_free_answer_with_an_invented_number_is_not_verified():
    result = grounded.checked("It listens on port 9090 [2].", PASSAGES, False, "")
    assert not result.verified and "9090" in result.reason and result.citations == [2]


def test_a_free_answer_without_citation_is_cited_by_the_system():
    result = grounded.checked("The watcher waits 5 seconds.", PASSAGES, False, "")
    assert result.verified and result.citations == [1] and result.supports[0].n == 1


def test_auto_is_free_for_a_model_that_cannot_be_measured_or_scored():
    assert grounded.resolve("auto", PreferringLLM("x")) == "free"
    assert grounded.resolve("extractive", object()) == "extractive"


def test_auto_is_grounded_for_a_small_local_model(tiny_llm_dir):
    from ragtune import GeneratorConfig, LocalLLM

    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    assert llm.info.parameters < grounded.SMALL_MODEL
    assert grounded.resolve("auto", llm) == "grounded"


def test_the_shipped_calibration_loads():
    calibration = Calibration.load()
    assert 0 < calibration.threshold < 1 and len(calibration.weights) == 3


def test_a_long_sentence_is_quoted_as_a_window_around_the_span():
    filler = " ".join(f"word{i}" for i in range(60))
    passage = f"{filler} The llama-server listens on port 8081 by default {filler}."
    result = extract(PreferringLLM("8081"), passages=[passage])
    text = result.text.removesuffix(" [1]")
    assert text.startswith("…") and text.endswith("…") and "port 8081 by default" in text
    assert len(text) <= grounded.MAX_ANSWER_CHARS + 2
