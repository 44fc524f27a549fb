"""Copy-constrained decoding and likelihood scoring of candidate answers.

`CopyConstraint` is a logits processor for `model.generate`: from the first generated token on, the
model may only continue a token sequence that occurs in one of the passages, cite a passage as " [n]",
end the answer, or - at the start, after a sentence end or after a citation - start copying anew at the
start of a word. A number or name that is in no passage therefore cannot be written.

`continuation_logprobs` ranks candidate answers: the mean log-probability per token of each as the
model's reply, with the prompt read once and its cache shared by all candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from ragtune.core.errors import InputError

SENTENCE_END = (".", "!", "?")
_NO_POSITIONS = np.zeros(0, dtype=np.int64)


class _Row:
    """Where one batch row stands: the passage positions its current copied segment may end at, the
    citation-marker prefix it is inside (a trie node, or None), and whether a new segment may start."""

    __slots__ = ("positions", "marker", "can_start", "copied", "done")

    def __init__(self) -> None:
        self.positions = _NO_POSITIONS
        self.marker: int | None = None
        self.can_start = True
        self.copied = False  # some passage text was written: a citation may follow
        self.done = False  # ended (eos/padding): the row's scores are left alone


class CopyConstraint(LogitsProcessor):
    """Allows only copied passage text, citation markers " [n]" and the end of the answer (the last two
    once some text was copied).

    Built once per set of passages (`copy_constraint`); one state per batch row, so a batch of prompts
    that share the passages works, with or without left padding. For rows with different passages give
    each row its own constraint through `PerRow`. Meant for greedy decoding or sampling, not beam search
    (beams reorder rows between steps).

    `prompt_length` is the width of `input_ids` when generation starts (the padded width for a batch);
    None takes the width at the first call. A call whose width does not grow by one token, or equals
    `prompt_length`, starts a new generation, so one constraint may serve several in turn.
    """

    def __init__(
        self,
        sequence: np.ndarray,
        word_start: np.ndarray,
        sentence_end: np.ndarray,
        aliases: dict[int, list[int]],
        markers: list[list[int]],
        eos_token_ids: Iterable[int],
        prompt_length: int | None = None,
    ):
        self.sequence = sequence  # passages' token ids, each variant followed by -1
        self.sentence_end = sentence_end  # per position: a new segment may start after it
        self.prompt_length = prompt_length
        self.eos = sorted(set(eos_token_ids))
        # token id -> the positions where it starts a word, i.e. where a copied segment may begin;
        # continuing a segment only needs `sequence` itself (the token after each current position).
        self.starts = _index(sequence, word_start)
        # A space-toggled variant ("port" for " port") may begin a segment where its original does.
        for alias, originals in aliases.items():
            found = [self.starts[t] for t in originals if t in self.starts]
            if alias in self.starts:
                found.append(self.starts[alias])
            if found:
                self.starts[alias] = np.unique(np.concatenate(found))
        self.start_ids = np.array(sorted(self.starts), dtype=np.int64)
        self.trie, self.terminal = _trie(markers)
        self._rows: list[_Row] = []
        self._seen = -1  # input_ids width at the last call

    def reset(self) -> None:
        self._rows = []
        self._seen = -1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        width = input_ids.shape[1]
        fresh = (
            not self._rows
            or len(self._rows) != input_ids.shape[0]
            or width != self._seen + 1
            or width == self.prompt_length
        )
        if fresh:
            known = self.prompt_length is not None and self.prompt_length <= width
            start = self.prompt_length if known else width
            self._rows = [_Row() for _ in range(input_ids.shape[0])]
            generated = input_ids[:, start:].tolist()  # non-empty only when joining mid-generation
        else:
            generated = input_ids[:, -1:].tolist()
        self._seen = width
        for row, tokens in zip(self._rows, generated, strict=True):
            for token in tokens:
                self._advance(row, token)
        banned = np.ones(scores.shape, dtype=bool)
        for i, row in enumerate(self._rows):
            banned[i, self._allowed(row) if not row.done else slice(None)] = False
        if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64):
            # On a CPU the masking is done in numpy: a torch op over the vocabulary wakes torch's thread
            # pool, which cost 8-16 ms a step on a busy 2-core machine against ~0.2 ms for this.
            return torch.from_numpy(np.where(banned, -np.inf, scores.numpy()).astype(scores.numpy().dtype))
        return scores.masked_fill(torch.from_numpy(banned).to(scores.device), float("-inf"))

    def _allowed(self, row: _Row) -> np.ndarray:
        """Token ids `row` may produce next."""
        nxt = self.sequence[row.positions + 1] if len(row.positions) else _NO_POSITIONS
        parts = [nxt[nxt >= 0]]
        if row.marker is not None:  # inside a marker, or "[1]" that may still become "[12]"
            parts.append(np.fromiter(self.trie[row.marker], dtype=np.int64))
        if row.marker is None or row.marker in self.terminal:  # not in the middle of a marker
            if row.copied:  # the answer neither starts with a citation nor is empty
                parts.append(np.fromiter(self.trie[0], dtype=np.int64))
                parts.append(np.array(self.eos, dtype=np.int64))
            if row.can_start:
                parts.append(self.start_ids)
        return np.unique(np.concatenate(parts))

    def _advance(self, row: _Row, token: int) -> None:
        if row.done:
            return
        if token in self.eos:
            row.done = True
            return
        positions = _NO_POSITIONS
        if len(row.positions):
            after = row.positions + 1
            positions = after[self.sequence[after] == token]
        if row.can_start and token in self.starts:
            positions = np.union1d(positions, self.starts[token])
        marker = self.trie[row.marker].get(token) if row.marker is not None else None
        if marker is None and row.copied and (row.marker is None or row.marker in self.terminal):
            marker = self.trie[0].get(token)
        if not len(positions) and marker is None:
            row.done = True  # a token the constraint did not allow (padding): stop constraining the row
            return
        row.positions, row.marker = positions, marker
        row.copied = row.copied or bool(len(positions))
        ended = bool(len(positions)) and bool(self.sentence_end[positions].any())
        stuck = bool(len(positions)) and not (self.sequence[positions + 1] >= 0).any()
        row.can_start = ended or stuck or marker in self.terminal


class PerRow(LogitsProcessor):
    """One logits processor per batch row (None leaves that row free): each sees only its own row."""

    def __init__(self, processors: Sequence[LogitsProcessor | None]):
        self.processors = list(processors)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if len(self.processors) != input_ids.shape[0]:
            raise ValueError(f"{len(self.processors)} processors for a batch of {input_ids.shape[0]} rows")
        rows = [
            scores[i : i + 1] if p is None else p(input_ids[i : i + 1], scores[i : i + 1])
            for i, p in enumerate(self.processors)
        ]
        return torch.cat(rows)


def copy_constraint(
    tokenizer: Any,
    passages: list[str],
    prompt_length: int | None = None,
    eos_token_ids: Iterable[int] | None = None,
) -> CopyConstraint:
    """A `CopyConstraint` over `passages` (passage n is `passages[n-1]`, cited as " [n]").

    Each passage is tokenised alone (as after a newline) and after a space, since the first token can
    differ; both variants may be copied. `eos_token_ids` defaults to the tokenizer's end token."""
    ids: list[int] = []
    word_start: list[bool] = []
    sentence_end: list[bool] = []
    seen_variants: set[tuple[int, ...]] = set()
    for passage in passages:
        for text in (passage, " " + passage):
            tokens, offsets = _encode(tokenizer, text)
            if not tokens or tokens in seen_variants:
                continue
            seen_variants.add(tokens)
            for token, span in zip(tokens, offsets, strict=True):
                ids.append(token)
                word_start.append(_starts_word(text, span))
                sentence_end.append(_ends_sentence(text, span, tokenizer, token))
            ids.append(-1)
            word_start.append(False)
            sentence_end.append(False)
    if not ids:
        raise InputError("copy_constraint needs at least one non-empty passage to copy from")
    sequence = np.array(ids, dtype=np.int64)
    starts = sorted({t for t, s in zip(ids, word_start, strict=True) if s})
    markers = [
        tokenizer(f"{space}[{n}]", add_special_tokens=False)["input_ids"]
        for n in range(1, len(passages) + 1)
        for space in (" ", "")
    ]
    if eos_token_ids is None:
        eos_token_ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    return CopyConstraint(
        sequence,
        np.array(word_start, dtype=bool),
        np.array(sentence_end, dtype=bool),
        _space_aliases(tokenizer, starts),
        markers,
        eos_token_ids,
        prompt_length,
    )


