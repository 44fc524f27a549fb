"""What the training loop does differently when `accelerate launch` started it on several processes.

train.py asks `current(config)` for a run and calls it where one process and many differ: loading the
model, wrapping model and optimizer, backward, clipping, which rows a process trains on, and who writes.
`Local` is the single process ragtune always ran: each method does exactly what the loop did before.
`Accelerated` wraps model and optimizer in an Accelerator; it is used when the process was started by
`accelerate launch` (`ragtune finetune --accelerate-config`, finetune/launch.py), whatever the
distribution: one process, DDP on CPUs or GPUs, FSDP or DeepSpeed ZeRO-3.

Under FSDP and ZeRO-3 (`sharded`) the 4-bit weights are stored in the compute dtype, the optimizer state
is split across processes and the adapter is written from the full state dict gathered on the main
process. Such runs write no mid-run checkpoints: ragtune's checkpoints hold the optimizer state as plain
tensors of one process, which a sharded optimizer does not have.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ragtune.core.errors import InputError, ModelLoadError
from ragtune.finetune.adapter import save_adapter
from ragtune.finetune.config import FinetuneConfig
from ragtune.rag.models.loading import (
    attach_adapter,
    compute_dtype,
    cuda_available,
    load_model,
    quantization_config,
)
from ragtune.rag.models.resolve import ModelSource

# Inits that each process would compute on its own (from its data or its shard of the base weights), or
# that write a second adapter beside the first: a launched run refuses them.
SINGLE_PROCESS_INITS = ("eva", "pissa", "olora", "loftq")
# accelerate's DistributedType values (a str enum) that shard parameters and optimizer state.
SHARDED = ("FSDP", "DEEPSPEED")


def launched() -> bool:
    """Whether `accelerate launch` started this process: each of its launchers (one process, torchrun,
    DeepSpeed) sets ACCELERATE_MIXED_PRECISION for the processes it starts."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ


def is_main_process() -> bool:
    if not launched():
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def check_supported(config: FinetuneConfig, sharded: bool, cuda: bool) -> None:
    """Refuse what a launched run cannot do (checked before launching, and again in each process)."""
    if config.init_lora_weights in SINGLE_PROCESS_INITS:
        raise InputError(
            f"init_lora_weights={config.init_lora_weights!r} runs in a single process only (each process "
            "would compute its own); with --accelerate-config use true, false or gaussian"
        )
    if sharded and config.quantization == "nf4" and not cuda:
        # bitsandbytes' CPU kernels read 4-bit weights packed in uint8 only (they fail on fp32 storage).
        raise InputError(
            "quantization='nf4' under FSDP or ZeRO-3 packs the 4-bit weights in the compute dtype, which "
            "bitsandbytes reads on CUDA GPUs only: use --quantization none without GPUs"
        )


def bnb_config(quantization: str, device: str, sharded: bool):
    """ragtune's BitsAndBytesConfig for `quantization`; under FSDP or ZeRO-3 the packed 4-bit weights are
    stored in the compute dtype (bfloat16 on GPUs that have it), as both shard floating-point tensors of
    one dtype only (peft's FSDP-QLoRA and DeepSpeed ZeRO-3 QLoRA guides)."""
    qconfig = quantization_config(quantization, device)
    if qconfig is not None and sharded and qconfig.load_in_4bit:
        qconfig.bnb_4bit_quant_storage = qconfig.bnb_4bit_compute_dtype
    return qconfig


