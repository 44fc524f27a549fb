"""Suites whose documents are not ours to ship: the folder holds our questions and a manifest
(`source.json`), and the documents are built on the user's machine from files an installed package
provides (e.g. the Debian Reference from `debian-reference-en`).

The manifest names the package, how to install it, the folder its files are in (`base`), the files of
v1, and v2 as changes to v1: files removed, files added, and text edits (`old` -> `new`, each `old`
found exactly once in its file). The built versions go to `<cache>/<suite>-<hash>/v1` and `/v2`; the
hash covers the manifest, the base folder and the size of every file used, so a new manifest or an
upgraded package gets a fresh build, and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ragtune.core.cache import cache_dir, discard, publish, staging_folder
from ragtune.core.errors import InputError

MANIFEST = "source.json"
# Written last into a build: a folder without it is a killed or damaged build, never reused.
COMPLETE = ".complete"


def has_source(root: Path) -> bool:
    """A suite whose documents come from a manifest rather than a `docs/` folder."""
    return (root / MANIFEST).is_file() and not (root / "docs").exists()


def _file_names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise InputError(f"{where} must be a list of file names")
    for name in value:
        # Plain names only: a manifest must not read or write outside the base and build folders.
        if Path(name).name != name or name in (".", ".."):
            raise InputError(f"{where}: {name!r} is not a plain file name")
    return list(value)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: must hold a JSON object")
    for key in ("package", "apt", "base"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise InputError(f"{path}: '{key}' must be a non-empty string")
    v1 = _file_names(manifest.get("v1"), f"{path}: 'v1'")
    if not v1:
        raise InputError(f"{path}: 'v1' lists no files")
    v2 = manifest.get("v2", {})
    if not isinstance(v2, dict):
        raise InputError(f"{path}: 'v2' must be an object with 'remove', 'add' and 'edits'")
    remove = _file_names(v2.get("remove", []), f"{path}: 'v2.remove'")
    add = _file_names(v2.get("add", []), f"{path}: 'v2.add'")
    if stray := sorted(set(remove) - set(v1)):
        raise InputError(f"{path}: 'v2.remove' names {stray[0]}, which is not in 'v1'")
    if twice := sorted(set(add) & set(v1)):
        raise InputError(f"{path}: 'v2.add' names {twice[0]}, which is already in 'v1'")
    v2_files = [name for name in v1 if name not in remove] + add
    edits = v2.get("edits", [])
    if not isinstance(edits, list):
        raise InputError(f"{path}: 'v2.edits' must be a list")
    for number, edit in enumerate(edits, 1):
        if not isinstance(edit, dict) or not all(
            isinstance(edit.get(key), str) and edit[key] for key in ("file", "old", "new")
        ):
            raise InputError(f"{path}: v2 edit {number} must have non-empty strings 'file', 'old' and 'new'")
        if edit["file"] not in v2_files:
            raise InputError(f"{path}: v2 edit {number} edits {edit['file']}, which is not in v2")
    return {**manifest, "v1": v1, "v2_files": v2_files, "edits": edits}


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _apply_edits(folder: Path, edits: list[dict[str, str]], manifest_path: Path) -> None:
    for number, edit in enumerate(edits, 1):
        target = folder / edit["file"]
        text = target.read_text(encoding="utf-8")
        count = text.count(edit["old"])
        if count != 1:
            raise InputError(
                f"{manifest_path}: v2 edit {number} ({edit['file']}): old text {_short(edit['old'])} "
                f"occurs {count} times, expected exactly once"
            )
        # newline="" keeps the file's own line endings: only the edited words change.
        with target.open("w", encoding="utf-8", newline="") as out:
            out.write(text.replace(edit["old"], edit["new"]))


def materialise(root: Path, cache: Path | None = None, base: Path | None = None) -> dict[str, Path]:
    """Build (or reuse) the suite's v1 and v2 document folders from the installed package's files.

    `base` overrides the manifest's folder of package files (tests use a fake package). Returns
    {"v1": folder, "v2": folder}."""
    root = Path(root)
    manifest_path = root / MANIFEST
    manifest = _read_manifest(manifest_path)
    base = Path(base) if base is not None else Path(manifest["base"])
    used = sorted(set(manifest["v1"]) | set(manifest["v2_files"]))
    missing = [name for name in used if not (base / name).is_file()]
    if missing:
        raise InputError(
            f"suite {root.name} needs the Debian package {manifest['package']}: {manifest['apt']}"
        )

    digest = hashlib.sha256(manifest_path.read_bytes())
    digest.update(str(base.resolve()).encode())
    for name in used:
        digest.update(f"\0{name}\0{(base / name).stat().st_size}".encode())
    target = Path(cache or cache_dir() / "suites") / f"{root.name}-{digest.hexdigest()[:12]}"
    versions = {"v1": target / "v1", "v2": target / "v2"}
    if (target / COMPLETE).is_file():
        return versions
    if target.exists():
        discard(target)  # a build without its marker was damaged after publishing: start over

    tmp = staging_folder(target)
    try:
        for version, names in (("v1", manifest["v1"]), ("v2", manifest["v2_files"])):
            (tmp / version).mkdir(parents=True)
            for name in names:
                shutil.copyfile(base / name, tmp / version / name)
        _apply_edits(tmp / "v2", manifest["edits"], manifest_path)
        (tmp / COMPLETE).write_text("built from " + str(base) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(tmp, target)
    return versions
