"""Fitting a prompt into the model's context window, and saying what was left out to make it fit.

A model given more tokens than its context window does not fail: it runs for minutes and answers
garbage. So the prompt is measured before generation and cut in a fixed order: the lowest-ranked
passages first (passage [1] kept, shortened if need be, while anything else can go), then the oldest
history turns, then passage [1] itself. A question that does not fit on its own is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ragtune.core.errors import InputError

Messages = list[dict[str, str]]
T = TypeVar("T")

# For an LLM object that does not say: the smallest window of the chat models ragtune is used with.
DEFAULT_CONTEXT_WINDOW = 2048
DEFAULT_MAX_NEW_TOKENS = 256
MIN_PASSAGE_WORDS = 8  # a passage shortened below this says nothing useful: it is dropped instead


@dataclass(frozen=True)
class Fitted(Generic[T]):
    """The prompt that fits, the passages and turns it kept, and notes on what was cut."""

    messages: Messages
    passages: list[str]
    history: list[T]
    notes: list[str]


def fit_prompt(
    passages: Sequence[str],
    history: Sequence[T],
    build: Callable[[list[str], list[T]], Messages],
    count_prompt: Callable[[Messages], int],
    count_tokens: Callable[[str], int],
    window: int,
    reserve: int,
) -> Fitted[T]:
    """`build(passages, history)` cut until `count_prompt` of it leaves `reserve` tokens of `window`
    for the answer. Raises InputError when even the bare question (no passage, no history) is too long.
    """
    room = window - reserve
    bare = count_prompt(build([], []))
    if bare > room:
        raise InputError(
            f"the question is too long: {bare:,} tokens with its prompt, but the model's context holds "
            f"{window:,} tokens, {reserve:,} of them kept for the answer; shorten the question"
            + (" or lower max_new_tokens" if reserve >= window // 2 else "")
        )
    kept, turns = list(passages), list(history)
    while True:
        messages = build(kept, turns)
        over = count_prompt(messages) - room
        if over <= 0:
            break
        if len(kept) > 1 or (kept and not turns):
            shorter = _shorten(kept[-1], over, count_tokens)
            if shorter is None:
                kept.pop()
            else:
                kept[-1] = shorter
        else:
            turns.pop(0)
    return Fitted(messages, kept, turns, _notes(passages, kept, len(history) - len(turns), window))


def _shorten(passage: str, over: int, count_tokens: Callable[[str], int]) -> str | None:
    """`passage` shortened by words by about `over` tokens, or None when too little would be left."""
    words = passage.removesuffix(" …").split(" ")
    cost = max(count_tokens(passage), 1)
    keep = min(int(len(words) * (cost - over) / cost), len(words) - 1)  # always some progress
    if keep < MIN_PASSAGE_WORDS:
        return None
    return " ".join(words[:keep]) + " …"


def _notes(before: Sequence[str], after: list[str], turns_dropped: int, window: int) -> list[str]:
    fit = f"to fit the model's {window:,}-token context"
    notes = [
        f"passage [{n}] shortened {fit}" if n <= len(after) else f"passage [{n}] dropped {fit}"
        for n, passage in enumerate(before, 1)
        if n > len(after) or after[n - 1] != passage
    ]
    if turns_dropped:
        notes.append(f"{turns_dropped} earlier turn{'s' if turns_dropped > 1 else ''} left out {fit}")
    return notes
