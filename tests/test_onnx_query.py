"""Dense queries through ONNX Runtime: the same vectors as torch, exported once, torch-free afterwards."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: E402,F401  (installed by the set-up: a broken install must fail, not skip)
import pytest

from ragtune import RAG, ModelLoadError, RAGConfig
from ragtune.indexes.embedding import EmbeddingConfig, SentenceTransformerEmbedder

QUERIES = [
    "NormalFloat double quantization",
    "merge",
    "how does reciprocal rank fusion add one over sixty plus rank",
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def embedder(model_dir: Path, backend: str = "auto") -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(EmbeddingConfig(model=str(model_dir), query_backend=backend))


def test_onnx_query_vectors_equal_torch(tiny_model_dir: Path):
    onnx, torch_ = embedder(tiny_model_dir), embedder(tiny_model_dir, "torch")
    ours, reference = onnx.encode(QUERIES, query=True), torch_.encode(QUERIES, query=True)
    assert onnx.query_backend() == "onnx" and torch_.query_backend() == "torch"
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert np.allclose(ours, reference, atol=1e-5)


def test_a_second_process_uses_the_cached_export_without_torch(tiny_model_dir: Path):
    embedder(tiny_model_dir).encode(["warm"], query=True)
    again = embedder(tiny_model_dir)
    again.encode(QUERIES, query=True)
    assert again.query_backend() == "onnx" and again._model is None  # the torch model was never loaded


def test_documents_are_still_embedded_with_torch(tiny_model_dir: Path):
    onnx = embedder(tiny_model_dir)
    docs = onnx.encode(QUERIES)
    assert onnx._model is not None and np.allclose(
        docs, embedder(tiny_model_dir, "torch").encode(QUERIES), atol=1e-6
    )


def test_search_ranks_are_the_same_with_either_backend(tmp_path: Path, corpus: Path, tiny_model_dir: Path):
    results = {}
    for backend in ("onnx", "torch"):
        rag = RAG.open(tmp_path / "index", embedder=embedder(tiny_model_dir, backend))
        rag.ingest(corpus, progress=False)
        results[backend] = [[h.chunk_id for h in rag.search(q, k=6, mode="dense")] for q in QUERIES]
    assert results["onnx"] == results["torch"]


def test_a_model_it_cannot_reproduce_falls_back_to_torch_with_a_warning(tiny_model_dir: Path, monkeypatch):
    monkeypatch.setattr(
        "ragtune.indexes.onnx_query.exportable", lambda st_model: "modules [...] are not plain"
    )
    auto = embedder(tiny_model_dir)
    with pytest.warns(UserWarning, match="embedded with torch: no ONNX query encoder"):
        auto.encode(QUERIES, query=True)
    assert auto.query_backend() == "torch"
    with pytest.raises(ModelLoadError, match="query_backend='onnx' is not possible"):
        embedder(tiny_model_dir, "onnx").encode(QUERIES, query=True)


def test_without_onnxruntime_auto_says_what_to_install(tiny_model_dir: Path, monkeypatch):
    monkeypatch.setattr("ragtune.indexes.onnx_query.onnxruntime_available", lambda: False)
    with pytest.warns(UserWarning, match="pip install onnxruntime onnx"):
        embedder(tiny_model_dir).encode(QUERIES, query=True)


def test_torch_backend_never_exports(tiny_model_dir: Path, own_cache: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder(tiny_model_dir, "torch").encode(QUERIES, query=True)
    assert not (own_cache / "onnx").exists()


def test_query_backend_may_change_for_an_existing_index(tmp_path: Path, tiny_model_dir: Path):
    config = RAGConfig(embedding=EmbeddingConfig(model=str(tiny_model_dir)))
    RAG.open(tmp_path / "index", config).close()
    other = RAGConfig(embedding=EmbeddingConfig(model=str(tiny_model_dir), query_backend="torch"))
    assert RAG.open(tmp_path / "index", other).config.embedding.query_backend == "torch"


@pytest.mark.parametrize(
    ("name", "damage"),
    [("model.onnx", "scribble"), ("model.onnx", "truncate"), ("onnx_query.json", "scribble")],
)
def test_a_damaged_export_is_exported_again(tiny_model_dir: Path, name: str, damage: str):
    from ragtune.indexes.onnx_query import export_folder

    embedder(tiny_model_dir).encode(["warm"], query=True)
    path = export_folder(tiny_model_dir) / name
    data = path.read_bytes()
    path.write_bytes(b"\xff" * len(data) if damage == "scribble" else data[: len(data) // 2])

    again = embedder(tiny_model_dir)
    with pytest.warns(UserWarning, match=f"exporting again: .*{export_folder(tiny_model_dir).name}"):
        ours = again.encode(QUERIES, query=True)
    assert again.query_backend() == "onnx"
    assert np.allclose(ours, embedder(tiny_model_dir, "torch").encode(QUERIES, query=True), atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new export is intact: no second repair
        embedder(tiny_model_dir).encode(QUERIES, query=True)


def test_a_killed_export_leaves_nothing_behind_after_the_next_one(tiny_model_dir: Path, own_cache: Path):
    import subprocess

    from ragtune.indexes.onnx_query import export_folder

    process = subprocess.Popen(["true"])
    process.wait()
    final = export_folder(tiny_model_dir)
    killed = final.with_name(f".{final.name}.tmp-{process.pid}")
    killed.mkdir(parents=True)
    (killed / "model.onnx").write_bytes(b"half")
    embedder(tiny_model_dir).encode(["warm"], query=True)
    assert sorted(p.name for p in (own_cache / "onnx").iterdir()) == [final.name]


def test_an_export_that_disagrees_with_torch_is_never_published(tiny_model_dir: Path, own_cache, monkeypatch):
    published: list[Path] = []
    monkeypatch.setattr("ragtune.indexes.onnx_query.agreement", lambda encoder, st_model: 0.5)
    monkeypatch.setattr("ragtune.indexes.onnx_query.publish", lambda tmp, folder: published.append(folder))
    with pytest.raises(ModelLoadError, match="disagrees with torch"):
        embedder(tiny_model_dir, "onnx").encode(QUERIES, query=True)
    assert published == [] and list((own_cache / "onnx").iterdir()) == []
