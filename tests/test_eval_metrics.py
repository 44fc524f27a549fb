"""Metric functions on hand-made answers: normalisation, EM / F1, and each rate the report shows."""

from __future__ import annotations

import pytest

from ragtune.eval.metrics import contains_gold, exact_match, normalise, score, summarise, token_f1
from ragtune.eval.stats import interval, paired_difference
from ragtune.eval.suite import Question

NESTS = Question("nests", "How many nests?", "40", (), "55", (), "colony.md")  # changed in v2
LAKE = Question("lake", "Where is the colony?", "Lake Mira", ("Mira",), "Lake Mira", ("Mira",), "colony.md")
CROWN = Question("crown", "What colour is the heron king's crown?", None, (), None)
OWL = Question("owl", "Where does the owl hunt?", "north meadow", (), None, (), "owl.md")  # removed in v2


def record(answer: str, refused: bool = False, sources=None, citations=()) -> dict:
    return {
        "answer": answer,
        "refused": refused,
        "sources": sources,
        "citations": list(citations),
        "seconds": 1.5,
    }


def passage(source: str, text: str) -> dict:
    return {"source": source, "chunk_id": 1, "text": text}


def test_normalise_drops_case_punctuation_articles_and_thousands_separators():
    assert normalise("The colony counted 2,175,601 nests!") == "colony counted 2175601 nests"
    assert normalise("  An  answer:\tLake-Mira. ") == "answer lake mira"


def test_a_number_with_separators_matches_the_bare_gold():
    assert contains_gold("There were 2,175,601 visitors [1].", ["2175601"])
    assert contains_gold("2175601", ["2,175,601"])


def test_gold_must_occur_as_whole_tokens():
    assert contains_gold("It nests at Lake Mira [1].", ["lake mira"])
    assert not contains_gold("The colony has 40 nests.", ["4"])
    assert not contains_gold("Lake Miranda", ["Lake Mira"])


def test_exact_match_and_token_f1_on_known_cases():
    assert exact_match("Lake Mira.", ["lake mira"])
    assert not exact_match("at Lake Mira", ["lake mira"])
    # "at lake mira" vs "lake mira": precision 2/3, recall 1 -> F1 0.8
    assert token_f1("at Lake Mira", ["lake mira"]) == pytest.approx(0.8)
    assert token_f1("north meadow", ["Lake Mira", "north meadow"]) == 1.0
    assert token_f1("nothing alike", ["lake mira"]) == 0.0


def test_an_alias_counts_as_correct():
    assert score(record("Mira, I believe."), LAKE, "v1").correct


def test_the_v1_gold_in_phase_v2_is_a_stale_answer():
    stale = score(record("The colony has 40 nests."), NESTS, "v2")
    assert stale.stale and not stale.correct
    fresh = score(record("It has 55 nests now."), NESTS, "v2")
    assert fresh.correct and fresh.stale is False
    assert score(record("40"), NESTS, "v1").stale is None  # stale only applies in v2


def test_a_wrong_answer_is_a_hallucination_and_a_refusal_is_not():
    values = summarise([score(record("The colony has 12 nests."), NESTS, "v1")])
    assert values["hallucination"] == [1.0] and values["wrong_answer"] == [1.0]
    assert values["accuracy"] == [0.0] and values["false_abstention"] == [0.0]
    refused = summarise([score(record("I don't know.", refused=True), NESTS, "v1")])
    assert refused["hallucination"] == [0.0] and refused["false_abstention"] == [1.0]


def test_a_refusal_that_contains_the_gold_is_still_not_correct():
    assert not score(record("I cannot say whether it is 40.", refused=True), NESTS, "v1").correct


def test_an_answer_to_an_unanswerable_question_is_invented():
    values = summarise([score(record("The crown is golden."), CROWN, "v1")])
    assert values["invented_answer"] == [1.0] and values["hallucination"] == [1.0]
    assert values["abstention"] == [0.0] and values["accuracy"] == []


def test_declining_an_unanswerable_or_removed_question_is_abstention():
    values = summarise(
        [
            score(record("I don't know.", refused=True), CROWN, "v1"),
            score(record("I don't know.", refused=True), OWL, "v2"),
        ]
    )
    assert values["abstention"] == [1.0, 1.0] and values["hallucination"] == [0.0, 0.0]


def test_attribution_needs_a_cited_passage_that_holds_the_gold():
    sources = [passage("/d/owl.md", "Owls hunt at dusk."), passage("/d/colony.md", "It nests at Lake Mira.")]
    cited_right = score(record("Lake Mira [2]", sources=sources, citations=[2]), LAKE, "v1")
    cited_wrong = score(record("Lake Mira [1]", sources=sources, citations=[1]), LAKE, "v1")
    assert cited_right.attributed is True and cited_wrong.attributed is False
    assert score(record("Lake Mira"), LAKE, "v1").attributed is None  # no retrieval: does not apply


def test_recall_at_k_finds_the_supporting_document_by_path():
    found = score(record("?", sources=[passage("/run/docs/colony.md", "x")]), LAKE, "v1")
    missed = score(record("?", sources=[passage("/run/docs/big-colony.md", "x")]), LAKE, "v1")
    assert found.retrieved_gold_doc is True and missed.retrieved_gold_doc is False


def test_summarise_puts_each_question_under_the_metrics_that_apply():
    values = summarise([score(record("Lake Mira"), LAKE, "v1"), score(record("no idea"), CROWN, "v1")])
    assert values["accuracy"] == [1.0]
    assert values["invented_answer"] == [1.0]
    assert values["hallucination"] == [0.0, 1.0]
    assert values["seconds"] == [1.5, 1.5]
    assert values["stale"] == [] and values["recall_at_k"] == []


def test_interval_is_seeded_and_brackets_the_mean():
    values = [1.0] * 30 + [0.0] * 10
    first, again = interval(values, seed=3), interval(values, seed=3)
    assert first == again
    assert first["n"] == 40 and first["value"] == 0.75
    assert first["lo"] < 0.75 < first["hi"] and first["lo"] > 0.55 and first["hi"] < 0.9


def test_interval_of_nothing_says_so():
    assert interval([]) == {"value": None, "lo": None, "hi": None, "n": 0}


def test_paired_difference_excludes_zero_only_for_a_real_difference():
    better = paired_difference([1.0] * 20, [0.0] * 15 + [1.0] * 5)
    assert better["value"] == 0.75 and better["lo"] > 0
    same = paired_difference([1.0, 0.0] * 10, [0.0, 1.0] * 10)
    assert same["value"] == 0.0 and same["lo"] < 0 < same["hi"]
    with pytest.raises(ValueError, match="same questions"):
        paired_difference([1.0], [1.0, 0.0])
