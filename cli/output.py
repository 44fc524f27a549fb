"""What the commands print: ingest reports, search hits, status, an answer's sources.

Human output keeps one line per item, so anything shown from a file (its path, its title) has its
control characters escaped: a file named "a\\nb.txt" would otherwise split a hit over two lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from typing import Any

from ragtune.rag.generation.answer import verdict

MAX_PROBLEMS_SHOWN = 20


def printable(text: str) -> str:
    """`text` with control characters and line separators escaped (\\n, \\x1b, \\u2028)."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in text
    )


def shown_path(source: str) -> str:
    """Relative to the working folder when inside it, otherwise absolute; printable either way."""
    try:
        relative = os.path.relpath(source)
    except ValueError:
        relative = source
    return printable(source if relative.startswith("..") else relative)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False))


def print_report(report, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    print(report.summary())
    for note in report.skipped:
        print(f"  skipped {shown_path(note.path)}: {printable(note.reason)}")
    for note in report.problems[:MAX_PROBLEMS_SHOWN]:
        print(f"  problem in {shown_path(note.path)}: {printable(note.reason)}")
    if len(report.problems) > MAX_PROBLEMS_SHOWN:
        print(f"  ... and {len(report.problems) - MAX_PROBLEMS_SHOWN} more problems (see --json)")


def _heading(hit) -> str:
    title = hit.metadata.get("title")
    return shown_path(hit.source) + (f" — {printable(str(title))}" if title else "")


def print_hits(hits, as_json: bool, query: str) -> None:
    if as_json:
        print_json({"query": query, "hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        print("no matching chunks")
    for hit in hits:
        # Ranks per retriever; a fusion done by a server (Milvus) gives only their scores.
        evidence = ", ".join(f"{kind} #{rank}" for kind, rank in hit.ranks.items()) or ", ".join(
            f"{kind} {score:.3f}" for kind, score in hit.scores.items()
        )
        evidence = f"; {evidence}" if evidence else ""
        print(f"{hit.rank}. {_heading(hit)}  [chunk {hit.position}, score {hit.score:.4f}{evidence}]")
        text = " ".join(hit.text.split())
        print(f"   {printable(text[:300])}{'…' if len(text) > 300 else ''}")


def print_status(status: dict[str, Any]) -> None:
    print(f"index:       {printable(status['index'])}")
    print(
        f"documents:   {status['documents']} from {status['sources']} files ({status['skipped_sources']} skipped)"
    )
    print(f"chunks:      {status['chunks']}")
    print(f"generation:  {status['generation']}")
    last = status["last_ingest"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["finished_at"]))
        counts = ", ".join(f"{v} {k}" for k, v in last["summary"].items())
        print(f"last ingest: {when} of {shown_path(last['root'])}: {counts}")
    else:
        print("last ingest: never")
    print(f"embedding:   {printable(status['embedding_model'])} ({status['dense_index']} index)")
    chunking = status["chunking"]
    print(f"chunking:    {chunking['chunk_size']} characters, {chunking['chunk_overlap']} overlap")
    if status.get("backend") == "milvus":
        print(
            f"backend:     Milvus at {printable(status['milvus_uri'])}, collection {status['milvus_collection']}"
        )
    verified = status.get("verified")
    if verified is not None:
        print(f"verified:    {_verified(verified)}")


def _verified(verified: dict[str, Any]) -> str:
    if "rows" in verified:
        return f"{verified['rows']} rows in Milvus, one per chunk"
    if not verified["checksums"]:
        return f"nothing to compare: generation {verified['generation']} was written before checksums"
    return (
        f"{verified['files']} files ({verified['bytes']:,} bytes) of generation {verified['generation']} "
        "match their checksums"
    )


def print_sources(answer) -> None:
    for note in answer.notes:  # what was cut to fit the model's context window
        print(f"({note})", file=sys.stderr)
    if not answer.sources:
        print(f"({answer.reason})", file=sys.stderr)
        return
    print("\nSources:")
    for n, hit in enumerate(answer.sources, 1):
        mark = "*" if n in answer.citations else " "
        print(f" {mark}[{n}] {_heading(hit)} (chunk {hit.position})")
    print(f"  ({verdict(answer)})")
