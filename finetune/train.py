"""LoRA and QLoRA training in one loop that reads top to bottom: load, wrap, get_lr, evaluate, step,
checkpoint. A run interrupted at any point resumes from its last checkpoint with the same batches.

The adapter's config, initialisation and saving live in adapter.py; checkpoints in checkpoint.py; what
differs when `accelerate launch` runs the loop on several processes (FSDP, ZeRO-3, DDP) in distributed.py.
"""

from __future__ import annotations

import math
import random
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.finetune.adapter import EVA_BATCHES, add_adapter, check_init_supported, save_initial
from ragtune.finetune.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from ragtune.finetune.config import CONFIG_FILE, FinetuneConfig
from ragtune.finetune.data import Dataset, Example, collate, load_qa_jsonl, load_store_chunks, split
from ragtune.finetune.distributed import current
from ragtune.rag.models.loading import choose_device, choose_quantization, load_tokenizer
from ragtune.rag.models.resolve import ModelSource, resolve_model


@dataclass(frozen=True)
class TrainResult:
    adapter: str
    base: str
    quantization: str
    device: str
    optimizer: str
    steps: int
    trainable_parameters: int
    train_examples: int
    eval_examples: int
    first_eval_loss: float | None
    final_eval_loss: float | None
    losses: list[float]  # mean training loss of every optimizer step, this run and resumed ones
    eval_losses: list[tuple[int, float]]
    seconds: float
    seconds_per_step: float  # median over the steps after the first (which pays for warm-up)
    peak_memory_mb: float
    resumed_from: int
    processes: int = 1  # > 1 under `accelerate launch`; losses are then the mean over the processes
    distributed: str = "none"  # accelerate's distributed type: fsdp, deepspeed, multi_gpu, multi_cpu, no

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: allocated tensor memory on CUDA; on CPU the resident-set high-water
    mark. Linux's VmHWM is read rather than ru_maxrss, which a child process inherits from its parent."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # macOS reports bytes


def lr_at(step: int, config: FinetuneConfig) -> float:
    """Linear warmup to `lr`, then constant: short LoRA runs gain nothing from a decay schedule."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    return config.lr


def batches_of_epoch(n_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The example indices of each micro-batch in `epoch`: a fixed shuffle per (seed, epoch), so a
    resumed run sees exactly the batches the interrupted one would have."""
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n_examples, batch_size)]


def total_steps(n_train: int, config: FinetuneConfig, processes: int = 1) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = math.ceil(n_train / config.batch_size) / config.grad_accumulation / processes
    return max(1, math.ceil(per_epoch * config.epochs))


def make_optimizer(params, config: FinetuneConfig, device: str, quantization: str, sharded: bool = False):
    """Paged AdamW (bitsandbytes) on CUDA, where optimizer state can page out to host memory during a
    spike; plain torch AdamW on CPU, where there is nothing to page to, and under FSDP / ZeRO-3, which
    split the optimizer state across GPUs themselves (as the peft guides for both train)."""
    if device == "cuda" and not sharded:
        try:
            import bitsandbytes as bnb

            return bnb.optim.PagedAdamW32bit(params, lr=config.lr, weight_decay=0.0), "paged_adamw_32bit"
        except ImportError:
            pass
    import torch

    return torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0), "adamw_torch"


def keep_4bit_layout_for_training(model) -> None:
    """Stop bitsandbytes from repacking 4-bit weights into its CPU inference layout.

    On CPUs with AVX512-BF16, a Linear4bit that runs in eval mode without gradients (the held-out loss
    pass) rewrites its weight into a packed layout meant for inference only; training on after that left
    the adapter without effect (held-out loss equal to 7 digits before and after 12 steps). Training
    never needs that layout, so it is switched off for the model being trained.
    """
    for layer in model.modules():
        if getattr(layer, "support_avx512bf16_for_cpu", False):
            layer.support_avx512bf16_for_cpu = False


