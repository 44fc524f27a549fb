"""Importing ragtune and answering with an unquantized model print nothing that is not ragtune's.

Run in fresh interpreters: what a library prints, and whether it imports bitsandbytes, happens once
per process.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

GEMM_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_answering_unquantized_neither_imports_bitsandbytes_nor_prints(tiny_llm_dir: Path):
    done = run_python(
        "import sys\n"
        "from ragtune import RAG, GeneratorConfig, LocalLLM\n"
        f"llm = LocalLLM.load(GeneratorConfig(model={str(tiny_llm_dir)!r}, max_new_tokens=1))\n"
        "llm.generate([{'role': 'user', 'content': 'what is LoRA ?'}])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bitsandbytes', 'peft')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert done.stderr == ""


def test_libraries_that_import_bitsandbytes_after_ragtune_print_no_kernel_notice():
    # sentence-transformers (the embedder, on every ingest) imports transformers' Trainer helpers,
    # which import peft when installed, which imports bitsandbytes: its import-time notice is ragtune's
    # to silence.
    done = run_python("import ragtune, sentence_transformers, sys; print('bitsandbytes' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"  # imported, as it is whenever peft is installed
    assert "gemm_4bit_forward" not in done.stderr


def test_only_the_kernel_notice_is_silenced(caplog):
    import ragtune  # noqa: F401  (installs the filter)

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING):
        logger.warning(GEMM_NOTICE)
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]
