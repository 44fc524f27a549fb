"""Question in, `Answer` out: `Answerer` retrieves, keeps what is relevant, fits the prompt, and answers
in the configured mode (the model writes, or a grounded mode quotes); `AnswerStream` streams a written
answer; `Conversation` reads follow-ups with the recent turns. The pieces it puts together (config,
prompt, citations, refusals) are in answer.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from ragtune.core.schema import SearchHit
from ragtune.rag.generation import grounded
from ragtune.rag.generation.answer import (
    LLM,
    Answer,
    AnswerConfig,
    Turn,
    build_messages,
    fit_passages,
    is_refusal,
    prompt_tokens,
    relevant,
    search_query,
)
from ragtune.rag.generation.grounding.candidates import Similarity
from ragtune.rag.generation.window import DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_NEW_TOKENS, fit_prompt


class AnswerStream:
    """Iterate to get the answer's text as it is generated; `.answer` holds the whole `Answer` after.

    A reader that stops early (`break`, an exception in its loop, `close()`, leaving a `with` block)
    stops the generation at the next token and frees the model for the next question.
    """

    def __init__(self, pieces: Iterable[str], finish: Callable[[str], Answer]):
        self._pieces = pieces
        self._finish = finish
        self._answer: Answer | None = None
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        if self._answer is not None:
            raise RuntimeError("this answer was already streamed; read .answer")
        if self._closed:
            raise RuntimeError("this stream was closed before its answer ended; ask again")
        text: list[str] = []
        ended = False
        try:
            for piece in self._pieces:
                text.append(piece)
                yield piece
            ended = True
        finally:
            if not ended:  # the reader left (break, exception, close, garbage collection)
                self.close()
        if not self._closed:  # closed from another thread, the pieces just stop coming
            self._answer = self._finish("".join(text))

    def close(self) -> None:
        """Stop generating (if still running) and free the model; `.answer` is kept if it ended."""
        if self._answer is None:
            self._closed = True
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def answer(self) -> Answer:
        if self._answer is None:
            if self._closed:
                raise RuntimeError("this stream was closed before its answer ended; there is no .answer")
            raise RuntimeError("iterate over the stream first; .answer is ready when it ends")
        return self._answer


class Answerer:
    """Question in, `Answer` out: retrieve, keep what is relevant, prompt, generate, check citations."""

    def __init__(
        self,
        search: Callable[[str, int, str | None], list[SearchHit]],
        llm: Callable[[], LLM],
        config: AnswerConfig | None = None,
        similarity: Similarity | None = None,
    ):
        self.search = search
        self.llm = llm  # called on first use, so a refusal never waits for the model to load
        self.config = config or AnswerConfig()
        self.similarity = similarity  # question, texts -> cosines: ranks sentences in grounded modes

    def ask(
        self, question: str, *, history: list[Turn] | None = None, stream: bool = False
    ) -> Answer | AnswerStream:
        prepared = self._prepare(question, history or [])
        if isinstance(prepared, Answer):  # a refusal, or a grounded answer: no free text to stream
            return AnswerStream(iter([prepared.text]), lambda _text: prepared) if stream else prepared
        messages, finish = prepared
        llm = self.llm()
        if stream:
            return AnswerStream(llm.stream(messages), finish)
        return finish(llm.generate(messages))

    def ask_many(self, questions: list[str], batch_size: int = 8) -> list[Answer]:
        """`ask` for each question, generating up to `batch_size` answers in one batch when the model can
        (`generate_batch`). An answer's `seconds` is its own retrieval plus its share of its batch."""
        answers: list[Answer | None] = []
        waiting: list[tuple[int, list[dict[str, str]], Callable[[str], Answer]]] = []
        for question in questions:
            prepared = self._prepare(question, [])
            if isinstance(prepared, Answer):
                answers.append(prepared)
            else:
                waiting.append((len(answers), *prepared))
                answers.append(None)
        for first in range(0, len(waiting), max(1, batch_size)):
            batch = waiting[first : first + max(1, batch_size)]
            started = time.perf_counter()
            texts = generate_many(self.llm(), [messages for _i, messages, _f in batch])
            share = (time.perf_counter() - started) / len(batch)
            for (i, _messages, finish), text in zip(batch, texts, strict=True):
                answers[i] = finish(text, share)
        return [a for a in answers if a is not None]

    def _prepare(
        self, question: str, history: list[Turn]
    ) -> Answer | tuple[list[dict[str, str]], Callable[..., Answer]]:
        """A refusal, or the prompt and the function that turns the model's text into the Answer."""
        started = time.perf_counter()
        hits = self.search(search_query(question, history, self.config), self.config.k, self.config.mode)
        chosen = relevant(hits, self.config.min_scores)
        if not chosen:
            reason = (
                "no indexed chunk matches the question"
                if not hits
                else "no chunk reached the relevance threshold"
            )
            return Answer(question, self.config.refusal, [], [], True, reason, time.perf_counter() - started)
        llm = self.llm()
        fitted = fit_prompt(
            fit_passages(chosen, self.config.max_context_tokens, llm.count_tokens),
            history[-self.config.history_turns :] if self.config.history_turns else [],
            lambda passages, turns: build_messages(question, passages, turns, self.config),
            lambda messages: prompt_tokens(llm, messages),
            llm.count_tokens,
            window=getattr(llm, "context_window", DEFAULT_CONTEXT_WINDOW),
            reserve=getattr(llm, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        )
        if not fitted.passages:
            return Answer(
                question,
                self.config.refusal,
                [],
                [],
                True,
                "no passage fits in the model's context beside the question",
                time.perf_counter() - started,
                fitted.notes,
            )
        sources = chosen[: len(fitted.passages)]
        passages = [hit.text for hit in sources]
        mode = grounded.resolve(self.config.answer_mode, llm)
        if mode != "free":
            top = max((h.scores.get("dense", 0.0) for h in chosen), default=0.0)
            result = grounded.answer(
                mode,
                question,
                passages,
                fitted.messages,
                llm,
                self.config.refusal,
                top,
                calibration=grounded.calibration_for(self.config.min_confidence),
                similarity=self.similarity,
            )
            return _answer(question, sources, result, mode, time.perf_counter() - started, fitted.notes)
        prepared_in = time.perf_counter() - started

        def finish(text: str, generated_in: float | None = None) -> Answer:
            """generated_in: this answer's share of a batch; None: it was generated alone, until now."""
            text = text.strip()
            refused = is_refusal(text)
            seconds = time.perf_counter() - started if generated_in is None else prepared_in + generated_in
            result = grounded.checked(text, passages, refused, "the model found no answer in the passages")
            return _answer(question, sources, result, "free", seconds, fitted.notes)

        return fitted.messages, finish


def _answer(
    question: str,
    sources: list[SearchHit],
    result: grounded.Grounded,
    mode: str,
    seconds: float,
    notes: list[str],
) -> Answer:
    return Answer(
        question=question,
        text=result.text,
        sources=sources,
        citations=result.citations,
        refused=result.refused,
        reason=result.reason,
        seconds=seconds,
        notes=notes,
        mode=mode,
        verified=result.verified,
        supports=list(result.supports),
        confidence=result.confidence,
    )


def generate_many(llm: LLM, conversations: list[list[dict[str, str]]]) -> list[str]:
    """One batch through `llm.generate_batch` when the model has it, else one prompt at a time."""
    batched = getattr(llm, "generate_batch", None)
    if batched is not None:
        return batched(conversations)
    return [llm.generate(messages) for messages in conversations]


class Conversation:
    """Follow-up questions: each answer is asked with the last `history_turns` turns."""

    def __init__(self, answerer: Answerer):
        self.answerer = answerer
        self.turns: list[Turn] = []

    def ask(self, question: str, *, stream: bool = False) -> Answer | AnswerStream:
        result = self.answerer.ask(question, history=self.turns, stream=stream)  # it keeps the window
        if isinstance(result, AnswerStream):
            # Given the stream itself, so closing this one closes it and the generation under it.
            return AnswerStream(result, lambda _text: self._remember(result.answer))
        return self._remember(result)

    def _remember(self, answer: Answer) -> Answer:
        self.turns.append(Turn(answer.question, answer.text))
        return answer

    def reset(self) -> None:
        self.turns.clear()
