"""Configs refuse values that cannot be right (NaN, infinity, a wrong type in config.json) by field
name, and a new index folder is not left unusable by a model that does not load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.core.errors import InputError, ModelLoadError
from ragtune.finetune.config import FinetuneConfig
from ragtune.rag.api import RAG
from ragtune.rag.config import RAGConfig, ReaderConfig, RetrievalConfig
from ragtune.rag.generation.answer import AnswerConfig
from ragtune.rag.generation.llm import GeneratorConfig

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ReaderConfig(max_file_mb=NAN), "max_file_mb=nan"),
        (lambda: ReaderConfig(max_file_mb=INF), "max_file_mb=inf"),
        (lambda: AnswerConfig(min_scores={"dense": NAN}), "min_scores="),
        (lambda: AnswerConfig(min_scores={"bm25": -INF}), "min_scores="),
        (lambda: RetrievalConfig(weights={"bm25": 1.0, "dense": NAN}), "weights="),
        (lambda: GeneratorConfig(temperature=NAN), "temperature=nan"),
        (lambda: GeneratorConfig(repetition_penalty=INF), "repetition_penalty=inf"),
        (lambda: FinetuneConfig(lr=NAN), "lr=nan"),
        (lambda: FinetuneConfig(epochs=INF), "epochs=inf"),
    ],
)
def test_nan_and_infinity_are_refused_by_name(make, message):
    with pytest.raises(InputError, match=message):
        make()


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("chunking", "chunk_size", "big", "expected int"),
        ("chunking", "chunk_size", True, "expected int"),
        ("reader", "max_file_mb", "50", "expected float"),
        ("retrieval", "weights", {"bm25": "x"}, "expected dict[str, float]"),
        ("embedding", "model", 3, "expected str"),
    ],
)
def test_a_config_value_of_the_wrong_type_names_key_and_type(section, key, value, expected):
    data = RAGConfig().to_dict()
    data[section][key] = value
    with pytest.raises(InputError) as error:
        RAGConfig.from_dict(data)
    assert str(error.value) == f"config [{section}] {key}={value!r}: {expected}"


def test_a_config_file_with_a_wrong_type_is_named(tmp_path: Path):
    data = RAGConfig().to_dict()
    data["chunking"]["chunk_overlap"] = [150]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(
        InputError, match=r"config\.json: config \[chunking\] chunk_overlap=\[150\]: expected int"
    ):
        RAGConfig.load(tmp_path / "config.json")


def test_a_whole_number_is_a_valid_float():
    data = RAGConfig().to_dict()
    data["reader"]["max_file_mb"] = 5
    assert RAGConfig.from_dict(data).reader.max_file_mb == 5


def test_an_index_under_a_file_is_an_input_error(tmp_path: Path, embedder):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="a-file' is a file"):
        RAG.open(tmp_path / "a-file" / "sub" / "index", embedder=embedder)


def test_a_model_that_does_not_load_leaves_no_config(tmp_path: Path, tiny_model_dir: Path):
    def config(model: str) -> RAGConfig:
        return RAGConfig.from_dict({"format": 1, "embedding": {"model": model}})

    with pytest.raises(ModelLoadError):
        RAG.open(tmp_path / "index", config(str(tmp_path / "no-model")))
    assert not (tmp_path / "index" / "config.json").exists()
    rag = RAG.open(tmp_path / "index", config(str(tiny_model_dir)))
    assert rag.config.embedding.model == str(tiny_model_dir)
