from __future__ import annotations

import pytest

from ragtune import Document, plan_ingest
from ragtune.core.schema import chunk_id, content_hash, document_id


def test_document_id_depends_only_on_source_and_record():
    assert document_id("/docs/a.md") == document_id("/docs/a.md")
    assert document_id("/docs/a.md") != document_id("/docs/b.md")
    assert document_id("/docs/faq.jsonl", "q1") != document_id("/docs/faq.jsonl", "q2")


def test_chunk_id_is_document_id_and_position():
    assert chunk_id("abc", 3) == "abc:00003"


def test_content_hash_ignores_metadata_key_order():
    assert content_hash("text", {"a": 1, "b": 2}) == content_hash("text", {"b": 2, "a": 1})
    assert content_hash("text", {"a": 1}) != content_hash("text", {"a": 2})
    assert content_hash("text") != content_hash("text!")


def test_document_exposes_its_id_and_hash():
    doc = Document(source="/docs/a.md", text="hello", metadata={"type": "md"})
    assert doc.id == document_id("/docs/a.md")
    assert doc.content_hash == content_hash("hello", {"type": "md"})


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        ({}, {"a": "1"}, {"added": ("a",)}),
        ({"a": "1"}, {}, {"deleted": ("a",)}),
        ({"a": "1"}, {"a": "2"}, {"changed": ("a",)}),
        ({"a": "1"}, {"a": "1"}, {"unchanged": ("a",)}),
        (
            {"a": "1", "b": "1", "c": "1"},
            {"b": "1", "c": "2", "d": "1"},
            {"added": ("d",), "changed": ("c",), "deleted": ("a",), "unchanged": ("b",)},
        ),
    ],
)
def test_plan_sorts_documents_by_what_happened(stored, incoming, expected):
    plan = plan_ingest(stored, incoming)
    for field in ("added", "changed", "deleted", "unchanged"):
        assert getattr(plan, field) == expected.get(field, ())


def test_plan_of_identical_state_changes_nothing():
    assert not plan_ingest({"a": "1"}, {"a": "1"}).changes_anything