def trainable(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


class Local:
    """One process, no Accelerator: the loop as it always ran."""

    processes, rank, is_main, sharded, kind = 1, 0, True, False, "none"

    def load_model(self, source: ModelSource, quantization: str, device: str):
        return load_model(source, quantization, device)

    def prepare(self, model, build):
        """`build(params)` makes the optimizer (and its name) over the trainable parameters."""
        return model, build(trainable(model))

    def unwrap(self, model):
        return model

    def device_of(self, model):
        return model.device

    def accumulate(self, model):
        return contextlib.nullcontext()

    def backward(self, loss, grad_accumulation: int):
        scaled = loss / grad_accumulation
        scaled.backward()
        return scaled

    def clip(self, model) -> None:
        import torch

        torch.nn.utils.clip_grad_norm_(trainable(model), 1.0)

    def mean(self, value: float) -> float:
        return value

    def wait(self) -> None:
        pass

    def save_adapter(self, model, out: Path, initial: Path | None) -> None:
        save_adapter(model, out, initial)

    def finish(self) -> None:
        pass


class Accelerated(Local):
    """The process of a launched run: model and optimizer wrapped by an Accelerator, gradients synchronised
    every `grad_accumulation` micro-batches, files written by the main process only."""

    def __init__(self, config: FinetuneConfig) -> None:
        from accelerate import Accelerator

        # Created before the model is loaded: under ZeRO-3 the model is then built partitioned (zero.Init).
        self.accelerator = acc = Accelerator(gradient_accumulation_steps=config.grad_accumulation)
        self.fsdp = acc.distributed_type == "FSDP"
        self.sharded = acc.distributed_type in SHARDED
        check_supported(config, self.sharded, cuda_available())
        self.kind = acc.distributed_type.value.lower()
        self.processes, self.rank, self.is_main = acc.num_processes, acc.process_index, acc.is_main_process
        if acc.distributed_type == "DEEPSPEED":
            # DeepSpeed reads the micro-batch size from the data loaders it is given; ragtune batches itself.
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size

    def load_model(self, source: ModelSource, quantization: str, device: str):
        from transformers import AutoModelForCausalLM

        kwargs = {"local_files_only": True, "dtype": compute_dtype(device)}
        qconfig = bnb_config(quantization, device, self.sharded)
        if qconfig is not None:
            kwargs["quantization_config"] = qconfig
        if device == "cuda" and not self.sharded:
            # One whole copy per GPU (DDP); FSDP and ZeRO-3 place and shard the weights themselves.
            kwargs["device_map"] = {"": self.accelerator.device}
        try:
            model = AutoModelForCausalLM.from_pretrained(source.path, **kwargs)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"cannot load the model in {source.path}: {first}") from exc
        return attach_adapter(model, source.adapter) if source.adapter is not None else model

    def prepare(self, model, build):
        acc = self.accelerator
        if self.fsdp:
            from peft.utils.other import fsdp_auto_wrap_policy

            # LoRA layers in FSDP units of their own, apart from the frozen weights: use_orig_params=False
            # needs every unit all trainable or all frozen (peft's FSDP guide).
            acc.state.fsdp_plugin.auto_wrap_policy = fsdp_auto_wrap_policy(model)
            # FSDP1 replaces the parameters by flat shards: the optimizer is built on the wrapped model.
            model = acc.prepare(model)
            optimizer, name = build(trainable(model))
            return model, (acc.prepare(optimizer), name)
        optimizer, name = build(trainable(model))
        model, optimizer = acc.prepare(model, optimizer)  # DeepSpeed takes both in one call
        return model, (optimizer, name)

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model)

    def device_of(self, model):
        return self.accelerator.device

    def accumulate(self, model):
        return self.accelerator.accumulate(model)

    def backward(self, loss, grad_accumulation: int):
        # Accelerate divides by the accumulation steps itself (DeepSpeed's engine, when it is one).
        self.accelerator.backward(loss)
        return loss.detach() / grad_accumulation

    def clip(self, model) -> None:
        # FSDP clips over its shards; DeepSpeed clips inside its step (gradient_clipping in its config).
        self.accelerator.clip_grad_norm_(model.parameters(), 1.0)

    def mean(self, value: float) -> float:
        import torch

        return float(self.accelerator.reduce(torch.tensor(value, device=self.accelerator.device), "mean"))

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()

    def save_adapter(self, model, out: Path, initial: Path | None) -> None:
        # Every process takes part in gathering the full state dict (FSDP: FULL_STATE_DICT to rank 0;
        # ZeRO-3: the 16-bit weights); the main process keeps the adapter's part of it.
        state = self.accelerator.get_state_dict(model)
        if self.is_main:
            self.unwrap(model).save_pretrained(out, state_dict=state)
        self.wait()

    def finish(self) -> None:
        self.accelerator.end_training()


def current(config: FinetuneConfig) -> Local:
    return Accelerated(config) if launched() else Local()
