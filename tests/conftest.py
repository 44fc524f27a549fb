"""Fixtures: a tiny corpus written to disk, an embedder that records its calls, a tiny real model."""

from __future__ import annotations

import hashlib
import importlib.abc
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ragtune import RAG

DIM = 64

# pytest puts the repository root on sys.path (tests/ is a package), where the folders rag/, indexes/,
# ... would import a second time as top-level packages beside the installed ragtune.* ones. Everything
# must go through `ragtune.`: a test or module that still names the bare folders fails here instead.
_BARE_FOLDERS = {"rag", "indexes", "finetune", "eval", "ui", "core", "cli"}


class _NoBareFolders(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in _BARE_FOLDERS:
            raise ImportError(f"import {fullname!r}: ragtune's folders are imported as ragtune.{fullname}")
        return None


sys.meta_path.insert(0, _NoBareFolders())


class FakeEmbedder:
    """Hashed bag of words: texts sharing words get similar vectors. Records every text it embeds."""

    name = "fake-embedder"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        if not query:
            self.calls.append(list(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


CORPUS = {
    "lora.md": "# LoRA\n\nLoRA freezes the base weights and learns a low-rank update BA scaled by alpha over r.",
    "qlora.md": "# QLoRA\n\nQLoRA quantizes the base model to 4-bit NormalFloat with double quantization.",
    "bm25.txt": "BM25 ranks documents by term frequency saturation k1 and length normalisation b.",
    "faiss.md": "# Faiss\n\nFaiss searches dense vectors exactly with a flat index or approximately with HNSW graphs.",
    "notes/rrf.txt": "Reciprocal rank fusion adds one over sixty plus rank for every retriever that found a chunk.",
    "notes/merge.md": "# Merging\n\nMerging an adapter folds BA into the frozen weights so the model runs standalone.",
}


def write_corpus(folder: Path, files: dict[str, str] = CORPUS) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def rag(tmp_path: Path, embedder: FakeEmbedder) -> RAG:
    with RAG.open(tmp_path / "index", embedder=embedder) as opened:
        yield opened


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sentence-transformers folder holding a 2-layer random BERT with a small word-piece vocabulary."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-st")
    words = sorted({w for text in CORPUS.values() for w in re.findall(r"\w+", text.lower())})
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *list("abcdefghijklmnopqrstuvwxyz0123456789"),
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    bert_dir = folder / "bert"
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model_dir = folder / "model"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(model_dir))
    return model_dir


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAINING_TEXT = " ".join(CORPUS.values()) + " question answer context passage the a is of to and in what how"


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real HF folder: a 2-layer random Llama (hidden 64) with a word-level tokenizer and a ChatML
    chat template, built in about a second."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llm")
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    backend.train_from_iterator(
        [TRAINING_TEXT, "system user assistant [ ] 1 2 3 4 5 6 7 8 9 0 : . , ? ! I don't know"],
        trainers.WordLevelTrainer(special_tokens=specials),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        bos_token="<|im_start|>",
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
