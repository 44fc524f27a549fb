"""The LoRA adapter around the base model: its peft config, its initialisation and how it is saved.

Every accepted `init_lora_weights` does what its name says: True (kaiming A, B = 0), False (random B),
'gaussian' (gaussian A), 'eva' (A from the SVD of the layer inputs on a sample of training batches),
'pissa' / 'olora' (A and B from the base weights' SVD / QR, the base keeping the residual) and 'loftq'
(CUDA only). PiSSA and OLoRA change the base weights, so their adapter is saved converted into a plain
LoRA of twice the rank that applies to the unmodified base: otherwise loading it on the real base
(ragtune ask, merge, plain peft) would add the initial update twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.finetune.config import FinetuneConfig
from ragtune.finetune.data import IGNORE

EVA_BATCHES = 8  # training micro-batches EVA's incremental SVD cycles over
EVA_RHO = 2.0  # peft's default: a layer may take up to 2r of the rank budget where its inputs vary most
MUTATES_BASE = ("pissa", "olora")
INITIAL_FOLDER = ".initial-adapter"  # inside the output folder while training; removed at the end
INITIAL_NAME = "initial"  # peft loads it as an adapter of this name, which cannot hold a dot


def check_init_supported(config: FinetuneConfig, device: str, quantization: str) -> None:
    """Refuse, before any loading, the initialisations peft cannot compute here."""
    if config.init_lora_weights == "loftq" and device != "cuda":
        # peft's LoftQ moves every weight to CUDA (or XPU) for its SVD and fails on CPU-only torch.
        raise InputError(
            "init_lora_weights='loftq' needs a CUDA GPU (peft computes it there); use true on CPU"
        )
    if config.init_lora_weights == "pissa" and quantization != "none":
        # peft's PiSSA takes the SVD of full-precision weights only (quantization='auto' is nf4 on CUDA).
        raise InputError(
            f"init_lora_weights='pissa' needs a full-precision base, not quantization={quantization!r}: "
            "pass --quantization none, or use olora"
        )


def lora_config(config: FinetuneConfig, eva_label_mask: bool = True):
    from peft import EvaConfig, LoftQConfig, LoraConfig

    kwargs: dict[str, Any] = {}
    if config.init_lora_weights == "loftq":
        kwargs["loftq_config"] = LoftQConfig(loftq_bits=4)
    if config.init_lora_weights == "eva":
        kwargs["eva_config"] = EvaConfig(rho=EVA_RHO, use_label_mask=eva_label_mask)
    return LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=config.target_modules,
        init_lora_weights=config.init_lora_weights,
        task_type="CAUSAL_LM",
        **kwargs,
    )


def eva_label_mask(config: FinetuneConfig, batches: list[dict[str, Any]]) -> bool:
    """Whether EVA can take its SVD over answer tokens only (peft's default), as it skips a batch with
    fewer rows than components; else over every non-padding token. Raises when no batch is big enough,
    where peft would cycle over the batches forever."""
    need = int(config.r * EVA_RHO)
    if min(int((b["labels"] != IGNORE).sum()) for b in batches) >= need:
        return True
    if max(int(b["attention_mask"].sum()) for b in batches) >= need:
        return False
    raise InputError(
        f"init_lora_weights='eva' needs batches of at least {need} tokens (2 x r); raise --batch-size "
        "or --max-length, or use another init"
    )


def add_adapter(model, config: FinetuneConfig, batches: list[dict[str, Any]]):
    """Wrap `model` in a fresh LoRA adapter initialised as `config.init_lora_weights` says.

    `batches` (collated training micro-batches) feed EVA's SVD; other inits ignore them.
    """
    from peft import get_peft_model

    if config.init_lora_weights != "eva":
        return get_peft_model(model, lora_config(config))
    from peft import initialize_lora_eva_weights

    sample = batches[:EVA_BATCHES]
    # The adapter's A matrices are created empty (low_cpu_mem_usage) and filled from the SVD.
    peft_model = get_peft_model(
        model, lora_config(config, eva_label_mask(config, sample)), low_cpu_mem_usage=True
    )
    device = next(p.device for p in peft_model.parameters())
    on_device = [{k: v.to(device) for k, v in b.items()} for b in sample]
    initialize_lora_eva_weights(peft_model, dataloader=on_device, show_progress_bar=False)
    return peft_model


def save_initial(model, out: Path) -> Path | None:
    """For inits that change the base (PiSSA, OLoRA), save the adapter as initialised: the final save
    subtracts it to express the training as an update of the unmodified base."""
    if config_init(model) not in MUTATES_BASE:
        return None
    folder = out / INITIAL_FOLDER / INITIAL_NAME
    model.save_pretrained(folder)
    return folder


def config_init(model) -> Any:
    return model.peft_config["default"].init_lora_weights


def save_adapter(model, out: Path, initial: Path | None) -> None:
    """Write the trained adapter to `out`; converted to a plain LoRA of the unmodified base when its
    init changed the base (peft keeps the update exact: [A | A0] x [B | -B0] at rank 2r)."""
    import shutil

    if initial is None:
        model.save_pretrained(out)
        return
    model.save_pretrained(out, path_initial_model_for_weight_conversion=str(initial))
    shutil.rmtree(initial.parent, ignore_errors=True)