def continuation_logprobs(model: Any, prompt_ids: list[int], continuations: list[list[int]]) -> list[float]:
    """Mean log-probability per token of each continuation after `prompt_ids` (-inf for an empty one).

    The prompt is read once; its key/value cache is repeated for the right-padded continuations, which
    then go through the model in one batch (padding sits after every real token, so it is never read)."""
    scores = [float("-inf")] * len(continuations)
    rows = [i for i, c in enumerate(continuations) if c]
    if not rows:
        return scores
    device = model.device
    prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    # Only the last prompt position's logits are needed: all of them would cost a vocabulary-wide
    # projection per prompt token (as much again as the rest of the pass for SmolLM2-135M).
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    # transformers 5 names the key/value cache `cache`; 4.x called it `past_key_values`.
    name = "cache" if getattr(out, "cache", None) is not None else "past_key_values"
    cache = getattr(out, name)
    cache.batch_repeat_interleave(len(rows))
    longest = max(len(continuations[i]) for i in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long, device=device)
    real = torch.zeros(len(rows), longest, dtype=torch.bool, device=device)
    for r, i in enumerate(rows):
        ids[r, : len(continuations[i])] = torch.tensor(continuations[i], device=device)
        real[r, : len(continuations[i])] = True
    attention = torch.cat(
        [torch.ones(len(rows), len(prompt_ids), dtype=torch.long, device=device), real.long()], 1
    )
    positions = torch.arange(len(prompt_ids), len(prompt_ids) + longest, device=device).expand(len(rows), -1)
    logits = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=False,
        **{name: cache},
    ).logits
    # Token j of a continuation is predicted by the prompt's last logits (j = 0) or by token j - 1.
    predicting = torch.cat([out.logits[:, -1:].expand(len(rows), -1, -1), logits[:, :-1]], 1).float()
    logp = torch.log_softmax(predicting, -1).gather(2, ids.unsqueeze(2)).squeeze(2)
    means = (logp * real).sum(1) / real.sum(1)
    for r, i in enumerate(rows):
        scores[i] = float(means[r])
    return scores


