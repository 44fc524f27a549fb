"""Bad input to `ragtune`: one line starting `ragtune: error:` and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.cli.main import main
from tests.conftest import write_corpus


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *needles: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("ragtune: error:") and all(n in lines[0] for n in needles)


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model_dir: Path) -> str:
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    folder = str(tmp_path_factory.mktemp("cli") / "index")
    assert (
        main(["ingest", str(corpus), "--index", folder, "--embedding-model", str(tiny_model_dir), "-q"]) == 0
    )
    return folder


def test_ask_k_0_is_refused_not_replaced_by_the_default(capsys, index: str):
    code, _, err = run(capsys, "ask", "what is QLoRA?", "--index", index, "-k", "0")
    assert code == 2 and one_error_line(err, "k=0")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_ask_min_score_must_be_a_finite_number(capsys, index: str, value: str):
    code, _, err = run(capsys, "ask", "what is QLoRA?", "--index", index, f"--min-score={value}")
    assert code == 2 and one_error_line(err, "min_scores")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_max_file_mb_must_be_a_finite_number(capsys, corpus: Path, tmp_path: Path, value: str):
    code, _, err = run(capsys, "ingest", str(corpus), "--index", str(tmp_path / "ix"), "--max-file-mb", value)
    assert code == 2 and one_error_line(err, f"max_file_mb={value}")


def test_index_folder_under_a_file(capsys, corpus: Path, tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run(capsys, "ingest", str(corpus), "--index", str(tmp_path / "a-file" / "sub"))
    assert code == 2 and one_error_line(err, "a-file")


def test_config_json_with_a_wrong_type_names_the_key_and_the_type(capsys, index: str, tmp_path: Path):
    saved = json.loads((Path(index) / "config.json").read_text())
    saved["chunking"]["chunk_size"] = "big"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps(saved))
    code, _, err = run(capsys, "status", "--index", str(broken))
    assert code == 2 and one_error_line(err, "chunk_size", "'big'", "int")


def test_a_bad_embedding_model_leaves_the_new_folder_usable(
    capsys, corpus: Path, tmp_path: Path, tiny_model_dir
):
    folder = str(tmp_path / "ix")
    code, _, err = run(
        capsys, "ingest", str(corpus), "--index", folder, "--embedding-model", str(tmp_path / "nope")
    )
    assert code == 2 and one_error_line(err, "nope")
    code, out, err = run(
        capsys, "ingest", str(corpus), "--index", folder, "--embedding-model", str(tiny_model_dir), "-q"
    )
    assert (code, err) == (0, "") and "6 added" in out


def test_a_control_character_in_a_file_name_keeps_one_line_per_hit(capsys, tmp_path: Path, tiny_model_dir):
    corpus = write_corpus(tmp_path / "docs", {"two\nlines.txt": "QLoRA quantizes the base model to 4 bits."})
    folder = str(tmp_path / "ix")
    run(capsys, "ingest", str(corpus), "--index", folder, "--embedding-model", str(tiny_model_dir), "-q")
    code, out, _ = run(capsys, "search", "QLoRA", "--index", folder, "--mode", "bm25")
    assert code == 0
    assert out.splitlines()[0].startswith("1. ") and "two\\nlines.txt" in out.splitlines()[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "q", "--mode", "fuzzy"],
        ["ask", "q", "--quantization", "int4"],
        ["ingest", ".", "--dense-index", "ivf"],
        ["finetune", "--data", "x.jsonl", "--out", "a", "--init-lora-weights", "zeros"],
        ["ask", "q", "-k", "three"],
    ],
)
def test_a_wrong_choice_or_type_is_one_line_and_exit_2(capsys, argv: list[str]):
    code, _, err = run(capsys, *argv)
    assert code == 2 and one_error_line(err, argv[-1])


def test_an_empty_index_path_is_refused(capsys, corpus: Path, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "" would have meant the working folder
    code, _, err = run(capsys, "ingest", str(corpus), "--index", "")
    assert code == 2 and one_error_line(err, "--index") and not (tmp_path / "config.json").exists()


def test_compare_checks_its_report_folder_before_measuring(capsys, tmp_path: Path):
    report = str(tmp_path / "missing" / "compare.json")
    code, _, err = run(capsys, "compare", "base", "--base", str(tmp_path / "no-model"), "--report", report)
    assert code == 2 and one_error_line(err, "--report", report)


def test_a_reader_that_stops_early_gets_no_traceback(index: str):
    # `ragtune search ... | head -1`: the pipe closes before the hits are printed.
    command = [
        sys.executable,
        "-m",
        "ragtune",
        "search",
        "QLoRA",
        "--index",
        index,
        "--mode",
        "bm25",
        "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    process.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err
