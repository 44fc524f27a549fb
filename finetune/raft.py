"""RAFT-style training data (Zhang et al. 2024, "RAFT: Adapting Language Model to Domain Specific RAG"):
questions generated from an index's own chunks, each asked with its gold chunk among retrieved
distractors, so the model learns to quote the passage that answers and to cite it as [n]; a share of
the examples lose their gold chunk and teach the refusal.

Questions come from templates over one sentence of a chunk that holds a number, a date, a code-like
value or a name: "What is the default chunk size?" from "The default chunk size is 1,000 characters.",
or the fact asked for in place ("... now re-indexes in about how many seconds instead of 6 minutes?").
The prompt is built exactly as `Answerer` builds it at inference (fit_passages + build_messages), so the
adapter is trained on the prompts it will be asked with.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.core.schema import SearchHit
from ragtune.finetune.config import FinetuneConfig
from ragtune.rag.generation.answer import AnswerConfig, build_messages, fit_passages
from ragtune.rag.generation.grounding.spans import contains

RAFT_FILE = "raft.jsonl"
MAX_SENTENCE_WORDS = 30  # longer sentences make rambling questions; their clauses are tried instead
MIN_QUESTION_WORDS = 5
_ABBREVIATIONS = {"e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "fig.", "dr.", "mr.", "ms."}
_STOP_WORDS = (
    "a an the and or but of to in on at by for with from as is are was were be been it its this that these "
    "those than then so if we our you your they their he she his her not no into per about over under "
    "after before when while which who what how where there here do does did can could will would may "
    "also only more most less each every all any some such one two three"
)
_STOP = frozenset(_STOP_WORDS.split())
# Words after a number that end in "s" but are verbs, not units: "the default 60 comes from ...".
_VERB_WORDS = "comes goes takes uses gives means needs makes runs gets has does was is lets keeps"
_VERBS = frozenset(_VERB_WORDS.split())
# Numbers: 131,072 / 0.75 / 25 / 0.8 % — not part of an identifier such as SmolLM2-135M or q_proj.
_NUMBER = re.compile(
    r"(?<![\w.\-/:])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s?%| (?:thousand|million|billion)\b)?(?![\w\-/]|[.:,]\d)"
)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(?:\d{{1,2}} )?(?:{_MONTHS})(?: \d{{1,2}},?)? (?:19|20)\d\d\b|(?<![\w\-])(?:19|20)\d\d(?![\w\-])"
)
_CODE = re.compile(r"`([^`\s\[\]][^`\[\]]{0,40}?)`")  # not `[n]`: a citation marker is no answer
# Only names of two or more capitalised words: single capitalised terms (LoRA, BM25) are mostly the
# topic the question is about, not a fact it asks for.
_NAME = re.compile(r"(?<![\w`])([A-Z][a-z]+(?: [A-Z][a-z]+)+)(?![\w`])")
# "X is Y" / "X defaults to Y": the fact right after a copula makes "What is X?".
_COPULA = re.compile(
    r"^(?P<subject>.+?) (?P<verb>is|are|was|were|defaults to|is set to|equals) (?:about |roughly |only |set to )?$"
)


@dataclass(frozen=True)
class Fact:
    """A question generated from `sentence` of a chunk; `answer` is the span of the chunk that answers it."""

    question: str
    answer: str
    sentence: str
    kind: str  # number, date, value or name
    quote: str = ""  # what the target quotes: the sentence, or the clause of a long one, holding `answer`


@dataclass(frozen=True)
class RaftData:
    """What `write_raft` wrote: the JSONL file, its examples and the longest one in model tokens."""

    path: str
    examples: int
    no_gold: int
    chunks: int
    longest_tokens: int
    seconds: float


def sentences(text: str) -> list[str]:
    """The prose sentences of a chunk: headings, code blocks and table rows are left out (their facts
    do not read as sentences), list markers and markdown emphasis are stripped."""
    out: list[str] = []
    fenced = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or not line or line.startswith(("#", "|", ">")):
            continue
        line = re.sub(r"^(?:[-*+]|\d{1,2}[.)])\s+", "", line).replace("**", "")
        line = re.sub(r"(?<!\w)\*([^*]+)\*(?!\w)", r"\1", line)
        start = 0
        for match in re.finditer(r"[.!?](?=\s+[A-Z(\"'`])", line):
            word = line[: match.end()].rsplit(" ", 1)[-1].lower()
            if word in _ABBREVIATIONS:
                continue  # "e.g. BM25" does not end a sentence
            out.append(line[start : match.end()].strip())
            start = match.end()
        out.append(line[start:].strip())
    return [s for s in out if _prose(s)]


def _prose(sentence: str) -> bool:
    """A whole sentence of running text: capitalised start, closing punctuation, not shouted. A chunk's
    first line often starts mid-sentence and table or PDF rows have no end; neither reads as a question."""
    words = sentence.split()
    shouted = sum(w.isupper() and len(w) > 1 for w in words)
    return (
        len(words) >= MIN_QUESTION_WORDS
        and (sentence[:1].isupper() or sentence[:1] in "`\"'")
        and sentence.rstrip("*_`)\"'")[-1:] in ".!?"
        and shouted * 3 < len(words)
    )


def _clause(sentence: str, start: int, end: int) -> tuple[str, int, int]:
    """The clause of a long sentence that holds [start, end), with the span's offsets in it."""
    if len(sentence.split()) <= MAX_SENTENCE_WORDS:
        return sentence, start, end
    bounds = [0] + [m.end() for m in re.finditer(r"[;:—]\s|,\s(?=(?:and|but|which|while)\s)", sentence)]
    bounds.append(len(sentence))
    for left, right in zip(bounds, bounds[1:], strict=False):
        if left <= start and end <= right:
            return sentence[left:right], start - left, end - left
    return sentence, start, end


