"""Checking that an answer says only what its passages say.

`claims` picks out the checkable facts of an answer (numbers, dates, names, identifiers, quoted
strings); `verify` looks each one up in the passages the answer cites, or, when it cites none, finds
the passage that holds them (system attribution). Pure text processing, no model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragtune.rag.generation.grounding.spans import (
    NUMBER,
    content_stems,
    find,
    is_code_like,
    sentences,
    stem,
    tokens,
    typed_spans,
)

CITATION = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_HYPHENATED = re.compile(r"(?<![\w.\-/])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+")
# When spans overlap, the more specific kind wins; a name yields to a number or identifier inside it
# ("RTX 4090" -> "RTX", "4090") so each is checked on its own.
_PRIORITY = {"date": 0, "value": 1, "number": 2, "name": 3}
_SHARE_WITHOUT_CLAIMS = 0.8  # an answer without claims must have this share of its words in one sentence
_SCALES = {"thousand": "thousand", "k": "thousand", "K": "thousand", "million": "million", "M": "million"}
_SCALES |= {"billion": "billion", "B": "billion", "bn": "billion"}
_UNITS = {
    "%": "%",
    "percent": "%",
    "per cent": "%",
    "percentage": "%",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "ms": "ms",
    "millisecond": "ms",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "x": "times",
    "time": "times",
    "char": "character",
    "param": "parameter",
}


@dataclass(frozen=True)
class Support:
    """The span of passage n (1-based) that supports an answer: span == passages[n-1][start:end]."""

    n: int
    span: str
    start: int
    end: int


@dataclass(frozen=True)
class Verification:
    """Whether every claim of an answer is in its passages, where, and what is not."""

    verified: bool
    supports: list[Support]
    unsupported: list[str]
    reason: str


def citations(text: str) -> list[int]:
    """The passage numbers an answer cites with [n] or [n, m], in order of first mention."""
    out: list[int] = []
    for marker in CITATION.finditer(text):
        for number in re.findall(r"\d+", marker.group()):
            if int(number) not in out:
                out.append(int(number))
    return out


def claims(text: str) -> list[str]:
    """The checkable facts of an answer, in order: numbers (with decimals, % and units), dates and years,
    names (capitalised words not opening a sentence, CamelCase), identifiers (tokens with digits,
    underscores, dots or slashes; hyphenated tokens with a digit or capital), quoted strings.
    Citation markers [n] are not claims."""
    text = CITATION.sub(lambda m: " " * len(m.group()), text)  # blanks keep offsets and sentence ends
    spans: list[tuple[int, int, str]] = []
    for a, b in sentences(text):
        spans += typed_spans(text, a, b, cells=False)
        for m in _HYPHENATED.finditer(text, a, b):
            if any(ch.isdigit() or ch.isupper() for ch in m.group()) and not is_code_like(m.group()):
                spans.append((m.start(), m.end(), "value"))
    kept: list[tuple[int, int]] = []
    for a, b, kind in sorted(spans, key=lambda s: (_PRIORITY[s[2]], s[0] - s[1], s[0])):
        if kind == "name":
            for ka, kb in kept:
                if ka < b and a < kb:  # keep the capitalised words before the overlap
                    b = min(b, ka) if ka > a else a
            b = a + len(text[a:b].rstrip(" &-"))
            if b <= a or not any(ch.isupper() for ch in text[a:b]):
                continue
        if not any(ka < b and a < kb for ka, kb in kept):
            kept.append((a, b))
    out: list[str] = []
    for a, b in sorted(kept):
        if text[a:b] not in out:
            out.append(text[a:b])
    return out


def _number_unit(text: str) -> tuple[str, str] | None:
    """("40 million", "parameter") for "40 million parameters"; None when text is not a number."""
    match = NUMBER.fullmatch(text.strip())
    if not match:
        return None
    number = re.match(r"[-+]?[\d.,:eE+-]*\d", match.group()).group()
    words = match.group()[len(number) :].split() or [""]
    if words[0][:1] == "%" and len(words[0]) > 1:
        words = ["%", words[0][1:], *words[1:]]
    value = " ".join(tokens(number))
    scale = _SCALES.get(words[0]) or _SCALES.get(words[0].lower())
    if scale and words[0] not in ("m", "b"):  # a lower-case m or b is a unit, not million / billion
        value, words = f"{value} {scale}", words[1:] or [""]
    unit = " ".join(words).lower() if len(" ".join(words)) > 1 else " ".join(words)
    if unit not in _UNITS and unit.endswith("s") and unit[:-1] in _UNITS:
        unit = unit[:-1]  # "seconds" -> "second" -> "s"
    return value, _UNITS.get(unit) or (stem(unit.split()[-1]) if unit else "")


def _occurrences(claim: str, passage: str) -> list[tuple[int, int]]:
    """Where the passage states the claim. A number with a unit also matches the same number stated
    with an equivalent unit ("5 s" ~ "5 seconds") or with none; never with a different unit."""
    found = find(passage, claim)
    wanted = _number_unit(claim)
    if found or wanted is None:
        return found
    for match in NUMBER.finditer(passage):
        stated = _number_unit(match.group())
        if stated and stated[0] == wanted[0] and ("" in (stated[1], wanted[1]) or stated[1] == wanted[1]):
            found.append((match.start(), match.end()))
    return found


def _support(n: int, passage: str, held: list[str], words: set[str]) -> Support:
    """The sentence(s) of the passage holding the claims: the one with most claims (then most answer
    words) first, then one for each claim it lacks."""
    units = sentences(passage) or [(0, len(passage))]
    inside = {
        u: {c for c in held if any(u[0] <= s and e <= u[1] for s, e in _occurrences(c, passage))}
        for u in units
    }
    overlap = {u: len(words & set(content_stems(passage[u[0] : u[1]]))) for u in units}
    chosen: list[tuple[int, int]] = []
    left = set(held)
    while left:
        best = max(units, key=lambda u: (len(inside[u] & left), overlap[u], -u[0]))
        if not inside[best] & left:
            break
        chosen.append(best)
        left -= inside[best]
    if not chosen:
        chosen = [max(units, key=lambda u: (overlap[u], -u[0]))]
    start, end = min(u[0] for u in chosen), max(u[1] for u in chosen)
    return Support(n, passage[start:end], start, end)


def _refs(numbers: list[int]) -> str:
    marks = ", ".join(f"[{n}]" for n in numbers)
    return f"passage {marks}" if len(numbers) == 1 else f"passages {marks}"


def _listed(items: list[str]) -> str:
    quoted = [f'"{item}"' if " " in item else item for item in items]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return f"{text} {'is' if len(items) == 1 else 'are'}"


def _without_claims(answer: str, passages: list[str], pool: list[int]) -> Verification:
    """An answer with no numbers or names is supported when one sentence holds most of its words."""
    words = [w for w in dict.fromkeys(CITATION.sub(" ", answer).split()) if content_stems(w)]
    stems = {w: set(content_stems(w)) for w in words}
    if not words:
        return Verification(False, [], [], "the answer has no words to check against the passages")
    best: tuple[float, int, int, int] = (-1.0, 0, 0, 0)
    for n in pool:
        for a, b in sentences(passages[n - 1]):
            have = set(content_stems(passages[n - 1][a:b]))
            share = sum(1 for w in words if stems[w] <= have) / len(words)
            if share > best[0]:
                best = (share, n, a, b)
    share, n, a, b = best
    if n == 0:
        return Verification(False, [], [], "there are no passages to check the answer against")
    have = set(content_stems(passages[n - 1][a:b]))
    missing = [w.strip(".,;:!?") for w in words if not stems[w] <= have]
    held = f"{len(words) - len(missing)} of {len(words)} words of the answer"
    support = [Support(n, passages[n - 1][a:b], a, b)]
    if share >= _SHARE_WITHOUT_CLAIMS:
        return Verification(True, support, [], f"one sentence of {_refs([n])} holds {held}")
    return Verification(False, support, missing, f"no sentence holds the answer; at best {held}")


def verify(answer: str, passages: list[str], cited: list[int]) -> Verification:
    """Check that every claim of `answer` occurs in the passage(s) it cites (1-based numbers).

    With no citations the system attributes: the passage that holds all the claims (ties: the one
    with most words of the answer; if none holds all, the fewest passages that do together), and each
    Support gives that passage and the sentence span holding them. An answer with no claims is verified
    when one passage sentence holds at least 80% of its content words.
    """
    wrong = [n for n in dict.fromkeys(cited) if not 1 <= n <= len(passages)]
    if wrong:
        reason = f"cites [{wrong[0]}] but there are {len(passages)} passages"
        return Verification(False, [], [f"[{n}]" for n in wrong], reason)
    pool = list(dict.fromkeys(cited)) or list(range(1, len(passages) + 1))
    found = claims(answer)
    if not found:
        return _without_claims(answer, passages, pool)
    words = set(content_stems(CITATION.sub(" ", answer)))
    held = {n: [c for c in found if _occurrences(c, passages[n - 1])] for n in pool}
    if cited:
        chosen = [n for n in pool if held[n]]
    else:
        # Greedy cover: the passage with most claims (then most answer words) first.
        overlap = {n: len(words & set(content_stems(passages[n - 1]))) for n in pool}
        chosen, left = [], set(found)
        while left:
            n = max(pool, key=lambda n: (len(left & set(held[n])), overlap[n], -n))
            if not left & set(held[n]):
                break
            chosen.append(n)
            left -= set(held[n])
    covered = {c for n in chosen for c in held[n]}
    missing = [c for c in found if c not in covered]
    supports = [_support(n, passages[n - 1], held[n], words) for n in chosen]
    if missing:
        where = _refs(pool) if cited else "any passage"
        return Verification(False, supports, missing, f"{_listed(missing)} not in {where}")
    return Verification(True, supports, [], f"{_listed(found)} in {_refs(chosen)}")
