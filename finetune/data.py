"""Training examples: question/answer JSONL turned into chat-templated token ids whose loss covers the
answer only, or an index's chunks as plain text for continued pre-training.

Every bad line is reported with its line number; nothing is dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError

IGNORE = -100  # label value the loss skips (PyTorch's cross-entropy default)
QA_SHAPES = (
    '{"question": ..., "answer": ...}',
    '{"instruction": ..., "input": ..., "output": ...}',
    '{"prompt": ..., "completion": ...}',
    '{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}',
)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class Dataset:
    examples: list[Example]
    source: str
    kind: str  # "qa" or "text"
    problems: list[str] = field(default_factory=list)  # "line 7: ..." for skipped lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "examples": len(self.examples),
            "problems": self.problems,
        }


def record_messages(record: Any) -> list[dict[str, str]]:
    """The chat of one JSONL record; the last message is the assistant's answer to learn."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if (
            not isinstance(messages, list)
            or len(messages) < 2
            or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)
        ):
            raise ValueError("'messages' must be a list of at least 2 {role, content} objects")
        for number, m in enumerate(messages, 1):
            # str() would turn null into the text "None" and train the model to say it.
            if not isinstance(m["content"], str):
                got = "null" if m["content"] is None else type(m["content"]).__name__
                raise ValueError(f"message {number} ({m['role']}): 'content' must be a string, got {got}")
        if messages[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's answer")
        if not messages[-1]["content"].strip():
            raise ValueError("the assistant's answer (the last message) is empty")
        return [{"role": str(m["role"]), "content": m["content"]} for m in messages]
    for prompt_keys, answer_key in (
        (("question",), "answer"),
        (("instruction", "input"), "output"),
        (("prompt",), "completion"),
    ):
        if prompt_keys[0] in record:
            answer = record.get(answer_key)
            if not isinstance(answer, str) or not answer.strip():
                raise ValueError(f"'{prompt_keys[0]}' needs a non-empty string '{answer_key}'")
            prompt = "\n\n".join(str(record[k]) for k in prompt_keys if record.get(k))
            if not prompt.strip():
                raise ValueError(f"'{prompt_keys[0]}' is empty")
            return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    raise ValueError(f"unknown record keys {sorted(record)[:6]}; use one of: {'; '.join(QA_SHAPES)}")


def tokenize_chat(messages: list[dict[str, str]], tokenizer, max_length: int) -> Example:
    """Ids of the whole chat; labels only on the final answer's tokens (and its end-of-turn token)."""
    prompt = tokenizer.apply_chat_template(
        messages[:-1], add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    if full[: len(prompt)] != prompt:
        # Templates that rewrite earlier turns once an answer follows: append the answer by hand.
        full = prompt + tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        full.append(tokenizer.eos_token_id)
    labels = [IGNORE] * len(prompt) + full[len(prompt) :]
    return Example(full[:max_length], labels[:max_length])


def load_qa_jsonl(path: str | Path, tokenizer, max_length: int, *, skip_bad_lines: bool = False) -> Dataset:
    path = Path(path).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read training data {path}: {exc}") from exc
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            example = tokenize_chat(record_messages(json.loads(line)), tokenizer, max_length)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problems.append(f"line {number}: {exc}")
            continue
        except RecursionError:  # e.g. 100,000 '[': the decoder recurses once per level
            problems.append(f"line {number}: nested too deeply to be a training example")
            continue
        if all(label == IGNORE for label in example.labels):
            problems.append(f"line {number}: the prompt alone is over max_length={max_length} tokens")
            continue
        examples.append(example)
    if problems and not skip_bad_lines:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InputError(f"{path}: {len(problems)} bad lines ({shown}). Fix them, or pass --skip-bad-lines")
    if not examples:
        raise InputError(f"{path} holds no training examples; each line is one of: {'; '.join(QA_SHAPES)}")
    return Dataset(examples, str(path), "qa", problems)


def text_examples(texts: list[str], tokenizer, max_length: int) -> list[Example]:
    """Causal-LM examples: every token of the text is learned."""
    examples = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max_length - 1] + [
            tokenizer.eos_token_id
        ]
        if len(ids) > 1:
            examples.append(Example(ids, list(ids)))
    return examples


def load_store_chunks(index: str | Path, tokenizer, max_length: int) -> Dataset:
    """The chunks of an index folder, in id order, as continued pre-training text."""
    from ragtune.rag.api import STORE_FILE
    from ragtune.rag.store.database import Store

    folder = Path(index).expanduser()
    if not (folder / STORE_FILE).is_file():
        raise InputError(f"no index at {index}: run `ragtune ingest DIR --index {index}` first")
    store = Store(folder / STORE_FILE)
    try:
        with store.transaction():
            texts = [text for _chunk_id, text in store.iter_chunks()]
    finally:
        store.close()
    examples = text_examples(texts, tokenizer, max_length)
    if not examples:
        raise InputError(f"the index at {index} has no chunks to train on: ingest some documents first")
    return Dataset(examples, str(folder.resolve()), "text")


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle, then the last `eval_fraction` (at least one when there are 2+) held out."""
    import random

    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = 0 if eval_fraction == 0 or len(examples) < 2 else max(1, round(len(examples) * eval_fraction))
    train = [examples[i] for i in order[: len(order) - n_eval]]
    held = [examples[i] for i in order[len(order) - n_eval :]]
    return train, held


def collate(batch: list[Example], pad_id: int):
    """Right-padded tensors; padding is masked out of attention and loss."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
