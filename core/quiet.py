"""Messages from other libraries that ragtune silences, each named exactly, with the reason.

Installed when `ragtune` is imported, before any of those libraries is: a logging filter set on a
logger that does not exist yet still applies once the library creates it.
"""

from __future__ import annotations

import logging

# bitsandbytes (>= 0.49) warns at import time, on CPUs with AVX512-BF16, that the optional `kernels`
# package for its CPU 4-bit matmul is missing. It is imported even when nothing is quantized:
# sentence-transformers imports transformers' Trainer helpers, which import peft when it is installed,
# and peft imports bitsandbytes. The notice is about a 4-bit speed-up ragtune's default path never uses.
SILENCED = {
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


_FILTERS = {name: _DropMessage(prefix) for name, prefix in SILENCED.items()}


def silence_known_noise() -> None:
    """Install the filters (again is a no-op: a logger keeps one copy of each filter)."""
    for name, drop in _FILTERS.items():
        logging.getLogger(name).addFilter(drop)
