"""Where the bundled sample corpus (the fictional "Heron" team's docs) is installed."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def sample_corpus() -> Path:
    """The folder of the sample corpus installed with the package."""
    return Path(str(files("ragtune.rag") / "sample_corpus"))
