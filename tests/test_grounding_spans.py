"""Matching helpers and answer-span candidates for grounded answers (pure text, no model)."""

from __future__ import annotations

from ragtune.rag.generation.grounding.candidates import Candidate, feature_weights, rank_sentences, spans_in
from ragtune.rag.generation.grounding.spans import (
    answer_type,
    contains,
    normalise,
    sentences,
)

PASSAGES = [
    "Heron ranks chunks with BM25. It uses k1 = 1.2 and b = 0.75 for all indexes.",
    "The embedding model truncates its input after 256 word pieces. It returns 384 numbers per text.",
    "The wiki has 4,100 documents. A full rebuild of 21,000 chunks takes about 6 minutes.",
]


def texts(text: str) -> list[str]:
    return [text[a:b] for a, b in sentences(text)]


def test_normalise_drops_case_punctuation_articles_and_thousands_separators() -> None:
    assert normalise("The wiki has 2,175,601 rows; see chunk_size!") == "wiki has 2175601 rows see chunk size"


def test_contains_matches_whole_tokens_only() -> None:
    assert contains("It nests at Lake Mira [1].", "lake mira")
    assert not contains("a batch of 40 items", "4")


def test_contains_keeps_a_decimal_whole() -> None:
    assert contains("with k1 = 1.2 and b", "1.2")
    assert not contains("steps 1, 2 and 3", "1.2")
    assert not contains("since version 1.2.3", "1.2")


def test_sentences_keep_decimals_and_abbreviations_inside() -> None:
    text = "Heron uses k1 = 1.2 by default, e.g. for BM25. The b value is 0.75."
    assert texts(text) == ["Heron uses k1 = 1.2 by default, e.g. for BM25.", "The b value is 0.75."]


def test_sentences_split_on_bullets_and_table_rows() -> None:
    text = "Settings:\n- chunk_size is 800\n- top_k is 5\n| key | default |\n| mode | hybrid |"
    assert texts(text) == [
        "Settings:",
        "chunk_size is 800",
        "top_k is 5",
        "| key | default |",
        "| mode | hybrid |",
    ]


def test_sentences_join_lines_a_pdf_wrapped_mid_sentence() -> None:
    text = "RAG cut the hallucination rate from 58% to\n12% on the dev set. Fine-tuning did not."
    assert texts(text) == [
        "RAG cut the hallucination rate from 58% to\n12% on the dev set.",
        "Fine-tuning did not.",
    ]


def test_a_setext_heading_is_a_unit_of_its_own_and_its_underline_none() -> None:
    text = "HERON TROUBLESHOOTING\n=====================\nMaintained by the on-call engineer.\n\nSummary\n-------\nGoal: a LoRA adapter"
    assert texts(text) == [
        "HERON TROUBLESHOOTING",
        "Maintained by the on-call engineer.",
        "Summary",
        "Goal: a LoRA adapter",
    ]


def test_sentence_offsets_point_into_the_text() -> None:
    text = "  First one.  Second one!\n\nThird"
    assert [text[a:b] for a, b in sentences(text)] == ["First one.", "Second one!", "Third"]


def test_answer_type_follows_the_wording_of_the_question() -> None:
    assert answer_type("How many documents does the wiki have?") == "number"
    assert answer_type("On which port does the server listen?") == "number"
    assert answer_type("When was version 0.4 released?") == "date"
    assert answer_type("Who wrote the evaluation report?") == "name"
    assert answer_type("Which cross-encoder model does the guide configure?") == "value"
    assert answer_type("What is the default value of retrieval.mode?") == "value"
    assert answer_type("Why do small models ramble?") == "phrase"


# Ranked by word overlap and answer-type fit only: what these tests check needs no embedding model.
LEXICAL_AND_FIT = feature_weights(lexical=1.0, type_fit=1.0)


def best_support(question: str) -> Candidate:
    return rank_sentences(question, PASSAGES, LEXICAL_AND_FIT)[0].support


def spans_of_sentence(question: str, n: int, i: int) -> list[Candidate]:
    """The typed spans of sentence i of passage n for `question`, best first."""
    a, b = sentences(PASSAGES[n - 1])[i]
    return sorted(spans_in(question, PASSAGES[n - 1], n, a, b), key=lambda c: -c.score)


def test_how_many_is_answered_by_the_number_of_the_right_sentence() -> None:
    best = best_support("How many documents does the wiki have?")
    assert (best.n, best.text, best.kind) == (3, "4,100", "number")
    assert best.sentence == "The wiki has 4,100 documents."
    assert PASSAGES[best.n - 1][best.start : best.end] == best.text


def test_a_number_keeps_its_unit() -> None:
    best = best_support("How long does a full rebuild take?")
    assert (best.n, best.text) == (3, "6 minutes")


def test_the_number_next_to_the_asked_parameter_is_preferred() -> None:
    found = [c.text for c in spans_of_sentence("What value of b does Heron use?", 1, 1) if c.kind == "number"]
    assert found[0] == "0.75"


def test_a_span_repeating_the_question_is_not_a_candidate() -> None:
    found = {c.text for c in spans_of_sentence("How long does a full rebuild of 21,000 chunks take?", 3, 1)}
    assert "6 minutes" in found
    assert "21,000 chunks" not in found and "21,000" not in found


def test_a_value_partly_named_by_the_question_is_kept_whole() -> None:
    passage = 'A DHCP client is set up by creating "/etc/systemd/network/dhcp.network".'
    question = "Which file configures a DHCP client with systemd-networkd?"
    found = [(c.text, c.kind) for c in spans_in(question, passage, 1, 0, len(passage))]
    assert ("/etc/systemd/network/dhcp.network", "value") in found


def test_a_value_the_question_names_whole_is_not_a_candidate() -> None:
    passage = "The heron-7b-docs adapter was trained on `heron-7b-docs` pairs from the wiki."
    question = "What was the heron-7b-docs adapter trained on?"
    assert all("heron-7b-docs" not in c.text for c in spans_in(question, passage, 1, 0, len(passage)))


def test_no_sentence_is_ranked_when_no_passage_shares_a_word_with_the_question() -> None:
    assert (
        rank_sentences("Which licence covers Heron's logo?", ["Bananas are yellow."], LEXICAL_AND_FIT) == []
    )
