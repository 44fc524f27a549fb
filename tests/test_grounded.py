"""Answering modes over hand-made passages: verified spans, system citations, abstention, auto mode."""

from __future__ import annotations

import numpy as np

from ragtune.rag.generation import grounded
from ragtune.rag.generation.grounded import Calibration
from ragtune.rag.generation.grounding.candidates import RANK_FEATURES, feature_weights, rank_sentences

PASSAGES = [
    "Heron's watcher waits 5 seconds after the last change before it re-indexes.",
    "The llama-server listens on port 8081 by default. Its context size is 4,096 tokens.",
]
QUESTION = "Which port does the llama-server listen on?"
REFUSAL = "I don't know."
NEVER_ABSTAIN = Calibration()


def extract(
    passages=PASSAGES,
    question=QUESTION,
    calibration=NEVER_ABSTAIN,
    retrieval=0.6,
    abstain=False,
    similarity=None,
):
    return grounded.extractive(question, passages, REFUSAL, retrieval, calibration, similarity, abstain)


def preferring(liked: str):
    """A similarity that finds only sentences holding `liked` close to the question."""
    return lambda question, texts: np.array([1.0 if liked in text else 0.0 for text in texts])


def test_extractive_answers_with_a_passage_sentence_and_cites_it():
    result = extract()
    # The answer quotes the sentence; the support points at the span that answers.
    sentence = "The llama-server listens on port 8081 by default."
    assert (result.text, result.citations, result.verified, result.refused) == (
        f"{sentence} [2]",
        [2],
        True,
        False,
    )
    (support,) = result.supports
    assert (support.n, support.span) == (2, "8081") and PASSAGES[1][support.start : support.end] == "8081"


def test_embedding_similarity_decides_between_sentences_the_words_tie_on():
    question = "How long does the llama-server wait?"  # shares "llama-server" with passage 2 only
    passages = ["The llama-server waits 5 seconds.", "The llama-server waits 30 seconds after a crash."]
    lexical_only = extract(passages, question)
    swayed = extract(
        passages,
        question,
        Calibration(rank_weights=feature_weights(lexical=1.0, similarity=5.0)),
        similarity=preferring("crash"),
    )
    assert lexical_only.supports[0].span == "5 seconds" and lexical_only.citations == [1]
    assert swayed.supports[0].span == "30 seconds" and swayed.citations == [2]


def test_a_sentence_holding_the_asked_type_beats_one_without():
    question = "Which port does the llama-server use?"
    passages = ["The llama-server is started by the watcher.", "The llama-server uses port 8081."]
    ranked = rank_sentences(question, passages, feature_weights(lexical=1.0, type_fit=1.0))
    assert [r.n for r in ranked] == [2, 1] and ranked[0].support.text == "8081"
    assert ranked[1].support.kind == "sentence"  # nothing typed to quote: the sentence supports itself


def test_an_unrelated_passage_gives_no_candidate_and_an_abstention():
    result = extract(passages=["Owls hunt over the meadow at dusk."])
    assert result.refused and result.text == REFUSAL and not result.citations
    assert result.reason == "no passage sentence shares a word with the question"


def abstain_weights(**named: float) -> tuple[float, ...]:
    return tuple(named.get(name, 0.0) for name in grounded.ABSTAIN_FEATURES)


def test_calibrated_abstention_declines_a_weak_best_sentence():
    # Confidence grows with the retrieval score only: a weak retrieval score is declined.
    calibration = Calibration(weights=abstain_weights(retrieval=10.0), bias=-5.0, threshold=0.5)
    weak = extract(calibration=calibration, retrieval=0.2, abstain=True)
    strong = extract(calibration=calibration, retrieval=0.8, abstain=True)
    assert weak.refused and "not a confident answer" in weak.reason and weak.confidence < 0.5
    assert not strong.refused and strong.supports[0].span == "8081"


def test_coverage_is_the_share_of_question_words_in_the_passage_and_in_the_sentence():
    # The question's content words: port, llama, server, listen.
    assert grounded.coverage(QUESTION, PASSAGES[1], "The llama-server listens.") == (1.0, 0.75)
    assert grounded.coverage(QUESTION, PASSAGES[0], PASSAGES[0]) == (0.0, 0.0)


def test_abstention_declines_a_passage_that_never_names_what_is_asked():
    # "licence" is nowhere in the passages: the topic words match, the thing asked for does not.
    calibration = Calibration(weights=abstain_weights(passage_coverage=20.0), bias=-15.0, threshold=0.5)
    asked_elsewhere = extract(
        question="Which licence does the llama-server use?", calibration=calibration, abstain=True
    )
    answered = extract(calibration=calibration, abstain=True)
    assert asked_elsewhere.refused and asked_elsewhere.confidence < 0.5
    assert not answered.refused and answered.citations == [2]


def test_the_shipped_calibration_abstains_on_an_off_topic_passage():
    """The fitted decision, not a hand-set one: a passage that only shares a word is declined."""
    off_topic = ["The port of Hamburg listens to ships arriving at dawn."]
    result = extract(
        off_topic, calibration=Calibration.load(), retrieval=0.1, abstain=True, similarity=preferring("zzz")
    )
    assert result.refused and "not a confident answer" in result.reason


def test_a_free_answer_with_an_invented_number_is_not_verified():
    result = grounded.checked("It listens on port 9090 [2].", PASSAGES, False, "")
    assert not result.verified and "9090" in result.reason and result.citations == [2]


def test_a_free_answer_without_citation_is_cited_by_the_system():
    result = grounded.checked("The watcher waits 5 seconds.", PASSAGES, False, "")
    assert result.verified and result.citations == [1] and result.supports[0].n == 1


def test_auto_is_free_for_a_model_that_cannot_be_measured():
    assert grounded.resolve("auto", object()) == "free"
    assert grounded.resolve("extractive", object()) == "extractive"


def test_auto_is_grounded_for_a_small_local_model(tiny_llm_dir):
    from ragtune import GeneratorConfig, LocalLLM

    llm = LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir)))
    assert llm.info.parameters < grounded.SMALL_MODEL
    assert grounded.resolve("auto", llm) == "grounded"


def test_the_shipped_calibration_loads():
    calibration = Calibration.load()
    assert 0 < calibration.threshold < 1
    assert len(calibration.weights) == len(grounded.ABSTAIN_FEATURES)
    assert len(calibration.rank_weights) == len(RANK_FEATURES)


def test_a_long_sentence_is_quoted_as_a_window_around_the_span():
    filler = " ".join(f"word{i}" for i in range(60))
    passage = f"{filler} The llama-server listens on port 8081 by default {filler}."
    result = extract(passages=[passage])
    text = result.text.removesuffix(" [1]")
    assert text.startswith("…") and text.endswith("…") and "port 8081 by default" in text
    assert len(text) <= grounded.MAX_ANSWER_CHARS + 2
