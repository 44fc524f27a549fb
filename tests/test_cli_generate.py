"""`ragtune ask`, `finetune`, `merge` and `compare`, run in-process with tiny real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def index(tmp_path: Path, corpus: Path, tiny_model_dir: Path, capsys) -> str:
    folder = str(tmp_path / "index")
    assert (
        run(capsys, "ingest", str(corpus), "--index", folder, "--embedding-model", str(tiny_model_dir), "-q")[
            0
        ]
        == 0
    )
    return folder


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"question": f"what is LoRA {i} ?", "answer": "a low-rank update"}) for i in range(8)
        )
    )
    return path


def test_ask_streams_an_answer_and_lists_the_sources(capsys, index: str, tiny_llm_dir: Path):
    code, out, _ = run(
        capsys,
        "ask",
        "what does QLoRA quantize?",
        "--index",
        index,
        "--model",
        str(tiny_llm_dir),
        "--max-new-tokens",
        "4",
        "--min-score",
        "-1",
        "--answer-mode",
        "free",  # the model writes (auto would quote a span for a model this small)
    )
    assert code == 0
    answer, sources = out.split("\nSources:\n")
    assert answer.strip() and "[1] " in sources
    assert "(free)" in sources.splitlines()[-1]  # the verdict line names the mode


def test_ask_in_auto_mode_gives_a_small_model_a_verified_span(capsys, index: str, tiny_llm_dir: Path):
    argv = ["ask", "what does QLoRA quantize?", "--index", index, "--model", str(tiny_llm_dir)]
    code, out, _ = run(capsys, *argv, "--min-score", "-1", "--answer-mode", "auto")
    assert code == 0
    assert "  (verified against [" in out and "] (grounded))" in out


def test_ask_says_what_it_cut_to_fit_the_models_context(capsys, index: str, tiny_llm_dir: Path):
    # The tiny model reads 512 tokens; leaving 440 of them for the answer leaves no room for passage [3].
    code, _, err = run(
        capsys,
        "ask",
        "what does QLoRA quantize?",
        "--index",
        index,
        "--model",
        str(tiny_llm_dir),
        "--max-new-tokens",
        "440",
        "--min-score",
        "-1",
        "--no-stream",
    )
    assert code == 0
    assert "to fit the model's 512-token context" in err


def test_ask_as_json(capsys, index: str, tiny_llm_dir: Path):
    code, out, _ = run(
        capsys,
        "ask",
        "what does QLoRA quantize?",
        "--index",
        index,
        "--model",
        str(tiny_llm_dir),
        "--max-new-tokens",
        "4",
        "--min-score",
        "-1",
        "--json",
        "--answer-mode",
        "grounded",
    )
    answer = json.loads(out)
    assert code == 0 and answer["answer"] and answer["sources"][0]["n"] == 1 and answer["refused"] is False
    assert answer["mode"] == "grounded" and answer["verified"] is True
    (support,) = answer["supports"]
    assert support["n"] == answer["citations"][0] and support["span"]


def test_ask_refuses_when_nothing_is_relevant_enough(capsys, index: str):
    # A threshold no cosine reaches: the refusal comes before any model is loaded (none is given).
    code, out, err = run(capsys, "ask", "what does QLoRA quantize?", "--index", index, "--min-score", "1.01")
    assert code == 0 and "I don't know" in out and "threshold" in err


def test_ask_with_a_bad_model_path_is_one_clear_line(capsys, index: str):
    code, _, err = run(
        capsys,
        "ask",
        "what does QLoRA quantize?",
        "--index",
        index,
        "--model",
        "./no/model",
        "--min-score",
        "-1",
    )
    assert code == 2 and err.strip() == "ragtune: error: ./no/model: no such file or folder"


def test_ask_without_an_index_says_to_ingest(capsys, tmp_path: Path):
    code, _, err = run(capsys, "ask", "q?", "--index", str(tmp_path / "none"))
    assert code == 2 and "ragtune ingest" in err


def test_finetune_merge_compare(capsys, qa_file: Path, tiny_llm_dir: Path, tmp_path: Path):
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    code, out, _ = run(
        capsys,
        "finetune",
        "--data",
        str(qa_file),
        "--out",
        str(adapter),
        "--model",
        str(tiny_llm_dir),
        "--max-steps",
        "3",
        "--lr",
        "0.01",
        "--target-modules",
        "all-linear",
        "-q",
    )
    assert code == 0 and f"adapter written to {adapter}" in out and "eval loss" in out
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 8

    code, out, _ = run(capsys, "merge", str(adapter), "--out", str(merged))
    assert code == 0 and merged.is_dir()

    report = tmp_path / "compare.json"
    code, out, _ = run(
        capsys,
        "compare",
        "base",
        str(merged),
        "--base",
        str(tiny_llm_dir),
        "--runs",
        "2",
        "--new-tokens",
        "3",
        "--report",
        str(report),
    )
    assert code == 0 and out.count("\n| ") == 3  # header rule + two models
    assert [m["model"] for m in json.loads(report.read_text())["models"]] == [str(tiny_llm_dir), str(merged)]


def test_finetune_with_a_bad_jsonl_line_names_the_line(
    capsys, qa_file: Path, tiny_llm_dir: Path, tmp_path: Path
):
    qa_file.write_text(qa_file.read_text() + '\n{"question": "no answer"}\n')
    code, _, err = run(
        capsys,
        "finetune",
        "--data",
        str(qa_file),
        "--out",
        str(tmp_path / "a"),
        "--model",
        str(tiny_llm_dir),
        "--max-steps",
        "1",
        "-q",
    )
    assert code == 2 and "line 9:" in err and "--skip-bad-lines" in err and len(err.strip().splitlines()) == 1


def test_finetune_skip_bad_lines_lists_what_it_skipped(
    capsys, qa_file: Path, tiny_llm_dir: Path, tmp_path: Path
):
    qa_file.write_text(qa_file.read_text() + "\nnot json\n")
    code, out, _ = run(
        capsys,
        "finetune",
        "--data",
        str(qa_file),
        "--out",
        str(tmp_path / "a"),
        "--model",
        str(tiny_llm_dir),
        "--max-steps",
        "1",
        "--skip-bad-lines",
        "-q",
    )
    assert code == 0 and "skipped line 9:" in out


def test_finetune_from_store(capsys, index: str, tiny_llm_dir: Path, tmp_path: Path):
    code, out, _ = run(
        capsys,
        "finetune",
        "--from-store",
        "--index",
        index,
        "--out",
        str(tmp_path / "a"),
        "--model",
        str(tiny_llm_dir),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "-q",
    )
    assert code == 0 and "adapter written" in out


def test_merge_of_a_missing_adapter_is_one_clear_line(capsys, tmp_path: Path):
    code, _, err = run(capsys, "merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m"))
    assert code == 2 and "not an adapter folder" in err


def test_compare_works_outside_the_source_checkout(
    capsys, tiny_llm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Each model is measured in a child `python -m ...`: it must find the installed package, not a
    # folder of the working directory.
    monkeypatch.chdir(tmp_path)
    text = tmp_path / "heldout.txt"
    text.write_text("LoRA adds a low-rank update to frozen weights. " * 20)
    code, _, err = run(
        capsys,
        "compare",
        "base",
        "--base",
        str(tiny_llm_dir),
        "--runs",
        "2",
        "--new-tokens",
        "2",
        "--text",
        str(text),
        "--report",
        "compare.json",
    )
    assert code == 0, err
    assert [m["model"] for m in json.loads((tmp_path / "compare.json").read_text())["models"]] == [
        str(tiny_llm_dir)
    ]
