"""The wheel installs one top-level name, `ragtune`, with every folder of the repository inside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy, so a stale build/ folder in the checkout can never leak old modules into it.
    source = tmp_path_factory.mktemp("source") / "ragtune"
    skip = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".ragtune*")
    shutil.copytree(ROOT, source, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("ragtune-*.whl")
    return zipfile.ZipFile(path)


def test_ragtune_is_the_only_top_level_name(wheel: zipfile.ZipFile):
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"ragtune"}


def test_every_package_folder_is_in_the_wheel(wheel: zipfile.ZipFile):
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            expected.add("/".join((*package.split("."), *parts, "__init__.py")))
    assert expected <= set(wheel.namelist()), f"not packaged: {sorted(expected - set(wheel.namelist()))}"


def test_the_sample_corpus_and_the_entry_point_ship(wheel: zipfile.ZipFile):
    names = wheel.namelist()
    shipped = {n.removeprefix("ragtune/rag/") for n in names if n.startswith("ragtune/rag/sample_corpus/")}
    on_disk = {
        str(p.relative_to(ROOT / "rag")) for p in (ROOT / "rag" / "sample_corpus").rglob("*") if p.is_file()
    }
    assert shipped == on_disk
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "ragtune = ragtune.cli.main:main" in wheel.read(entry_points).decode()


def test_the_bundled_eval_suites_ship(wheel: zipfile.ZipFile):
    shipped = {
        n.removeprefix("ragtune/eval/") for n in wheel.namelist() if n.startswith("ragtune/eval/suites/")
    }
    on_disk = {
        str(p.relative_to(ROOT / "eval")) for p in (ROOT / "eval" / "suites").rglob("*") if p.is_file()
    }
    assert shipped == on_disk and "suites/heron/questions.jsonl" in shipped


def test_the_accelerate_configs_ship(wheel: zipfile.ZipFile):
    folder = ROOT / "finetune" / "accelerate_configs"
    shipped = {n.removeprefix("ragtune/finetune/") for n in wheel.namelist() if "/accelerate_configs/" in n}
    on_disk = {str(p.relative_to(ROOT / "finetune")) for p in folder.iterdir() if p.is_file()}
    assert shipped == on_disk
    assert {"accelerate_configs/fsdp-qlora.yaml", "accelerate_configs/zero3.yaml"} <= shipped
