"""The `ragtune` command, run in-process with a tiny real sentence-transformers model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.cli.main import main


@pytest.fixture
def index(tmp_path):
    return str(tmp_path / "index")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_search_status_as_json(capsys, corpus, index, tiny_model_dir):
    code, out, _ = run(
        capsys,
        "ingest",
        str(corpus),
        "--index",
        index,
        "--embedding-model",
        str(tiny_model_dir),
        "--json",
        "-q",
    )
    assert code == 0
    assert len(json.loads(out)["added"]) == 6

    code, out, _ = run(
        capsys, "search", "NormalFloat double quantization", "--index", index, "--json", "-k", "2"
    )
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 2
    assert hits[0]["source"].endswith("qlora.md")
    assert {"chunk_id", "text", "scores", "ranks", "source"} <= set(hits[0])

    code, out, _ = run(capsys, "status", "--index", index, "--json")
    status = json.loads(out)
    assert (status["documents"], status["chunks"], status["generation"]) == (6, 6, 1)
    assert status["embedding_model"] == str(tiny_model_dir)


def test_human_output_names_sources_and_why_they_were_chosen(capsys, corpus, index, tiny_model_dir):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    code, out, _ = run(
        capsys, "search", "reciprocal rank fusion", "--index", index, "--mode", "bm25", "-k", "1"
    )
    assert code == 0
    assert "rrf.txt" in out and "bm25 #1" in out


def test_quiet_ingest_draws_no_progress_bars(capsys, corpus, index, tiny_model_dir):
    _, out, err = run(
        capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q"
    )
    assert "6 added" in out
    assert "%|" not in err


def test_ingest_compact_leaves_one_segment(capsys, corpus, index, tiny_model_dir):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    (corpus / "lora.md").write_text("LoRA, edited: a low-rank update of the frozen weights.")
    run(capsys, "ingest", str(corpus), "--index", index, "-q")
    code, out, _ = run(capsys, "ingest", str(corpus), "--index", index, "-q", "--compact", "--json")
    assert code == 0
    assert json.loads(out)["segments"] == 1 and json.loads(out)["generation"] == 3


def test_max_file_mb_applies_to_an_existing_index(capsys, corpus, index, tiny_model_dir):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    (corpus / "big.txt").write_bytes(b"word " * 300_000)
    code, out, _ = run(capsys, "ingest", str(corpus), "--index", index, "--max-file-mb", "1", "-q", "--json")
    assert code == 0
    assert [Path(n["path"]).name for n in json.loads(out)["skipped"]] == ["big.txt"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "/no/such/folder"], "does not exist"),
        (["search", "anything"], "no index at"),
        (["status"], "no index at"),
        (["ingest", "{corpus}", "--embedding-model", "/no/such/model"], "does not exist"),
        (["ingest", "{corpus}", "--chunk-size", "10"], "chunk_size=10"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, corpus, index, argv, message):
    argv = [a.replace("{corpus}", str(corpus)) for a in argv]
    code, _, err = run(capsys, *argv, "--index", index, "-q")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("ragtune: error:") and message in err


@pytest.mark.parametrize(("query", "k", "message"), [("", "5", "empty"), ("lora", "0", "k=0")])
def test_bad_search_arguments(capsys, corpus, index, tiny_model_dir, query, k, message):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    code, _, err = run(capsys, "search", query, "-k", k, "--index", index)
    assert code == 2 and message in err and "Traceback" not in err


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ragtune.cli.main",
            "ingest",
            str(tmp_path / "missing"),
            "--index",
            str(tmp_path / "ix"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_status_verify_checks_every_index_file(capsys, corpus, index, tiny_model_dir):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    code, out, _ = run(capsys, "status", "--index", index, "--verify")
    assert code == 0 and "match their checksums" in out.splitlines()[-1]
    code, out, _ = run(capsys, "status", "--index", index, "--verify", "--json")
    verified = json.loads(out)["verified"]
    assert code == 0 and verified["generation"] == 1 and verified["files"] > 0 and verified["checksums"]


def test_status_verify_names_a_damaged_file(capsys, corpus, index, tiny_model_dir):
    run(capsys, "ingest", str(corpus), "--index", index, "--embedding-model", str(tiny_model_dir), "-q")
    vectors = next(Path(index, "segments").glob("*/vectors.npy"))
    damaged = bytearray(vectors.read_bytes())
    damaged[-4] ^= 0x01  # the lowest bit of the last value: still an embedding, but not what was written
    vectors.write_bytes(bytes(damaged))
    assert run(capsys, "status", "--index", index)[0] == 0  # without --verify nothing is re-read
    code, _, err = run(capsys, "status", "--index", index, "--verify")
    assert code == 2 and err.count("\n") == 1 and "vectors.npy" in err and "checksum" in err
