"""`ingest --engine ray`: the new chunks embedded by a Ray Data actor pool on a real local Ray give the
same index as a local ingest; an incremental one embeds only the new chunks; mistakes are one line.

One Ray (2 CPUs) serves the whole module; each Ray ingest starts its 2 actors, which load torch and the
tiny model (about 8 s per Ray ingest on 2 cores). No mocks: the Ray tests run in CI (the test extra installs ray[data]).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from ragtune import RAG, IngestEngineConfig, InputError, ModelLoadError, RAGConfig
from ragtune.cli.main import main
from ragtune.indexes.embedding import EmbeddingConfig, SentenceTransformerEmbedder
from ragtune.rag.ingest.ray_engine import RayEmbedder
from tests.conftest import CORPUS, write_corpus

# Vectors from Ray and from a local ingest are the same model on the same texts, but in other batches:
# padding to another batch length and other thread counts (one per actor) change float32 sums in the
# last bits (measured: up to 1.4e-7 for all-MiniLM-L6-v2), so vectors are compared within 1e-5, not bit for bit.
ATOL = 1e-5
QUERIES = ("double quantization NormalFloat", "reciprocal rank fusion", "merging an adapter", "HNSW graphs")

# More documents than the shared corpus, of other lengths, so that the texts go out in several batches
# to both actors and may come back in another order; words from the tiny model's vocabulary.
_WORDS = " ".join(CORPUS.values()).split()
EXTRA = {f"more/doc{i:02d}.txt": " ".join(_WORDS[i : i + 5 + 3 * i]) for i in range(14)}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # a new one, not a `ray start` cluster
    yield
    ray.shutdown()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs", {**CORPUS, **EXTRA})


def open_rag(folder: Path, model: Path) -> RAG:
    return RAG.open(folder, RAGConfig(embedding=EmbeddingConfig(model=str(model))))


def dense_rows(rag: RAG) -> dict[str, np.ndarray]:
    """Vector of each live row of the current generation, by chunk id."""
    out = {}
    for view in rag._current_generation().views:
        segment = view.segment
        for row, chunk_id in enumerate(segment.chunk_ids.tolist()):
            if view.deleted is None or not view.deleted[row]:
                out[chunk_id.decode()] = np.asarray(segment.vectors[row])
    return out


def assert_same_index(a: RAG, b: RAG) -> None:
    assert sorted(a.store.iter_chunks()) == sorted(b.store.iter_chunks())  # ids and texts, chunk for chunk
    va, vb = dense_rows(a), dense_rows(b)
    assert va.keys() == vb.keys()
    for chunk_id, vector in va.items():
        np.testing.assert_allclose(vector, vb[chunk_id], atol=ATOL, err_msg=chunk_id)
    for query in QUERIES:
        for mode in ("dense", "hybrid"):
            ha, hb = a.search(query, k=5, mode=mode), b.search(query, k=5, mode=mode)
            assert [h.chunk_id for h in ha] == [h.chunk_id for h in hb], (query, mode)
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=ATOL)


def test_ray_ingest_gives_the_local_index(local_ray, tmp_path, docs, tiny_model_dir):
    engine = IngestEngineConfig(engine="ray", ray_actors=2, ray_batch_size=4)
    open_rag(tmp_path / "ray", tiny_model_dir).close()  # made (a new folder loads its model to check it)
    with RAG.open(tmp_path / "ray") as by_ray, open_rag(tmp_path / "local", tiny_model_dir) as local:
        told = []
        report = by_ray.ingest(docs, progress=False, engine=engine, on_progress=told.append)
        # The documents were embedded on Ray: this process never loaded the model.
        assert by_ray.embedder()._model is None
        n = len(CORPUS) + len(EXTRA)
        assert report.embedded == report.chunks_added == n
        # Followed progress does not cut the texts into slices: each would start its actors anew.
        assert [(p.done, p.total) for p in told if p.stage == "embedding"] == [(0, n), (n, n)]
        local.ingest(docs, progress=False)
        assert_same_index(by_ray, local)
    assert ray.is_initialized()  # the caller's Ray is left running


def test_cli_ray_reingest_after_an_edit_embeds_only_the_new_chunks(
    local_ray, capsys, tmp_path, docs, tiny_model_dir
):
    index = str(tmp_path / "index")
    code = main(["ingest", str(docs), "--index", index, "--embedding-model", str(tiny_model_dir), "-q"])
    assert code == 0
    capsys.readouterr()

    (docs / "qlora.md").write_text("# QLoRA\n\nQLoRA trains LoRA adapters on a 4-bit base model.")
    ray_args = ["--engine", "ray", "--ray-actors", "2", "--ray-batch-size", "4", "--json", "-q"]
    code = main(["ingest", str(docs), "--index", index, *ray_args])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [Path(p).name for p in report["changed"]] == ["qlora.md"] and not report["added"]
    assert (report["embedded"], report["chunks_added"], report["chunks_removed"]) == (1, 1, 1)

    with RAG.open(index) as by_ray, open_rag(tmp_path / "local", tiny_model_dir) as local:
        local.ingest(docs, progress=False)
        assert_same_index(by_ray, local)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ray-address", "127.0.0.1:6379"], "needs engine='ray' (--engine ray)"),
        (["--engine", "ray", "--watch"], "--watch embeds a few edited chunks at a time"),
        (["--engine", "ray", "--ray-actors", "0"], "ray_actors=0: must be >= 1"),
        (["--engine", "ray", "--ray-address", "nowhere"], "expected HOST:PORT, ray://HOST:PORT or auto"),
        (["--engine", "spark"], "'spark': use one of local, ray"),
    ],
)
def test_engine_mistakes_are_one_line_before_anything_is_made(capsys, tmp_path, docs, argv, message):
    code = main(["ingest", str(docs), "--index", str(tmp_path / "index"), "-q", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "index").exists()


def test_an_unreachable_ray_address_is_one_line_not_a_traceback(tmp_path, docs, tiny_model_dir):
    # A new process: in this one the module's Ray, once started, would be used instead of the address.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once the socket is closed: nothing listens there
    argv = ["ingest", str(docs), "--index", str(tmp_path / "index"), "--embedding-model", str(tiny_model_dir)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragtune",
            *argv,
            "--engine",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        f"ragtune: error: no Ray cluster answers at --ray-address '127.0.0.1:{port}'"
    )
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_an_address_is_not_used_when_this_process_has_a_ray_and_says_so(
    local_ray, tmp_path, docs, tiny_model_dir
):
    with open_rag(tmp_path / "index", tiny_model_dir) as rag:
        rag.ingest(docs, progress=False)
        (docs / "lora.md").unlink()  # something to do, but nothing to embed: no pipeline is started
        with pytest.warns(UserWarning, match="ray_address='127.0.0.1:1' is not used"):
            report = rag.ingest(
                docs, progress=False, engine=IngestEngineConfig("ray", ray_address="127.0.0.1:1")
            )
    assert (len(report.deleted), report.embedded) == (1, 0)
    assert ray.is_initialized()


def test_an_error_of_ours_in_an_actor_comes_back_as_one_line(local_ray, tmp_path):
    # The model folder exists here but not where the actors run (here: nowhere): Ray hands back text only.
    local = SentenceTransformerEmbedder(EmbeddingConfig(model=str(tmp_path / "elsewhere")))
    embedder = RayEmbedder(local, IngestEngineConfig(engine="ray"))
    with pytest.raises(ModelLoadError, match="embedding model folder .*elsewhere' does not exist"):
        embedder.encode(["a chunk", "another chunk"])


def test_without_ray_installed_the_engine_says_which_extra(
    monkeypatch, capsys, tmp_path, docs, tiny_model_dir
):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail, as when it is not installed
    argv = ["ingest", str(docs), "--index", str(tmp_path / "index"), "--embedding-model", str(tiny_model_dir)]
    assert main([*argv, "--engine", "ray", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == "ragtune: error: --engine ray needs Ray (ray is missing): pip install 'ragtune[ray]'\n"


def test_the_engine_config_rejects_bad_values_by_name():
    with pytest.raises(InputError, match="ray_batch_size=0"):
        IngestEngineConfig(engine="ray", ray_batch_size=0)
    with pytest.raises(InputError, match="ray_address=' '"):
        IngestEngineConfig(engine="ray", ray_address=" ")
