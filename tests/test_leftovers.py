"""What killed runs leave behind is removed by the next run; cache entries are checked before they are
published, and a damaged one is built again."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import pytest

from ragtune.core.cache import publish, staging_folder
from ragtune.rag.models.gguf import gguf_as_folder


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def leftover(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    return folder


def test_staging_removes_the_temporaries_of_dead_runs_only(tmp_path):
    dead, live = dead_pid(), os.getppid()
    dead_same = leftover(tmp_path / f".model-abc.tmp-{dead}")
    dead_other = leftover(tmp_path / f".model-old.tmp-{dead}")  # another key: the GGUF changed since
    running = leftover(tmp_path / f".model-abc.tmp-{live}")
    foreign = [leftover(tmp_path / "notes"), leftover(tmp_path / ".tmp-abc"), leftover(tmp_path / ".x.tmp-y")]

    tmp = staging_folder(tmp_path / "model-abc")

    assert tmp.name == f".model-abc.tmp-{os.getpid()}"
    assert not dead_same.exists() and not dead_other.exists()
    assert running.exists() and all(p.exists() for p in foreign)


def test_publish_keeps_the_entry_another_process_published_first(tmp_path):
    theirs = tmp_path / "entry"
    theirs.mkdir()
    (theirs / "config.json").write_text("theirs")
    ours = tmp_path / ".entry.tmp-1"
    ours.mkdir()
    (ours / "config.json").write_text("ours")
    assert publish(ours, theirs) == theirs
    assert (theirs / "config.json").read_text() == "theirs" and not ours.exists()


def test_publish_raises_any_other_failure(tmp_path):
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / ".entry.tmp-1", tmp_path / "entry")  # nothing was built: not "published"
    assert not (tmp_path / "entry").exists()


class FakeGGUFLoader:
    """Stands in for transformers' GGUF reading: loads the tiny Llama folder instead, counting calls."""

    folder: Path
    calls = 0

    @classmethod
    def from_pretrained(cls, path, gguf_file=None, **kwargs):
        cls.calls += 1
        return cls.real.from_pretrained(str(cls.folder))


@pytest.fixture
def fake_gguf(tmp_path, tiny_llm_dir, monkeypatch) -> Path:
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    library = importlib.import_module("transformers")  # the module as imported now, not at collection
    model = type("FakeModel", (FakeGGUFLoader,), {"real": library.AutoModelForCausalLM})
    tokenizer = type("FakeTokenizer", (FakeGGUFLoader,), {"real": library.AutoTokenizer})
    for fake in (model, tokenizer):
        fake.folder, fake.calls = tiny_llm_dir, 0
    monkeypatch.setattr(library, "AutoModelForCausalLM", model)
    monkeypatch.setattr(library, "AutoTokenizer", tokenizer)
    FakeGGUFLoader.model = model
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF stand-in")
    return path


def test_a_killed_conversion_leaves_nothing_after_the_next_one(fake_gguf, tmp_path):
    killed = leftover(tmp_path / "cache" / "models" / f".tiny-123456789abc.tmp-{dead_pid()}")
    folder = gguf_as_folder(fake_gguf)
    assert (folder / "config.json").is_file()
    assert not killed.exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


@pytest.mark.parametrize("damage", ["truncate", "scribble", "config"])
def test_a_damaged_conversion_is_converted_again(fake_gguf, damage, capsys):
    folder = gguf_as_folder(fake_gguf)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "scribble":
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    else:
        (folder / "config.json").write_text("{" + " " * (len((folder / "config.json").read_text()) - 1))
    calls = FakeGGUFLoader.model.calls

    assert gguf_as_folder(fake_gguf) == folder

    assert FakeGGUFLoader.model.calls == calls + 1
    assert "is damaged" in capsys.readouterr().err
    assert FakeGGUFLoader.model.real.from_pretrained(str(folder)).config.hidden_size == 64


def test_an_intact_conversion_is_reused(fake_gguf):
    folder = gguf_as_folder(fake_gguf)
    assert gguf_as_folder(fake_gguf) == folder
    assert FakeGGUFLoader.model.calls == 1
