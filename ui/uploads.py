"""Uploaded files into the index's own documents folder: safe names, a size limit, nothing written elsewhere.

Pure file handling with no Streamlit in it, so every refusal is tested directly.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ragtune.core.errors import InputError
from ragtune.rag.ingest.readers import SUPPORTED_SUFFIXES

MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[^\w.\- ()+,]+")


@dataclass(frozen=True)
class SavedUpload:
    name: str  # as written, after sanitising
    path: Path
    replaced: bool  # an earlier upload of the same name was replaced (the next re-index sees an edit)


def safe_name(name: str) -> str:
    """`name` reduced to a plain file name that can only land inside the uploads folder.

    Directory parts (either slash), control characters and leading dots (hidden files are never
    indexed) are dropped, other unusual characters become "_"; the type must be one ragtune reads.
    """
    base = PureWindowsPath(PurePosixPath(name.replace("\0", "")).name).name  # "..\\..\\x" and "../x" alike
    base = "".join(ch for ch in unicodedata.normalize("NFC", base) if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE.sub("_", base).strip(" ").lstrip(".")
    suffix = Path(base).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = suffix or "(none)"
        raise InputError(
            f"{name!r}: file type {shown} is not indexed; use one of {', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    stem = base[: -len(suffix)].rstrip(" .")
    if not stem:
        raise InputError(f"{name!r}: the file name is empty once unsafe characters are removed")
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix


def save_upload(folder: Path, name: str, data: bytes, max_bytes: int) -> SavedUpload:
    """Write one uploaded file into `folder` under its safe name, atomically (a crash leaves the old file).

    Refuses empty and too-large files; never follows a link planted in the folder."""
    clean = safe_name(name)
    if not data:
        raise InputError(f"{name!r} is empty")
    if len(data) > max_bytes:
        raise InputError(
            f"{name!r} is {len(data) / 2**20:.1f} MB; the upload limit is {max_bytes / 2**20:.0f} MB"
        )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / clean
    if target.resolve().parent != folder.resolve() or target.is_symlink() or target.is_dir():
        raise InputError(f"{name!r}: {clean} in the documents folder is not a regular file; not overwritten")
    replaced = target.exists()
    temporary = folder / f".upload-{os.getpid()}-{clean}"
    with open(temporary, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, target)  # the name itself is replaced: a link there would not be followed
    return SavedUpload(clean, target, replaced)
