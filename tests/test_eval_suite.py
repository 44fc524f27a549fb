"""The suite loader: question kinds from the two golds, and every bad line reported with its number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.errors import InputError
from ragtune.eval.suite import load_suite


def make_suite(root: Path, lines: list, v2: bool = True) -> Path:
    for phase in ("v1", "v2") if v2 else ("v1",):
        (root / "docs" / phase).mkdir(parents=True)
        (root / "docs" / phase / "colony.md").write_text("The colony has 40 nests at Lake Mira.")
    (root / "docs" / "v1" / "owl.md").write_text("The owl hunts over the north meadow.")
    if v2:
        (root / "docs" / "v2" / "kite.md").write_text("The red kite returned.")
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (root / "questions.jsonl").write_text(text)
    return root


GOOD = [
    {"id": "lake", "question": "Where?", "answer": "Lake Mira", "alt": ["Mira"], "doc": "colony.md"},
    {"id": "nests", "question": "How many?", "answer": "40", "answer_v2": "55", "doc": "colony.md"},
    {
        "id": "kite",
        "question": "Which bird returned?",
        "answer": None,
        "answer_v2": "red kite",
        "doc": "kite.md",
    },
    {
        "id": "owl",
        "question": "Where does it hunt?",
        "answer": "north meadow",
        "answer_v2": None,
        "doc": "owl.md",
    },
    {"id": "crown", "question": "What colour is the crown?", "answer": None},
]


def test_kinds_follow_from_the_two_golds(tmp_path):
    suite = load_suite(make_suite(tmp_path, GOOD))
    assert [(q.id, q.kind) for q in suite.questions] == [
        ("lake", "unchanged"),
        ("nests", "changed"),
        ("kite", "added"),
        ("owl", "removed"),
        ("crown", "unanswerable"),
    ]
    assert suite.phases == ["v1", "v2"]
    assert suite.counts() == {"unchanged": 1, "changed": 1, "added": 1, "removed": 1, "unanswerable": 1}


def test_golds_per_phase_with_aliases(tmp_path):
    lake, nests, kite, owl, _ = load_suite(make_suite(tmp_path, GOOD)).questions
    assert lake.golds("v1") == ["Lake Mira", "Mira"] and lake.golds("v2") == ["Lake Mira", "Mira"]
    assert nests.gold("v1") == "40" and nests.gold("v2") == "55"
    assert kite.golds("v1") == [] and owl.golds("v2") == []


def test_aliases_of_a_changed_answer_do_not_carry_over_to_v2(tmp_path):
    line = {"id": "n", "question": "How many?", "answer": "40", "alt": ["forty"], "answer_v2": "55"}
    (question,) = load_suite(make_suite(tmp_path, [line])).questions
    assert question.golds("v2") == ["55"]


def test_a_suite_without_v2_has_one_phase(tmp_path):
    suite = load_suite(make_suite(tmp_path, [GOOD[0], GOOD[4]], v2=False))
    assert suite.phases == ["v1"] and suite.name == tmp_path.name


def test_every_bad_line_is_reported_with_its_number_in_one_message(tmp_path):
    lines = [
        GOOD[0],
        "{not json",
        {"id": "x", "question": "", "answer": "a"},
        {"id": "lake", "question": "Again?", "answer": "b"},
        {"id": "y", "question": "Q?", "answer": "a", "doc": "missing.md"},
        {"id": "z", "question": "Q?", "anwser": "a"},
        ["a", "list"],
        {"id": "w", "question": "Q?", "answer": "a", "doc": "../../etc/passwd"},
    ]
    with pytest.raises(InputError) as caught:
        load_suite(make_suite(tmp_path, lines))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("questions.jsonl: 7 bad line(s)")
    for expected in (
        "line 2: not JSON",
        "line 3: question must be a non-empty string",
        "line 4: id 'lake' already used on line 1",
        "line 5: doc missing.md is not in docs/v1",
        "line 6: unknown key anwser",
        "line 7: not a JSON object",
        "line 8: doc must be a path relative",
    ):
        assert expected in message


def test_answer_v2_without_docs_v2_is_a_bad_line(tmp_path):
    with pytest.raises(InputError, match="line 1: answer_v2 / alt_v2 given but the suite has no docs/v2"):
        load_suite(make_suite(tmp_path, [GOOD[1]], v2=False))


def test_missing_pieces_are_one_line_each(tmp_path):
    with pytest.raises(InputError, match="suite folder .* not found"):
        load_suite(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no docs/v1 folder"):
        load_suite(tmp_path / "empty")
    suite = make_suite(tmp_path / "blank", [])
    with pytest.raises(InputError, match="holds no questions"):
        load_suite(suite)


def test_a_bundled_suite_loads_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = load_suite("heron")
    assert suite.name == "heron" and suite.phases == ["v1", "v2"] and len(suite.questions) >= 60


def test_each_question_falls_in_the_split_its_id_hashes_to(tmp_path):
    """sha1(id)'s first byte even: dev. Pinned here so a question never changes split between versions."""
    suite = load_suite(make_suite(tmp_path, GOOD))
    assert [(q.id, q.split) for q in suite.questions] == [
        ("lake", "test"),
        ("nests", "dev"),
        ("kite", "dev"),
        ("owl", "dev"),
        ("crown", "test"),
    ]


def test_a_bundled_suite_splits_about_half_and_half_in_every_load():
    first, again = load_suite("heron"), load_suite("heron")
    splits = [q.split for q in first.questions]
    assert splits == [q.split for q in again.questions]
    dev, test = splits.count("dev"), splits.count("test")
    assert dev + test == len(splits) and min(dev, test) >= 0.4 * len(splits)


def test_a_split_key_on_the_line_overrides_the_hash(tmp_path):
    lines = [{**GOOD[0], "split": "dev"}, {**GOOD[1], "split": "test"}, GOOD[4]]
    suite = load_suite(make_suite(tmp_path, lines))
    assert [(q.id, q.split) for q in suite.questions] == [
        ("lake", "dev"),
        ("nests", "test"),
        ("crown", "test"),
    ]


def test_a_bad_split_value_is_a_numbered_bad_line(tmp_path):
    lines = [GOOD[0], {**GOOD[1], "split": "train"}]
    with pytest.raises(InputError, match=r"1 bad line\(s\): line 2: split must be dev or test .*'train'"):
        load_suite(make_suite(tmp_path, lines))
