"""Checking an answer's claims against the passages it cites, or attributing them (pure text)."""

from __future__ import annotations

from ragtune.rag.generation.grounding.verify import Support, citations, claims, verify

PASSAGES = [
    "Heron ranks chunks with BM25. It uses k1 = 1.2 and b = 0.75 for all indexes.",
    "The Q2 report was written by Priya Okafor. Merging an adapter needs about 14 GB of RAM.",
    "The file watcher re-indexes 5 seconds after the last change. It ignores hidden folders.",
]


def test_claims_are_numbers_names_and_identifiers_not_citation_markers() -> None:
    answer = "Heron sets chunk_size to 800 characters [1] and Priya Okafor wrote the report [2]."
    assert claims(answer) == ["chunk_size", "800 characters", "Priya Okafor"]


def test_claims_keep_decimals_percentages_and_dates() -> None:
    assert claims("It reached 99.9% on 2024-03-25 with k1 = 1.2.") == ["99.9%", "2024-03-25", "k1", "1.2"]


def test_claims_leave_out_the_capital_opening_a_sentence() -> None:
    assert claims("Merging needs memory.") == []


def test_citations_reads_the_markers_in_order() -> None:
    assert citations("Yes [2]. Also [1, 3] and [2].") == [2, 1, 3]


def test_a_cited_claim_found_in_its_passage_is_verified() -> None:
    result = verify("Heron uses k1 = 1.2 [1].", PASSAGES, [1])
    assert result.verified
    assert result.supports == [Support(1, "It uses k1 = 1.2 and b = 0.75 for all indexes.", 30, 76)]


def test_an_invented_number_is_rejected() -> None:
    result = verify("Heron uses k1 = 1.5 [1].", PASSAGES, [1])
    assert not result.verified
    assert result.unsupported == ["1.5"]
    assert result.reason == "1.5 is not in passage [1]"


def test_an_invented_name_is_rejected() -> None:
    result = verify("The Q2 report was written by John Smith.", PASSAGES, [])
    assert not result.verified
    assert result.unsupported == ["John Smith"]
    assert result.reason == '"John Smith" is not in any passage'


def test_a_true_claim_citing_the_wrong_passage_is_rejected() -> None:
    result = verify("Priya Okafor wrote it [1].", PASSAGES, [1])
    assert not result.verified
    assert result.unsupported == ["Priya Okafor"]


def test_without_citations_the_system_attributes_the_passage_holding_the_claims() -> None:
    result = verify("The report is by Priya Okafor.", PASSAGES, [])
    assert result.verified
    assert result.supports == [Support(2, "The Q2 report was written by Priya Okafor.", 0, 42)]
    assert PASSAGES[1][0:42] == result.supports[0].span


def test_a_number_with_an_equivalent_unit_is_supported() -> None:
    assert verify("It re-indexes after 5 s.", PASSAGES, []).verified
    assert verify("Merging needs 14GB.", PASSAGES, []).verified


def test_a_number_with_a_different_unit_is_rejected() -> None:
    result = verify("Merging needs 14 MB.", PASSAGES, [])
    assert result.unsupported == ["14 MB"]


def test_an_answer_without_claims_needs_most_of_its_words_in_one_sentence() -> None:
    assert verify("it ignores hidden folders", PASSAGES, []).verified
    result = verify("the watcher ignores large binary files", PASSAGES, [])
    assert not result.verified
    assert result.unsupported == ["ignores", "large", "binary"]


def test_a_citation_past_the_last_passage_is_rejected() -> None:
    result = verify("Heron uses k1 = 1.2 [7].", PASSAGES, [7])
    assert not result.verified
    assert result.reason == "cites [7] but there are 3 passages"
