"""Matching text against passages: tokens, sentences, the question's answer type, typed spans.

Everything here is pure text processing (no model), fast enough to run on every question: candidates.py
ranks the passages' sentences and spans with it, and verify.py checks what an answer claims.

Matching works on normalised tokens: lower case, NFKC, articles dropped, "2,175,601" -> "2175601".
Unlike `normalise`, `tokens` keeps a decimal number whole ("1.2" is one token, "3.80" == "3.8"), so a
claimed "1.2" is not found in "steps 1, 2" or in version "1.2.3".
"""

from __future__ import annotations

import re
import unicodedata


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- normalisation and token matching -------------------------------------------------------------

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# A token: a number (with thousands separators or decimals kept together), or a run of letters and
# digits that starts with a letter. Digits followed by letters split ("14GB" -> 14, gb) so a unit
# written without a space matches one written with it.
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)*|[^\W\d_][^\W_]*")
ARTICLES = frozenset({"a", "an", "the"})


def normalise(text: str) -> str:
    """Lower case, NFKC, punctuation -> space, articles dropped, thousands separators removed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _THOUSANDS.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _canonical(token: str) -> str:
    token = unicodedata.normalize("NFKC", token).lower()
    if token[0].isdigit():
        token = token.replace(",", "")
        if token.count(".") == 1:  # a decimal, not a version: 3.80 == 3.8, 2.0 == 2
            token = token.rstrip("0").rstrip(".")
    return token


def token_spans(text: str) -> list[tuple[str, int, int]]:
    """Normalised tokens of `text` with their character offsets in `text` (articles dropped)."""
    out = []
    for match in _TOKEN.finditer(text):
        token = _canonical(match.group())
        if token and token not in ARTICLES:
            out.append((token, match.start(), match.end()))
    return out


def tokens(text: str) -> list[str]:
    """The normalised tokens `contains` compares."""
    return [token for token, _, _ in token_spans(text)]


def find(haystack: str, needle: str) -> list[tuple[int, int]]:
    """Character ranges of `haystack` where the tokens of `needle` occur in a row."""
    hay, want = token_spans(haystack), tokens(needle)
    if not want:
        return []
    found = []
    for i in range(len(hay) - len(want) + 1):
        if all(hay[i + j][0] == want[j] for j in range(len(want))):
            found.append((hay[i][1], hay[i + len(want) - 1][2]))
    return found


def contains(haystack: str, needle: str) -> bool:
    """Whole-token containment after normalisation: "4" is not in "40", "Lake Mira" is in "at lake mira."."""
    want = " ".join(tokens(needle))
    return bool(want) and f" {want} " in f" {' '.join(tokens(haystack))} "


# Words that carry no content for overlap scoring (question words, auxiliaries, function words).
STOP_WORDS = _words("""
    a about above according after again against all also am an and any approximately are around as at
    be been before being below between both but by can could did do does doing done don during each
    either else ever every few for from further had has have having he her here hers him his how i if
    in into is isn it its itself just kind least less let like many may me might more most much must my
    no nor not now of off on once one only or other our out over own per please quite rather really
    roughly s same say says she should so some still such t than that the their them then there these
    they this those through to too under until up upon us use used uses using very was we were what
    when where whether which while who whom whose why will with within would yes you your
    """)


def stem(token: str) -> str:
    """A crude stem, only for overlap scoring: parameters ~ parameter, truncates ~ truncation."""
    if not token.isalpha():
        return token
    if len(token) >= 7:
        return token[:6]
    if len(token) >= 4 and token.endswith("s") and not token.endswith("ss"):
        token = token[:-1]
    if len(token) >= 5 and token.endswith("ed"):
        return token[:-2]
    if len(token) >= 4 and token.endswith("e"):
        return token[:-1]
    return token


def content_stems(text: str) -> list[str]:
    """Stems of the content words of `text`, in order (stop words left out)."""
    return [stem(token) for token in tokens(text) if token not in STOP_WORDS]


# --- sentences ------------------------------------------------------------------------------------

_ABBREVIATIONS = _words(
    "e.g i.e etc vs cf approx ca fig no nr dr mr mrs ms prof st inc ltd jr sr al resp incl"
)
# A line that starts a new unit even when the line before did not end a sentence.
_BLOCK_START = re.compile(r"\s*(?:[-*•–]\s|\d{1,2}[.)]\s|#|\||\[|[A-Z][A-Za-z]{0,3}:\s)")
_LINE_END = re.compile(r"[.!?:;][\"'”’)\]]*\s*$")
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[*•\-]?[A-Z0-9])")
_BULLET = re.compile(r"[-*•–>#]+\s+|\d{1,2}[.)]\s+")
_MAX_JOINED_LINES = 12
_UNDERLINE = re.compile(r"\s*(?:={3,}|-{3,})\s*$")


def _lines(text: str) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


def _blocks(text: str) -> list[tuple[int, int]]:
    """Lines joined into blocks: text extracted from PDFs wraps sentences over lines and HTML tables put
    each cell on its own line, so a line that does not end a sentence continues into the next one,
    unless that one starts a bullet, heading, table row or "Key:" line, or a blank line comes between."""
    blocks: list[tuple[int, int]] = []
    start = end = None
    joined = 0
    for a, b in _lines(text):
        line = text[a:b]
        if not line.strip() or _UNDERLINE.match(line):
            # A blank line ends a block; so does a setext underline, leaving its heading a unit of its own.
            if start is not None:
                blocks.append((start, end))
            start = None
            continue
        if start is not None and (_BLOCK_START.match(line) or joined >= _MAX_JOINED_LINES):
            blocks.append((start, end))
            start = None
        if start is None:
            start, joined = a, 0
        end, joined = b, joined + 1
        if _LINE_END.search(line) or text[start:end].lstrip().startswith("#"):
            blocks.append((start, end))
            start = None
    if start is not None:
        blocks.append((start, end))
    return blocks


def _trimmed(text: str, a: int, b: int) -> tuple[int, int] | None:
    while a < b and text[a].isspace():
        a += 1
    bullet = _BULLET.match(text, a, b)
    if bullet and bullet.end() < b:
        a = bullet.end()
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if any(ch.isalnum() for ch in text[a:b]) else None


def sentences(text: str) -> list[tuple[int, int]]:
    """Character ranges of the sentences of `text`, in order.

    Splits at sentence ends (. ! ? then a capital or digit), at blank lines, bullets, headings and table
    rows; "e.g. Heron" and "1.2" stay inside their sentence. Leading bullet markers are left out.
    """
    out = []
    for a, b in _blocks(text):
        cut = a
        for match in _SENTENCE_END.finditer(text, a, b):
            word = re.search(r"([\w.]+)\.$", text[cut : match.start() + 1])
            if word and (word.group(1).lower() in _ABBREVIATIONS or len(word.group(1)) == 1):
                continue  # "e.g. Heron", "J. Smith": an abbreviation, not a sentence end
            if (piece := _trimmed(text, cut, match.end())) is not None:
                out.append(piece)
            cut = match.end()
        if (piece := _trimmed(text, cut, b)) is not None:
            out.append(piece)
    return out


# --- answer types and typed spans -----------------------------------------------------------------

ANSWER_TYPES = ("number", "date", "name", "value", "phrase")
_HOW_QUANTITY = re.compile(
    r"\bhow (?:many|much|long|far|large|big|old|often|fast|slow|high|low|small|wide|heavy|quickly)\b"
)
_DATE_QUESTION = re.compile(
    r"^\s*when\b|\b(?:what|which) (?:date|day|year|month|time of year)\b|\bwhen (?:did|was|were|is|will)\b"
)
_WHO = re.compile(r"^\s*(?:who|whom|whose)\b|\b(?:by|from) whom\b|\bwho (?:wrote|owns|is|was|from)\b")
_AUX = _words("is are was were do does did has have had will can could should would")
_NUMBER_NOUNS = _words("""port uid gid seed number count size dimension dimensions rate ratio percentage percent share
    temperature recall precision accuracy score threshold stride step value constant limit length budget
    timeout amount fraction proportion speed latency perplexity alpha rank epochs bits bytes
    similarity agreement decay time duration memory ram cost frequency interval delay""")
_DATE_NOUNS = _words("date day year month")
_NAME_NOUNS = _words("team person author company organisation organization people licence license owner")
_VALUE_NOUNS = _words("""model tool class file path image format type function library version release splitter
    compression key setting option command mode gpu hash algorithm backend encoder method quantization
    name template folder directory url endpoint package module flag variable extension""")
# A configuration key or other identifier in the question ("retrieval.mode", "chunk_size").
_IDENTIFIER = re.compile(r"\b\w+[._]\w+\b|`[^`]+`")


def answer_type(question: str) -> str:
    """What kind of span answers `question`: number, date, name, value or phrase.

    From the wording only: "how many/much/long" is a number, "when" a date, "who" a name, "what is the
    default X.Y" a value (a configuration value, key, path, identifier or model id), "which port" a number,
    "which model" a value; anything else a phrase.
    """
    q = unicodedata.normalize("NFKC", question).lower()
    if _DATE_QUESTION.search(q):
        return "date"
    if _WHO.search(q):
        return "name"
    if _HOW_QUANTITY.search(q):
        return "number"
    if "default" in q and _IDENTIFIER.search(question):
        return "value"
    wh = re.search(r"\b(?:what|which)\b(.*)", q)
    if wh:
        # The noun phrase the question asks about: the words after what/which up to the verb, or
        # after "what is" ("what is the output dimension of ...").
        words = [w.strip(".,?'\"") for w in wh.group(1).split()]
        if words and words[0] in _AUX:
            words = words[1:]
        cut = next((i for i, w in enumerate(words) if w in _AUX), len(words))
        words = [w.removesuffix("'s").split("@")[0] for w in words[: min(cut, 6)]]
        for nouns, kind in (
            (_DATE_NOUNS, "date"),
            (_NUMBER_NOUNS, "number"),
            (_NAME_NOUNS, "name"),
            (_VALUE_NOUNS, "value"),
        ):
            if any(w in nouns or w.rstrip("s") in nouns for w in words):
                return kind
    if _IDENTIFIER.search(question):
        return "value"
    return "phrase"


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
    r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
DATE = re.compile(
    rf"\b\d{{4}}-\d{{2}}-\d{{2}}\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\.?,?\s+\d{{4}}\b|"
    rf"\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b|\b{_MONTH}\s+\d{{4}}\b|"
    r"\b(?:[Ee]arly|[Mm]id|[Ll]ate)[\s-]\d{4}\b|\bQ[1-4]\s+\d{4}\b|(?<![\w.,-])(?:19|20)\d{2}(?![\w.,-]?\d)"
)
_UNITS = (
    r"%|percent|per\s?cent|percentage points?|points?|x|times|thousand|million|billion|trillion|bn|"
    r"[kKMB]|[KMGT]i?B|kb|mb|gb|tb|bytes?|bits?(?: per weight)?|ms|milliseconds?|s|secs?|seconds?|mins?|"
    r"minutes?|h|hrs?|hours?|days?|weeks?|months?|years?|tokens?|characters?|chars?|words?|"
    r"word pieces|pieces|parameters?|params|chunks?|documents?|docs|files?|pages?|questions?|answers?|"
    r"examples?|pairs?|steps?|epochs?|dimensions?|layers?|heads?|cores?|threads?|GPUs?|people|rows?|"
    r"queries|results?|vectors?|[GM]Hz|fps|qps|rps|°C"
)
NUMBER = re.compile(
    r"(?<![\w.\-/])[-+]?(?:\d+:\d+|\d+(?:\.\d+)?[eE][-+]?\d+|\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|"
    r"\d+(?:\.\d+)?)(?![\d]|\.\d|[A-Za-z_]\w*[_/])"
    rf"(?:\s?(?:{_UNITS})(?![\w]))?(?:\s(?:{_UNITS})(?![\w]))?(?![\w/]|-\w)"
)
QUOTED = re.compile(r"`([^`\n]{1,80})`|\"([^\"\n]{1,60})\"|“([^”\n]{1,60})”")
CODE_TOKEN = re.compile(r"(?<![\w.\-/@])[A-Za-z0-9][\w.\-/:@+]*\w")
_CAP_WORD = r"[A-Z][\w'’\-]*"
NAME = re.compile(
    rf"(?<![\w.\-/]){_CAP_WORD}(?:(?:\s*&\s*|\s+(?:of|de|van|von|der|du|la)\s+|\s+){_CAP_WORD})*"
    r"(?:\s+v?\d+(?:\.\d+)*\b)?"
)


def is_code_like(token: str) -> bool:
    """An identifier, key, path, version or model id: chunk_size, ms-marco-MiniLM-L-6-v2, /data/docs."""
    if token.lower().rstrip(".") in _ABBREVIATIONS or not any(ch.isalpha() for ch in token):
        return False
    if any(ch in token for ch in "_/@") or re.search(r"\w\.\w", token):
        return True
    has_digit = any(ch.isdigit() for ch in token)
    camel = re.search(r"[a-z][A-Z]", token) is not None
    return has_digit or camel


def typed_spans(
    text: str, start: int = 0, end: int | None = None, cells: bool = True
) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the numbers, dates, names and values in text[start:end], in order of start.

    kind is "number" (with its unit or %), "date", "name" (capitalised words, e.g. "Priya Okafor",
    "RTX 4090") or "value" (quoted or code-like: chunk_size, Q4_K_M, /data/docs, 0.3.0; and the short
    lines of a table row that HTML extraction put one cell per line).
    """
    end = len(text) if end is None else end
    found: dict[tuple[int, int], str] = {}

    def add(a: int, b: int, kind: str) -> None:
        if b > a:
            found.setdefault((a, b), kind)

    for m in DATE.finditer(text, start, end):
        add(m.start(), m.end(), "date")
    for m in NUMBER.finditer(text, start, end):
        add(m.start(), m.end(), "number")
    for m in QUOTED.finditer(text, start, end):
        group = next(g for g in (1, 2, 3) if m.group(g) is not None)
        add(m.start(group), m.end(group), "value")
    for m in CODE_TOKEN.finditer(text, start, end):
        if is_code_like(m.group()):
            add(m.start(), m.end(), "value")
    for m in NAME.finditer(text, start, end):
        a, b = m.start(), m.end()
        words = list(re.finditer(r"\S+", text[a:b]))
        while words and words[0].group().lower().strip("'’") in STOP_WORDS:
            words.pop(0)  # "The Search & Assistants team" -> "Search & Assistants"
        if not words:
            continue
        a = a + words[0].start()
        at_start = not text[start:a].strip() or re.search(r"[.!?:]\s+$", text[start:a]) is not None
        single = len(words) == 1
        if single and at_start and not is_code_like(words[0].group()) and not words[0].group().isupper():
            continue  # one capitalised word opening a sentence is just a capital letter
        if single and words[0].group().isalpha() and words[0].group().lower() in STOP_WORDS:
            continue
        add(a, b, "name")
    if cells and ("\n" in text[start:end] or "|" in text[start:end]):
        # Table cells: a short line (HTML extraction) or a "|"-separated cell is a value of its row.
        for m in re.finditer(r"[^\n|]+", text[start:end]):
            cell = m.group().strip().strip("\"'`")
            if cell and len(cell.split()) <= 4 and any(ch.isalnum() for ch in cell):
                a = start + m.start() + m.group().find(cell)
                add(a, a + len(cell), "value")
    dates = [(a, b) for (a, b), kind in found.items() if kind == "date"]
    return sorted(
        (a, b, kind)
        for (a, b), kind in found.items()
        if kind == "date" or not any(da <= a and b <= db for da, db in dates)  # "25" of "25 March 2024"
    )
