"""Check the bundled evaluation suites: every gold answer occurs in the text the index will see.

For each suite in eval/suites/ (or the folders given), per phase: the gold occurs (after the metrics'
normalisation, as whole tokens) in the extracted text of the question's supporting document. And the
kinds are honest: a changed question's v1 gold is gone from its v2 document and its v2 gold was not in
the v1 one; a removed answer is gone from its document's v2 copy, an added one was not in its v1 copy
(a failure), and neither occurs in another document of that phase (a warning: short golds recur).

Suites built from an installed package (source.json) are materialised first; one whose package is not
installed is reported and skipped.

    .venv/bin/python bench/check_suites.py [SUITE_FOLDER ...]

Exit status 1 when any check fails.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from ragtune.core.errors import InputError
from ragtune.eval.fetch import has_source, materialise
from ragtune.eval.metrics import contains_gold
from ragtune.rag.ingest.readers import parse_bytes

SUITES = Path(__file__).resolve().parent.parent / "eval" / "suites"


def extracted_text(path: Path) -> str:
    """The text ingestion gets from one file (same reader, same suffix dispatch)."""
    result = parse_bytes(path.read_bytes(), path.suffix.lower(), str(path))
    return "\n".join(document.text for document in result.documents)


def kind(row: dict) -> str:
    v1 = row.get("answer")
    v2 = row.get("answer_v2", v1)
    if v1 is None and v2 is None:
        return "unanswerable"
    if v1 is None:
        return "added"
    if v2 is None:
        return "removed"
    return "unchanged" if v1 == v2 else "changed"


def version_folders(root: Path) -> dict[str, Path]:
    if has_source(root):
        return materialise(root)
    folders = {"v1": root / "docs" / "v1"}
    if (root / "docs" / "v2").is_dir():
        folders["v2"] = root / "docs" / "v2"
    return folders


def check_suite(root: Path) -> int:
    try:
        folders = version_folders(root)
    except InputError as exc:
        print(f"{root.name}: skipped: {exc}")
        return 0
    texts = {
        phase: {
            str(p.relative_to(folder)): extracted_text(p) for p in sorted(folder.rglob("*")) if p.is_file()
        }
        for phase, folder in folders.items()
    }
    for phase, docs in texts.items():
        print(f"{root.name} {phase}: {len(docs)} files, {sum(map(len, docs.values())):,} characters of text")
    rows = [json.loads(line) for line in (root / "questions.jsonl").read_text().splitlines() if line.strip()]
    problems: list[str] = []
    warnings: list[str] = []
    kinds: Counter[str] = Counter()

    def found(phase: str, gold: str, doc: str | None) -> bool:
        docs = texts.get(phase, {})
        scope = [docs.get(doc, "")] if doc else list(docs.values())
        return any(contains_gold(text, [gold]) for text in scope)

    for row in rows:
        what = kind(row)
        kinds[what] += 1
        qid, doc = row["id"], row.get("doc")
        v1, v2 = row.get("answer"), row.get("answer_v2", row.get("answer"))
        if v1 is not None and not found("v1", v1, doc):
            problems.append(f"{qid} ({what}): v1 gold {v1!r} not in v1/{doc}")
        if "v2" in texts and v2 is not None and not found("v2", v2, doc):
            problems.append(f"{qid} ({what}): v2 gold {v2!r} not in v2/{doc}")
        if what == "changed" and "v2" in texts:
            if found("v2", v1, doc):
                problems.append(f"{qid}: v1 gold {v1!r} still in v2/{doc}")
            if found("v1", v2, doc):
                problems.append(f"{qid}: v2 gold {v2!r} already in v1/{doc}")
        # A removed answer still in its own v2 document, or an added one already in its v1 document,
        # is a wrong kind (FAIL). Elsewhere in the collection it may be a coincidence of a short gold
        # ("2", "seven"): a warning to read, not a failure.
        if what == "removed" and "v2" in texts:
            if doc in texts["v2"] and found("v2", v1, doc):
                problems.append(f"{qid}: removed, but its gold {v1!r} is still in v2/{doc}")
            elif found("v2", v1, None):
                warnings.append(f"{qid}: removed, but its gold {v1!r} occurs in another v2 document")
        if what == "added":
            if doc in texts["v1"] and found("v1", v2, doc):
                problems.append(f"{qid}: added, but its gold {v2!r} is already in v1/{doc}")
            elif found("v1", v2, None):
                warnings.append(f"{qid}: added, but its gold {v2!r} occurs in another v1 document")
    counts = ", ".join(
        f"{name} {kinds[name]}" for name in ("unchanged", "changed", "added", "removed", "unanswerable")
    )
    print(f"{root.name}: {len(rows)} questions: {counts}")
    for problem in problems:
        print(f"  FAIL {problem}")
    for warning in warnings:
        print(f"  WARN {warning}")
    print(f"{root.name}: {'all golds found' if not problems else f'{len(problems)} problems'}")
    return len(problems)


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or sorted(
        p for p in SUITES.iterdir() if (p / "questions.jsonl").is_file()
    )
    failures = sum(check_suite(root) for root in roots)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