def _index(sequence: np.ndarray, keep: np.ndarray) -> dict[int, np.ndarray]:
    """token id -> sorted positions of `sequence` holding it where `keep` is true (separators out)."""
    chosen = np.flatnonzero(keep & (sequence >= 0))
    tokens = sequence[chosen]
    order = np.argsort(tokens, kind="stable")
    tokens, chosen = tokens[order], chosen[order]
    bounds = np.flatnonzero(np.diff(tokens)) + 1
    return {
        int(group_tokens[0]): group
        for group_tokens, group in zip(np.split(tokens, bounds), np.split(chosen, bounds), strict=True)
        if len(group)
    }


def _encode(tokenizer: Any, text: str) -> tuple[tuple[int, ...], list]:
    """Token ids of `text` and their character spans (None each when the tokenizer has no offsets)."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return tuple(encoded["input_ids"]), [tuple(span) for span in encoded["offset_mapping"]]
    except (NotImplementedError, KeyError):  # slow (Python) tokenizers have no offsets
        ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
        return ids, [None] * len(ids)


def _trie(markers: list[list[int]]) -> tuple[list[dict[int, int]], set[int]]:
    """Citation markers as a trie: node 0 is the root; returns children per node and the end nodes."""
    children: list[dict[int, int]] = [{}]
    terminal: set[int] = set()
    for marker in markers:
        node = 0
        for token in marker:
            if token not in children[node]:
                children.append({})
                children[node][token] = len(children) - 1
            node = children[node][token]
        terminal.add(node)
    return children, terminal


def _starts_word(text: str, span: tuple[int, int] | None) -> bool:
    """Whether a token begins a word: copying may start there, not in the middle of "8080"."""
    if span is None:
        return True  # a tokenizer without offsets: every position may start a segment
    start = span[0]
    return start == 0 or not text[start - 1].isalnum() or not text[start : start + 1].isalnum()


def _ends_sentence(text: str, span: tuple[int, int] | None, tokenizer: Any, token: int) -> bool:
    """Whether a token ends a sentence or a line: "." followed by a space or the end, not "1.2"."""
    if span is None:
        piece = tokenizer.decode([token])
        return "\n" in piece or piece.rstrip().endswith(SENTENCE_END)
    start, end = span
    piece = text[start:end]
    if "\n" in piece:
        return True
    return piece.rstrip().endswith(SENTENCE_END) and (end >= len(text) or text[end].isspace())


def _space_aliases(tokenizer: Any, tokens: list[int]) -> dict[int, list[int]]:
    """For word-start tokens, the single token of the same word with the leading space toggled:
    an answer's first word has no space before it, the same word inside a passage usually has one."""
    texts = [tokenizer.decode([t]) for t in tokens]
    toggled = [t[1:] if t.startswith(" ") else " " + t for t in texts]
    encoded = tokenizer(toggled, add_special_tokens=False)["input_ids"] if toggled else []
    aliases: dict[int, list[int]] = {}
    for original, ids in zip(tokens, encoded, strict=True):
        if len(ids) == 1 and ids[0] != original:
            aliases.setdefault(ids[0], []).append(original)
    return aliases
