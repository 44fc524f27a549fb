"""The one config of a fine-tuning run, saved beside the adapter it produced."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError

FINETUNE_FORMAT = 1
CONFIG_FILE = "ragtune_finetune.json"
INIT_LORA_WEIGHTS = ("gaussian", "loftq", "pissa", "olora", "eva", True, False)
QUANTIZATIONS = ("auto", "nf4", "none")


@dataclass(frozen=True)
class FinetuneConfig:
    """LoRA / QLoRA training settings. Defaults follow the QLoRA paper's small-model recipe, scaled down
    for CPU (r=8, alpha=16, q_proj + v_proj)."""

    model: str = field(
        default="default",
        metadata={
            "help": "Base model: 'default', a local HF model folder, a .gguf file, or a model name already "
            "in the local HF cache (as GeneratorConfig.model)."
        },
    )
    quantization: str = field(
        default="auto",
        metadata={
            "help": "nf4: QLoRA (4-bit base, prepare_model_for_kbit_training, paged AdamW on CUDA); "
            "none: plain LoRA on a full-precision base; auto: nf4 on CUDA, none on CPU.",
            "choices": QUANTIZATIONS,
        },
    )
    r: int = field(default=8, metadata={"help": "LoRA rank."})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator: updates scale by alpha / r."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "v_proj"],
        metadata={
            "help": "Module names to adapt, or 'all-linear' for every linear layer but the head.",
            "choices": ("all-linear",),  # the one string form; anything else is a list of names
        },
    )
    init_lora_weights: bool | str = field(
        default=True,
        metadata={
            "help": "True: kaiming A, B = 0 so training starts from the base model; 'gaussian': A drawn "
            "with sd 1/r; 'eva': A from the SVD of each layer's inputs on the first training batches "
            "(ranks redistributed up to 2r); 'pissa' / 'olora': A, B from the base weights' SVD / QR, the "
            "base keeps the residual (the saved adapter is converted to rank 2r for the unmodified base; "
            "pissa needs quantization='none'); 'loftq' (CUDA only: initialise against the quantization "
            "error; used with quantization='none', the base is quantized by LoftQ itself); False: random B.",
            "choices": INIT_LORA_WEIGHTS,
        },
    )
    lr: float = field(default=2e-4, metadata={"help": "Peak learning rate (constant after warmup)."})
    warmup_steps: int = field(default=10, metadata={"help": "Linear warmup from 0 to lr."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training examples."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimizer steps."})
    batch_size: int = field(default=4, metadata={"help": "Examples per forward pass."})
    grad_accumulation: int = field(default=1, metadata={"help": "Forward passes per optimizer step."})
    max_length: int = field(default=256, metadata={"help": "Tokens per example; longer ones are cut."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of examples held out for eval loss."})
    eval_every: int = field(default=20, metadata={"help": "Optimizer steps between eval-loss checks."})
    save_every: int = field(default=50, metadata={"help": "Optimizer steps between checkpoints."})
    seed: int = field(default=0, metadata={"help": "Seeds the split, shuffling and LoRA init."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Trade compute for memory (turned on for QLoRA, as peft does)."}
    )
    raft: bool = field(
        default=False,
        metadata={
            "help": "With --from-store: train on RAFT examples instead of raw chunks: questions generated "
            "from the index's chunks, each asked with its gold chunk among retrieved distractors, the "
            "target quoting the sentence that holds the answer, with its [n] (written to OUT/raft.jsonl first)."
        },
    )
    raft_no_gold_fraction: float = field(
        default=0.2,
        metadata={
            "help": "RAFT: share of examples whose gold chunk is left out; their target is the refusal."
        },
    )
    raft_distractors: int = field(
        default=3, metadata={"help": "RAFT: retrieved chunks that do not answer, shown beside the gold one."}
    )

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise InputError(
                f"quantization={self.quantization!r}: training supports nf4 (QLoRA), none (LoRA) or auto"
            )
        positive = {
            "r": self.r,
            "alpha": self.alpha,
            "batch_size": self.batch_size,
            "grad_accumulation": self.grad_accumulation,
            "max_length": self.max_length,
            "eval_every": self.eval_every,
            "save_every": self.save_every,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name}={value!r}: must be a whole number >= 1")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout={self.dropout}: must be in [0, 1)")
        if not (0 < self.lr < float("inf") and 0 < self.epochs < float("inf")):  # also refuses NaN
            raise InputError(f"lr={self.lr}, epochs={self.epochs}: both must be finite numbers > 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps={self.max_steps}: must be >= 1 (or None for whole epochs)")
        if not 0 <= self.raft_no_gold_fraction < 1:
            raise InputError(f"raft_no_gold_fraction={self.raft_no_gold_fraction}: must be in [0, 1)")
        if not isinstance(self.raft_distractors, int) or self.raft_distractors < 0:
            raise InputError(f"raft_distractors={self.raft_distractors!r}: must be a whole number >= 0")
        if not 0 <= self.eval_fraction < 1:
            raise InputError(f"eval_fraction={self.eval_fraction}: must be in [0, 1)")
        if self.init_lora_weights not in INIT_LORA_WEIGHTS:
            raise InputError(
                f"init_lora_weights={self.init_lora_weights!r}: use one of {', '.join(map(str, INIT_LORA_WEIGHTS))}"
            )
        if self.init_lora_weights == "loftq" and self.quantization == "nf4":
            raise InputError(
                "init_lora_weights='loftq' quantizes the base itself: use it with quantization='none'"
            )
        if self.init_lora_weights == "pissa" and self.quantization == "nf4":
            raise InputError(
                "init_lora_weights='pissa' takes the SVD of full-precision weights: use it with "
                "quantization='none', or use olora on a 4-bit base"
            )
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise InputError(f"target_modules={self.target_modules!r}: a list of names, or 'all-linear'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"finetune config has unknown keys {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**data)

    def save(self, folder: Path, run: dict[str, Any]) -> None:
        """Write this config and what the run did (`run`: base path, data, losses) beside the adapter."""
        data = {"format": FINETUNE_FORMAT, "config": self.to_dict(), "run": run}
        (folder / CONFIG_FILE).write_text(json.dumps(data, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> tuple[FinetuneConfig, dict[str, Any]]:
        path = folder / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from exc
        if data.get("format") != FINETUNE_FORMAT:
            raise InputError(f"{path}: format {data.get('format')}, this ragtune reads {FINETUNE_FORMAT}")
        return cls.from_dict(data["config"]), data.get("run", {})
