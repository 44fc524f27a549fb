"""A GGUF file as a safetensors folder: converted once into ragtune's cache, reused after."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from ragtune.core.cache import cache_dir, discard, publish, staging_folder
from ragtune.core.errors import ModelLoadError

SOURCE_FILE = "ragtune_source.json"  # written last: which GGUF, and the size of every file made from it


def gguf_as_folder(gguf: Path) -> Path:
    """A safetensors copy of a GGUF model (dequantized), made once and reused."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"{gguf.stem}-{key}"
    if folder.exists():
        problem = damage(folder)
        if problem is None:
            return folder
        # A conversion cut short by a disk error or damaged since: converted again.
        print(f"ragtune: {folder} is damaged ({problem}); converting again", file=sys.stderr, flush=True)
        discard(folder)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"ragtune: converting {gguf.name} to a safetensors folder (once) in {folder}",
        file=sys.stderr,
        flush=True,
    )
    tmp = staging_folder(folder)  # also removes what conversions killed earlier left behind
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many kinds for unreadable or unsupported files
        raise ModelLoadError(f"cannot read {gguf}: {exc}") from exc
    # A GGUF-loaded model refuses to save while it still carries the GGUF quantizer; its weights
    # are already dequantized, so dropping the marker is safe.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        sizes = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / SOURCE_FILE).write_text(json.dumps({"gguf": str(gguf.resolve()), "sizes": sizes}))
        problem = damage(tmp)
        if problem is not None:
            raise ModelLoadError(f"the conversion of {gguf} came out damaged ({problem}); check the disk")
        return publish(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def damage(folder: Path) -> str | None:
    """Why a converted folder cannot be used, or None. Cheap (no weights are read): the recorded file
    sizes, config.json, and each safetensors file's header against its length."""
    try:
        source = json.loads((folder / SOURCE_FILE).read_text())
        for name, size in source.get("sizes", {}).items():  # older conversions recorded none
            found = (folder / name).stat().st_size
            if found != size:
                return f"{name} has {found} bytes, not {size}"
        json.loads((folder / "config.json").read_text())
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            return "no .safetensors weights"
        for path in weights:
            _check_safetensors(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _check_safetensors(path: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors it describes."""
    with path.open("rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        if not 2 <= length <= 100 * 2**20:
            raise ValueError(f"{path.name}: header length {length}")
        header = json.loads(fh.read(length))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end != path.stat().st_size:
        raise ValueError(f"{path.name}: {path.stat().st_size} bytes, its header describes {8 + length + end}")
