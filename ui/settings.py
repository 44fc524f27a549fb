"""What `ragtune ui` is started with: one dataclass, so the command's options are derived from its fields."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.core.errors import InputError
from ragtune.rag.config import ReaderConfig

UPLOADS_FOLDER = "documents"  # inside the index folder: where uploaded files are kept and indexed from


@dataclass(frozen=True)
class UISettings:
    """Where the app finds its index, models and experiments. Everything else is chosen on the page."""

    index: str = field(default=".ragtune", metadata={"help": "Index folder the page answers from."})
    model: str = field(
        default="default",
        metadata={"help": "Model selected when the page opens: 'default' or a local model folder."},
    )
    adapters_dir: str = field(
        default=".",
        metadata={
            "help": "Folder searched (3 levels deep) for LoRA adapter folders to offer in the sidebar."
        },
    )
    runs_dir: str = field(
        default=".",
        metadata={"help": "Folder searched (3 levels deep) for `ragtune eval` run folders to show."},
    )
    max_upload_mb: float = field(
        default=ReaderConfig().max_file_mb,
        metadata={"help": "Largest file accepted by the upload box, in MB (the reader's own limit)."},
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise InputError(f"max_upload_mb={self.max_upload_mb}: must be a number of megabytes > 0")
        if not self.index.strip():
            raise InputError("index is empty: give the index folder")

    @property
    def uploads(self) -> Path:
        return Path(self.index).expanduser() / UPLOADS_FOLDER

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> UISettings:
        """The settings `ragtune ui` passed to the Streamlit script; unknown keys are a mistake, not ignored."""
        try:
            return cls(**json.loads(text))
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(
                f"the UI was started with settings it cannot read ({exc}); use `ragtune ui`"
            ) from None