def _spans(sentence: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the facts in a sentence, preferred kinds first: numbers, dates, values, names."""
    found: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, kind: str) -> None:
        if not any(start < e and s < end for s, e in taken):
            found.append((start, end, kind))
            taken.append((start, end))

    for match in _DATE.finditer(sentence):
        add(match.start(), match.end(), "date")
    for match in _NUMBER.finditer(sentence):
        add(match.start(), match.end(), "number")
    for match in _CODE.finditer(sentence):
        add(match.start(1), match.end(1), "value")
    for match in _NAME.finditer(sentence):
        if match.start() > 0:  # a capital at the sentence start is no sign of a name
            add(match.start(), match.end(), "name")
    order = {"number": 0, "date": 1, "value": 2, "name": 3}
    return sorted(found, key=lambda f: (order[f[2]], f[0]))


_BREAK = r"[;:]\s|\s[—–]\s"
_AFTER_BREAK = re.compile(rf"\s*(?:{_BREAK}|,\s(?:so|because|which|while|but|and then)\s|\s\()")


def _after_break(before: str) -> str:
    """The text before a fact from its clause's start: "A: For retrieval only, ..." loses "A: ". A dash
    is kept: in "Double quantization — QLoRA technique that ..." it follows the subject."""
    parts = re.split(r"[;:]\s", before)
    return parts[-1] if len(parts) > 1 and len(parts[-1].split()) >= 5 else before


def _tidy(text: str) -> str:
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"\s+", " ", text).strip(" .,;:")
    return text[:1].upper() + text[1:] + "?"


def _unit(after: str) -> str:
    """The word after a number when it reads as its unit ("1,000 characters"), else ""."""
    words = after.split()
    unit = words[0].strip(".,;:()") if words and after[:1] == " " else ""
    ok = unit.isalpha() and len(unit) > 1 and unit.lower() not in _STOP and unit.lower() not in _VERBS
    return unit if ok else ""


def question_for(sentence: str, start: int, end: int, kind: str) -> tuple[str, str] | None:
    """A question that a span of `sentence` at [start, end) answers, and that answer (the span, with a
    number's unit when the question does not name it); None when no template reads."""
    sentence, start, end = _clause(sentence, start, end)
    before, span, after = sentence[:start], sentence[start:end], sentence[end:]
    if (
        before.count("(") > before.count(")")
        or before.count("[") > before.count("]")
        or before.count('"') % 2
    ):
        return None  # asking inside brackets or quotes leaves them open: "(blocks of what value?"
    unit = _unit(after.lstrip("`")) if kind == "number" else ""
    copula = _COPULA.match(before.rstrip(" `") + " ")
    if copula and len(copula["subject"].split()) >= 2:
        subject = _after_break(copula["subject"])
        if not subject[1:2].isupper():  # "The default ..." -> "the default ...", but "BM25 ..." stays
            subject = subject[:1].lower() + subject[1:]
        verb = copula["verb"]
        if verb in ("defaults to", "is set to", "equals"):
            question = f"What is the value of {subject}"
        else:
            question = f"What {verb} {subject}"
        return _tidy(question), (f"{span} {unit}" if unit else span)
    if kind == "number" and unit.endswith("s") and len(unit) > 2:
        asked, after = f"how many {unit}", after.split(unit, 1)[1]
    elif kind == "number":
        asked = "what percentage" if span.endswith("%") else "what value"
    elif kind == "date":
        asked = "which year" if re.fullmatch(r"\d{4}", span) else "which date"
    elif kind == "name" and before.rstrip().endswith(" by"):
        asked = "whom"
    else:
        asked = "what"
    before, after = _after_break(before.rstrip("`")), after.lstrip("`")
    # What follows the next clause break only lengthens the question: "... from the first step: usually".
    after = _AFTER_BREAK.split(after, maxsplit=1)[0]
    # In place: "... re-indexes in about how many seconds instead of 6 minutes?"
    question = _tidy(f"{before}{asked}{after}")
    if (
        question.count("(") != question.count(")")
        or question.count("[") != question.count("]")
        or question.count('"') % 2
    ):
        return None  # a clause cut out of a bracket: "Roughly what value MB on disk in bfloat16)?"
    return question, span


def facts(text: str, per_chunk: int = 3) -> list[Fact]:
    """Up to `per_chunk` questions from a chunk's text, each from a different sentence."""
    out: list[Fact] = []
    for sentence in sentences(text):
        for start, end, kind in _spans(sentence):
            span = sentence[start:end]
            made = question_for(sentence, start, end, kind)
            if made is None:
                continue
            question, answer = made
            # The answer is what the question lacks: a question repeating it gives the answer away.
            if _has(question, span) or len(question.split()) < MIN_QUESTION_WORDS:
                continue
            quote = _clause(sentence, start, end)[0].strip()
            out.append(Fact(question, answer, sentence, kind, quote))
            break
        if len(out) >= per_chunk:
            break
    return out


def _has(text: str, span: str) -> bool:
    """Whether `span` occurs in `text` as whole tokens ("16" is not in "160"), matched as verification
    matches an answer against its passage."""
    return contains(text, span)


def _quote(fact: Fact, passage: str) -> str:
    """The target's text: the sentence (or clause) holding the answer, quoted as the grounded modes quote
    it, when the passage shows it whole; else the answer alone. With bare figures as targets the 135M
    model learnt the shape and answered "1" to a quarter of the test questions (README, issue 14)."""
    return fact.quote if fact.quote and _has(passage, fact.quote) else fact.answer


def _gold_hit(row: Any) -> SearchHit:
    return SearchHit(
        0, 0.0, row.id, row.document_id, row.source, row.text, row.position, row.metadata, {}, {}
    )


def _tokens_counter(config: FinetuneConfig) -> tuple[Callable[[str], int], Any]:
    from ragtune.rag.models.loading import load_tokenizer
    from ragtune.rag.models.resolve import resolve_model

    tokenizer = load_tokenizer(resolve_model(config.model).path)
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), tokenizer


def raft_examples(
    index: str | Path,
    config: FinetuneConfig,
    seed: int = 0,
    *,
    embedder: Any = None,
    mode: str | None = None,
    per_chunk: int = 3,
    answer: AnswerConfig | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> list[dict[str, Any]]:
    """Chat records `{"messages": [...], "raft": {...}}` from the chunks of the index at `index`.

    Each generated question is searched (`mode`: the retriever, default the index's own) for
    `config.raft_distractors` chunks other than its gold chunk that do not hold the answer; the gold
    chunk goes at a random position among them, the passages are numbered and cut to the token budget
    as `Answerer` does (with the base model's tokenizer), and the target quotes the sentence holding the
    answer (`_quote`) plus " [n]".
    `config.raft_no_gold_fraction` of the examples show the distractors only and answer with the
    refusal. "raft" records the gold passage number (None without gold), the span and the chunk id.
    """
    from ragtune.rag.api import RAG, STORE_FILE

    folder = Path(index).expanduser()
    if not (folder / STORE_FILE).is_file():
        raise InputError(f"no index at {index}: run `ragtune ingest DIR --index {index}` first")
    answer = answer or AnswerConfig()
    if count_tokens is None:
        count_tokens, _tokenizer = _tokens_counter(config)
    rng = random.Random(seed)
    drafts: list[tuple[Fact, SearchHit, list[SearchHit]]] = []
    with RAG.open(folder, embedder=embedder) as rag:
        with rag.store.transaction():
            ids = [chunk_id for chunk_id, _text in rag.store.iter_chunks()]
            rows = rag.store.chunks(ids)
        asked: set[str] = set()
        for chunk_id in ids:
            gold = _gold_hit(rows[chunk_id])
            for fact in facts(gold.text, per_chunk):
                if fact.question in asked:
                    continue
                asked.add(fact.question)
                hits = rag.search(fact.question, k=config.raft_distractors + 6, mode=mode)
                # A chunk that also holds the answer is no distractor: it would make the refusal wrong.
                others = [h for h in hits if h.chunk_id != chunk_id and not _has(h.text, fact.answer)]
                drafts.append((fact, gold, others[: config.raft_distractors]))
    eligible = [i for i, (_f, _g, others) in enumerate(drafts) if others]
    n_no_gold = min(len(eligible), round(len(drafts) * config.raft_no_gold_fraction))
    no_gold = set(rng.sample(eligible, n_no_gold))
    records: list[dict[str, Any]] = []
    for i, (fact, gold, others) in enumerate(drafts):
        if i in no_gold:
            passages = fit_passages(others, answer.max_context_tokens, count_tokens)
            target, number = answer.refusal, None
        else:
            placed = _place_gold(fact, gold, others, answer, count_tokens, rng)
            if placed is None:
                continue  # the gold chunk's answer does not survive the token budget at any position
            passages, number = placed
            target = f"{_quote(fact, passages[number - 1])} [{number}]"
        messages = build_messages(fact.question, passages, [], answer)
        messages.append({"role": "assistant", "content": target})
        info = {"gold": number, "answer": fact.answer, "kind": fact.kind, "chunk_id": gold.chunk_id}
        records.append({"messages": messages, "raft": info})
    return records


def _place_gold(
    fact: Fact,
    gold: SearchHit,
    others: list[SearchHit],
    answer: AnswerConfig,
    count_tokens: Callable[[str], int],
    rng: random.Random,
) -> tuple[list[str], int] | None:
    """The fitted passages with the gold chunk at a random position where its answer is still shown."""
    options: list[tuple[list[str], int]] = []
    for position in range(len(others) + 1):
        hits = [*others[:position], gold, *others[position:]]
        passages = fit_passages(hits, answer.max_context_tokens, count_tokens)
        if position < len(passages) and _has(passages[position].split("\n", 1)[-1], fact.answer):
            options.append((passages, position + 1))
    return rng.choice(options) if options else None


def write_raft(
    index: str | Path, config: FinetuneConfig, out: str | Path, seed: int = 0, **kwargs: Any
) -> RaftData:
    """`raft_examples` written to OUT/raft.jsonl, with the longest example's length in model tokens
    (the chat template applied), which `max_length` must reach for no target to be cut."""
    started = time.perf_counter()
    count_tokens, tokenizer = _tokens_counter(config)
    records = raft_examples(index, config, seed, count_tokens=count_tokens, **kwargs)
    if not records:
        raise InputError(
            f"the index at {index} gave no RAFT examples: its chunks have no sentence with a number, "
            "date, value or name to ask about"
        )
    longest = max(
        len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in records
    )
    folder = Path(out).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RAFT_FILE
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {folder / RAFT_FILE}: {exc.strerror or exc}") from exc
    chunks = len({r["raft"]["chunk_id"] for r in records})
    no_gold = sum(r["raft"]["gold"] is None for r in records)
    return RaftData(str(path), len(records), no_gold, chunks, longest, time.perf_counter() - started)
