"""A GGUF file as a safetensors folder: converted once into ragtune's cache, reused after."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ragtune.core.cache import cache_dir, publish, staging_folder
from ragtune.core.errors import ModelLoadError


def gguf_as_folder(gguf: Path) -> Path:
    """A safetensors copy of a GGUF model (dequantized), made once and reused."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"{gguf.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(
        f"ragtune: converting {gguf.name} to a safetensors folder (once) in {folder}",
        file=sys.stderr,
        flush=True,
    )
    tmp = staging_folder(folder)
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
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "ragtune_source.json").write_text(json.dumps({"gguf": str(gguf.resolve())}))
    return publish(tmp, folder)
