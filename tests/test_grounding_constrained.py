"""Copy-constrained decoding and likelihood scoring, on the tiny random Llama (word-level tokenizer)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from ragtune import GeneratorConfig, InputError, LocalLLM
from ragtune.rag.generation.grounding.constrained import copy_constraint

LORA = "LoRA freezes the base weights and learns a low-rank update BA scaled by alpha over r."
QLORA = "QLoRA quantizes the base model to 4-bit NormalFloat with double quantization."
BM25 = "BM25 ranks documents by term frequency saturation k1 1.2 and length normalisation b 0.5."
FAISS = "Faiss searches dense vectors exactly with a flat index or approximately with HNSW graphs."


@pytest.fixture(scope="module")
def llm(tiny_llm_dir: Path) -> LocalLLM:
    return LocalLLM.load(GeneratorConfig(model=str(tiny_llm_dir), max_new_tokens=40))


@contextmanager
def no_end(llm: LocalLLM):
    """The random model may end at once; without an end token it writes all its tokens."""
    end = llm.tokenizer.eos_token_id
    llm.tokenizer.eos_token_id = None
    try:
        yield
    finally:
        llm.tokenizer.eos_token_id = end


def prompt(passages: list[str], question: str = "what is LoRA ?") -> list[dict[str, str]]:
    context = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(passages, 1))
    return [{"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]


def allowed_after(llm: LocalLLM, passages: list[str], written: str) -> set[str]:
    """The words the constraint lets the model write after the answer so far, `written`."""
    prompt_ids = llm.encode_chat(prompt(passages))["input_ids"]
    constraint = copy_constraint(llm.tokenizer, passages, prompt_ids.shape[1])
    answer = llm.tokenizer(written, add_special_tokens=False, return_tensors="pt")["input_ids"]
    scores = constraint(torch.cat([prompt_ids, answer], 1), torch.zeros(1, len(llm.tokenizer)))
    return set(llm.tokenizer.convert_ids_to_tokens(torch.isfinite(scores[0]).nonzero()[:, 0].tolist()))


def copied_pieces(tokens: list[str]) -> list[list[str]]:
    """The answer's words between citation markers "[ n ]" and sentence ends (the last marker may be
    cut short by max_new_tokens)."""
    pieces, current, i = [], [], 0
    while i < len(tokens):
        if tokens[i] == "[" and tokens[i + 1 : i + 2] != ["]"] and tokens[i + 2 : i + 3] in ([], ["]"]):
            pieces.append(current)
            current, i = [], i + 3
            continue
        current.append(tokens[i])
        if tokens[i] == ".":
            pieces.append(current)
            current = []
        i += 1
    return [p for p in [*pieces, current] if p]


def occurs_in(piece: list[str], passages: list[str], tokenizer) -> bool:
    for passage in passages:
        words = tokenizer.tokenize(passage)
        if any(words[s : s + len(piece)] == piece for s in range(len(words) - len(piece) + 1)):
            return True
    return False


def test_the_first_word_may_start_a_copy_anywhere_in_the_passages_but_not_leave_them(llm: LocalLLM):
    allowed = allowed_after(llm, [LORA, QLORA], "")
    assert {"LoRA", "freezes", "alpha", "QLoRA", "NormalFloat"} <= allowed
    assert "Faiss" not in allowed and "BM25" not in allowed  # words of no passage
    assert "[" not in allowed and "<|im_end|>" not in allowed  # an answer starts with copied text


def test_inside_a_copy_only_the_passage_next_word_a_citation_or_the_end_may_follow(llm: LocalLLM):
    assert allowed_after(llm, [LORA, QLORA], "learns a low") == {"-", "[", "<|im_end|>"}


def test_a_citation_names_only_passages_that_exist(llm: LocalLLM):
    assert allowed_after(llm, [LORA, QLORA], "learns [") == {"1", "2"}


def test_after_a_citation_a_new_copy_may_start(llm: LocalLLM):
    allowed = allowed_after(llm, [LORA, QLORA], "learns [ 2 ]")
    assert {"QLoRA", "double", "["} <= allowed and "Faiss" not in allowed


def test_after_a_sentence_end_a_new_copy_may_start(llm: LocalLLM):
    assert "QLoRA" in allowed_after(llm, [LORA, QLORA], "alpha over r .")


def test_a_decimal_point_is_not_a_sentence_end_so_a_number_cannot_be_spliced(llm: LocalLLM):
    # "1." may only go on as the passage's "1.2", not as "1.5" from the "5" elsewhere in it.
    assert allowed_after(llm, [BM25], "k1 1 .") == {"2", "[", "<|im_end|>"}


def test_a_random_model_writes_only_copied_passage_text_and_citations(llm: LocalLLM):
    with no_end(llm):
        constraint = copy_constraint(llm.tokenizer, [LORA, BM25])
        text = llm.generate(prompt([LORA, BM25]), logits_processor=constraint)
    tokens = llm.tokenizer.tokenize(text)
    assert len(tokens) == 40
    pieces = copied_pieces(tokens)
    assert pieces and all(occurs_in(p, [LORA, BM25], llm.tokenizer) for p in pieces), pieces


def test_without_the_constraint_the_same_model_writes_words_of_no_passage(llm: LocalLLM):
    tokens = llm.tokenizer.tokenize(llm.generate(prompt([LORA, BM25])))
    assert not all(occurs_in(p, [LORA, BM25], llm.tokenizer) for p in copied_pieces(tokens))


def test_a_batch_gives_each_row_its_own_passages(llm: LocalLLM):
    first, second = [LORA, QLORA], [BM25, FAISS]
    rows = [prompt(first), prompt(second, "how does BM25 rank documents ?")]  # different lengths
    with no_end(llm):
        constraints = [copy_constraint(llm.tokenizer, first), copy_constraint(llm.tokenizer, second)]
        texts = llm.generate_batch(rows, logits_processors=constraints)
    for text, passages in zip(texts, [first, second], strict=True):
        pieces = copied_pieces(llm.tokenizer.tokenize(text))
        assert pieces and all(occurs_in(p, passages, llm.tokenizer) for p in pieces), (text, passages)


def test_one_constraint_for_a_batch_keeps_a_state_per_row(llm: LocalLLM):
    passages = [LORA, BM25]
    rows = [prompt(passages, "what is LoRA ?"), prompt(passages, "how does BM25 rank the documents ?")]
    with no_end(llm):
        batched = llm.generate_batch(rows, logits_processors=copy_constraint(llm.tokenizer, passages))
        alone = [llm.generate(m, logits_processor=copy_constraint(llm.tokenizer, passages)) for m in rows]
    assert batched == alone and all(batched)


def test_one_processor_per_row_must_match_the_batch(llm: LocalLLM):
    with pytest.raises(InputError, match="one per conversation"):
        llm.generate_batch([prompt([LORA])], logits_processors=[None, None])


def test_scores_are_mean_token_log_probabilities_of_the_reply(llm: LocalLLM):
    messages = prompt([LORA, QLORA])
    replies = ["LoRA freezes the base weights", "4-bit NormalFloat"]  # different lengths: padded
    prompt_ids = llm.encode_chat(messages)["input_ids"]
    expected = []
    for reply in replies:
        reply_ids = llm.tokenizer(reply, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = llm.model(torch.cat([prompt_ids, reply_ids], 1)).logits[0]
        logp = torch.log_softmax(logits[prompt_ids.shape[1] - 1 : -1], -1)
        expected.append(logp.gather(1, reply_ids[0].unsqueeze(1)).mean().item())
    assert llm.score_continuations(messages, replies) == pytest.approx(expected, abs=1e-4)


def test_with_end_the_end_of_turn_token_is_scored_too(llm: LocalLLM):
    messages = prompt([LORA])
    end = llm.tokenizer.eos_token
    # A word followed by the end token, scored as text, equals the word scored with_end.
    assert llm.score_continuations(messages, ["alpha"], with_end=True) == pytest.approx(
        llm.score_continuations(messages, [f"alpha {end}"]), abs=1e-4
    )


def test_an_empty_continuation_scores_minus_infinity(llm: LocalLLM):
    assert llm.score_continuations(prompt([LORA]), ["", "alpha"])[0] == float("-inf")


def test_a_constraint_needs_some_passage_text(llm: LocalLLM):
    with pytest.raises(InputError, match="non-empty passage"):
        copy_constraint(llm.tokenizer, ["", "   "])