def evaluate(model, examples: list[Example], batch_size: int, pad_id: int, device=None) -> float | None:
    """Mean loss per answer token over the held-out examples (every process of a launched run evaluates
    them all: FSDP's forward needs each process)."""
    import torch

    if not examples:
        return None
    device = device or model.device
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in collate(examples[i : i + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(model(**batch).loss) * n
            tokens += n
    model.train()
    return total / max(tokens, 1)


def train(
    config: FinetuneConfig,
    source: ModelSource,
    tokenizer,
    dataset: Dataset,
    out: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `dataset` and write it to `out`.

    `on_step(step, total, loss)` is called after every optimizer step (a UI's progress bar; raising
    there stops the run, which resumes from the last checkpoint next time).
    """
    import torch
    from peft import prepare_model_for_kbit_training
    from tqdm.auto import tqdm

    run = current(config)  # the single process as always, or one process of an `accelerate launch`
    device = choose_device("auto")
    quantization = choose_quantization(config.quantization, device)
    check_init_supported(config, device, quantization)
    train_set, eval_set = split(dataset.examples, config.eval_fraction, config.seed)
    if not train_set:
        raise InputError(f"{dataset.source}: too few examples to train ({len(dataset.examples)})")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: a file, not a folder; pass a new --out folder for the adapter")
    if (out / "adapter_config.json").is_file() and not (out / CHECKPOINT).exists():
        raise InputError(f"{out} already holds a trained adapter; pass a new --out")
    if resume and run.sharded and (out / CHECKPOINT).exists():
        raise InputError(
            f"{out / CHECKPOINT}: FSDP and ZeRO-3 runs cannot resume from a checkpoint (they write none); "
            "pass --no-resume to start over"
        )
    if run.is_main:
        if not resume and (out / CHECKPOINT).exists():
            shutil.rmtree(out / CHECKPOINT)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, no permission, read-only disk
            raise InputError(f"cannot create the adapter folder {out}: {exc.strerror or exc}") from exc
    run.wait()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    model = run.load_model(source, quantization, device)
    keep_4bit_layout_for_training(model)
    if quantization != "none" and not run.sharded:
        # Casts norms to fp32 and makes the frozen 4-bit base pass gradients to the adapters.
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing or device == "cuda"
        )
    elif config.gradient_checkpointing or quantization != "none":
        # Sharded QLoRA skips the fp32 cast of the norms: FSDP and ZeRO-3 need one dtype throughout.
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    pad_id = tokenizer.pad_token_id
    first_batches = [  # what a data-driven init (EVA) looks at: the first batches training will see
        collate([train_set[r] for r in rows], pad_id)
        for rows in batches_of_epoch(len(train_set), config.batch_size, config.seed, 0)[:EVA_BATCHES]
    ]
    # Also on resume: inits are deterministic, so PiSSA/OLoRA rebuild the same residual base before the
    # checkpoint overwrites the adapter weights.
    model = add_adapter(model, config, first_batches)
    initial_adapter = save_initial(model, out)
    model.train()
    trainable_parameters = model.get_nb_trainable_parameters()[0]  # also counts ZeRO-3's partitioned ones
    model, (optimizer, optimizer_name) = run.prepare(
        model, lambda params: make_optimizer(params, config, device, quantization, run.sharded)
    )
    where = run.device_of(model)

    steps = total_steps(len(train_set), config, run.processes)
    state = load_checkpoint(run.unwrap(model), optimizer, out, config) if resume else None
    step = state["step"] if state else 0
    losses: list[float] = state["losses"] if state else []
    eval_losses: list[tuple[int, float]] = [tuple(x) for x in state["eval_losses"]] if state else []
    if not eval_losses and eval_set:
        eval_losses.append((0, evaluate(model, eval_set, config.batch_size, pad_id, where)))

    bar = tqdm(
        total=steps, initial=step, desc="training", unit="step", disable=not (progress and run.is_main)
    )
    micro = step * config.grad_accumulation  # micro-batches already consumed
    per_epoch = len(batches_of_epoch(len(train_set), config.batch_size, config.seed, 0))
    step_seconds: list[float] = []
    while step < steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        step_loss = 0.0
        for _ in range(config.grad_accumulation):
            # With several processes, the micro-batches of the one schedule are dealt out in turn.
            epoch, index = divmod(micro * run.processes + run.rank, per_epoch)
            rows = batches_of_epoch(len(train_set), config.batch_size, config.seed, epoch)[index]
            batch = {k: v.to(where) for k, v in collate([train_set[r] for r in rows], pad_id).items()}
            with run.accumulate(model):
                loss = run.backward(model(**batch).loss, config.grad_accumulation)
            step_loss += float(loss.detach())
            micro += 1
        run.clip(model)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        step_loss = run.mean(step_loss)
        losses.append(step_loss)
        step_seconds.append(time.perf_counter() - t0)
        if eval_set and (step % config.eval_every == 0 or step == steps):
            eval_losses.append((step, evaluate(model, eval_set, config.batch_size, pad_id, where)))
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", eval=f"{eval_losses[-1][1]:.3f}" if eval_losses else "-")
        if step % config.save_every == 0 and step < steps and not run.sharded:
            if run.is_main:
                save_checkpoint(
                    run.unwrap(model),
                    optimizer,
                    out,
                    {"step": step, "config": config.to_dict(), "losses": losses, "eval_losses": eval_losses},
                )
            run.wait()
        if on_step is not None:
            on_step(step, steps, step_loss)
    bar.close()

    # The adapter names the folder its base loads from, so plain peft can load it as well as ragtune.
    base_folder = Path(source.path)
    run.unwrap(model).peft_config["default"].base_model_name_or_path = (
        str(base_folder.resolve()) if base_folder.exists() else source.path
    )
    run.save_adapter(model, out, initial_adapter)
    if run.is_main:
        tokenizer.save_pretrained(out)
    result = TrainResult(
        adapter=str(out),
        base=source.path,
        quantization=quantization,
        device=device,
        optimizer=optimizer_name,
        steps=step,
        trainable_parameters=trainable_parameters,
        train_examples=len(train_set),
        eval_examples=len(eval_set),
        first_eval_loss=eval_losses[0][1] if eval_losses else None,
        final_eval_loss=eval_losses[-1][1] if eval_losses else None,
        losses=losses,
        eval_losses=eval_losses,
        seconds=time.perf_counter() - started,
        # The first step pays for lazy initialisation; the median of the rest is the steady pace.
        seconds_per_step=statistics.median(step_seconds[1:] or step_seconds) if step_seconds else 0.0,
        peak_memory_mb=peak_memory_mb(device),
        resumed_from=state["step"] if state else 0,
        processes=run.processes,
        distributed=run.kind,
    )
    if run.is_main:
        config.save(out, {"base_model": config.model, "data": dataset.to_dict(), **result.to_dict()})
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)
    run.wait()
    run.finish()
    return result


def finetune(
    config: FinetuneConfig,
    out: str | Path,
    *,
    data: str | Path | None = None,
    index: str | Path | None = None,
    skip_bad_lines: bool = False,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train an adapter on question/answer JSONL (`data`) or on an index's chunks (`index`)."""
    if (data is None) == (index is None):
        raise InputError("give training data: either a JSONL file (--data) or an index (--from-store)")
    source = resolve_model(config.model)
    tokenizer = load_tokenizer(source.path)
    if data is not None:
        dataset = load_qa_jsonl(data, tokenizer, config.max_length, skip_bad_lines=skip_bad_lines)
    else:
        dataset = load_store_chunks(index, tokenizer, config.max_length)
    return train(config, source, tokenizer, dataset, out, resume=resume, progress=progress, on_step=on_step)


__all__ = ["CHECKPOINT", "CONFIG_FILE", "TrainResult", "finetune", "train"]
