"""Fine-tuning on several processes: the accelerate configs ragtune ships, read by accelerate's own loader;
the `accelerate launch` command `ragtune finetune --accelerate-config` builds; and real launches on CPU:
one process through the Accelerator, two processes training together (DDP over gloo), and DeepSpeed
ZeRO-3 in one process. FSDP itself needs CUDA GPUs (accelerate refuses it on CPU); the FSDP + QLoRA
settings are checked in what ragtune hands to bitsandbytes and accelerate.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pytest

from ragtune.cli.main import main
from ragtune.finetune.config import CONFIG_FILE, FinetuneConfig
from ragtune.finetune.distributed import SHARDED, bnb_config
from ragtune.finetune.launch import config_file, read_config, shipped

QA = [
    {"question": f"what does LoRA learn {i} ?", "answer": "LoRA learns a low-rank update"} for i in range(16)
]
LAUNCHER = [sys.executable, "-m", "accelerate.commands.launch"]


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in QA))
    return path


def settings(tiny_llm_dir: Path, steps: int = 2) -> list[str]:
    return [
        *("--model", str(tiny_llm_dir), "--max-steps", str(steps), "--batch-size", "2", "--lr", "0.01"),
        *("--warmup-steps", "0", "--eval-every", "1", "--init-lora-weights", "false", "--quiet"),
    ]


def dry_run(argv: list[str], capsys) -> list[str]:
    assert main([*argv, "--dry-run"]) == 0
    return shlex.split(capsys.readouterr().out.strip())


def test_the_shipped_configs_are_found_by_name():
    assert set(shipped()) == {"fsdp-qlora", "zero3"}
    assert all(path.is_file() for path in shipped().values())


def test_fsdp_qlora_as_accelerate_reads_it():
    from accelerate.utils import DistributedType

    cluster = read_config(config_file("fsdp-qlora"))
    fsdp = cluster.fsdp_config
    assert cluster.distributed_type == DistributedType.FSDP and cluster.mixed_precision == "no"
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD"
    # peft's FSDP-QLoRA guide: frozen and trainable weights apart, the checkpoint read once, offload on.
    assert fsdp["fsdp_use_orig_params"] is False
    assert fsdp["fsdp_cpu_ram_efficient_loading"] is True and fsdp["fsdp_sync_module_states"] is True
    assert fsdp["fsdp_offload_params"] is True and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_zero3_as_accelerate_reads_it():
    from accelerate.utils import DistributedType

    cluster = read_config(config_file("zero3"))
    ds = cluster.deepspeed_config
    assert cluster.distributed_type == DistributedType.DEEPSPEED
    assert ds["zero_stage"] == 3 and ds["zero3_init_flag"] is True and ds["zero3_save_16bit_model"] is True
    assert ds["gradient_clipping"] == 1.0


@pytest.mark.parametrize("name", ["fsdp-qlora", "zero3"])
@pytest.mark.parametrize("bf16", [True, False])
def test_sharded_qlora_stores_4bit_weights_in_the_compute_dtype(name, bf16, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    sharded = read_config(config_file(name)).distributed_type in SHARDED
    qconfig = bnb_config("nf4", "cuda", sharded)
    assert qconfig.bnb_4bit_compute_dtype == (torch.bfloat16 if bf16 else torch.float16)
    assert qconfig.bnb_4bit_quant_storage == qconfig.bnb_4bit_compute_dtype
    assert qconfig.load_in_4bit and qconfig.bnb_4bit_quant_type == "nf4" and qconfig.bnb_4bit_use_double_quant


def test_a_single_process_keeps_bitsandbytes_default_storage():
    import torch

    assert bnb_config("nf4", "cpu", sharded=False).bnb_4bit_quant_storage == torch.uint8
    assert bnb_config("none", "cpu", sharded=True) is None


def test_the_launch_command_for_a_shipped_name(capsys):
    argv = ["finetune", "--data", "qa.jsonl", "--out", "adapters/v1", "--accelerate-config", "zero3"]
    command = dry_run([*argv, "--num-processes", "8", "--r", "16", "--target-modules", "all-linear"], capsys)
    assert command == [
        *LAUNCHER,
        *("--config_file", str(config_file("zero3").resolve()), "--num_processes", "8"),
        *("-m", "ragtune.cli.main", "finetune", "--data", "qa.jsonl", "--out", "adapters/v1"),
        *("--r", "16", "--target-modules", "all-linear"),
    ]


def test_the_launch_command_for_a_file(tmp_path: Path, capsys):
    mine = tmp_path / "my accelerate.yaml"
    mine.write_text(config_file("zero3").read_text())
    argv = ["finetune", "--data", "qa.jsonl", "--out", "a", "--accelerate-config", str(mine)]
    command = dry_run([*argv, "--launch-args", "--main_process_port 0", "--no-resume"], capsys)
    assert command[: len(LAUNCHER) + 2] == [*LAUNCHER, "--config_file", str(mine.resolve())]
    assert command[len(LAUNCHER) + 2 :] == [
        *("--main_process_port", "0", "-m", "ragtune.cli.main", "finetune"),
        *("--data", "qa.jsonl", "--out", "a", "--no-resume"),
    ]


def test_settings_pass_through_the_launch_unchanged():
    from ragtune.cli.model_commands import FINETUNE

    config = FinetuneConfig(lr=0.01, max_steps=3, init_lora_weights=False, target_modules=["q_proj"], r=4)
    parser = argparse.ArgumentParser()
    FINETUNE.add_to(parser)
    assert FINETUNE.build(parser.parse_args(FINETUNE.argv(config))) == config
    assert FINETUNE.argv(FinetuneConfig()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--accelerate-config", "fsdp-qlor"],
            "'fsdp-qlor': neither a config ragtune ships (fsdp-qlora, zero3) nor a file",
        ),
        (["--num-processes", "2"], "go with --accelerate-config NAME|FILE"),
        (["--accelerate-config", "zero3", "--init-lora-weights", "pissa"], "single process only"),
        (["--accelerate-config", "fsdp-qlora"], "CUDA GPUs with FSDP and torch sees none"),
        (["--accelerate-config", "zero3", "--quantization", "nf4"], "bitsandbytes reads on CUDA GPUs only"),
    ],
)
def test_a_bad_launch_is_one_line(argv, message, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr("ragtune.rag.models.loading.cuda_available", lambda: False)
    assert main(["finetune", "--data", "qa.jsonl", "--out", str(tmp_path / "a"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "a").exists()


def test_a_file_accelerate_cannot_read_is_one_line(tmp_path: Path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("compute_environment: LOCAL_MACHINE\nnot_an_accelerate_key: 1\n")
    assert (
        main(["finetune", "--data", "x", "--out", "a", "--accelerate-config", str(broken), "--dry-run"]) == 2
    )
    err = capsys.readouterr().err
    assert f"{broken}: not an accelerate config accelerate can read" in err and err.count("\n") == 1


def trained(out: Path, tiny_llm_dir: Path) -> dict:
    """The run's record, after checking the adapter loads on its base and changes its output."""
    import torch

    from ragtune.rag.models.loading import load_model
    from ragtune.rag.models.resolve import resolve_model

    tuned = load_model(resolve_model(str(out)))
    base = load_model(resolve_model(str(tiny_llm_dir)))
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(tuned(input_ids=ids).logits, base(input_ids=ids).logits)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("adapter_")) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    return json.loads((out / CONFIG_FILE).read_text())["run"]


def launch(argv: list[str], capfd):
    """Run `ragtune` to completion; what the processes printed."""
    assert main(argv) == 0, capfd.readouterr().err[-3000:]
    return capfd.readouterr()


def test_fsdp_qlora_launched_on_one_cpu_process_trains_through_the_accelerator(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, capfd
):
    out = tmp_path / "adapter"
    argv = ["finetune", "--data", str(qa_file), "--out", str(out), *settings(tiny_llm_dir)]
    launch(
        [*argv, "--quantization", "nf4", "--accelerate-config", "fsdp-qlora", "--launch-args=--cpu"], capfd
    )
    run = trained(out, tiny_llm_dir)
    # "no": accelerate's type for one process, so the Accelerator ran the loop (a plain run says "none").
    assert (run["distributed"], run["processes"], run["quantization"], run["steps"]) == ("no", 1, "nf4", 2)


def test_two_cpu_processes_train_one_adapter_together(
    tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, capfd, monkeypatch
):
    ddp = tmp_path / "ddp.yaml"
    ddp.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
        "num_processes: 2\nmain_process_port: 0\nmixed_precision: 'no'\n"
    )
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # accelerate: the processes run on CPUs, over gloo
    out = tmp_path / "adapter"
    argv = ["finetune", "--data", str(qa_file), "--out", str(out), *settings(tiny_llm_dir, steps=3)]
    printed = launch(
        [*argv, "--save-every", "2", "--grad-accumulation", "2", "--accelerate-config", str(ddp), "--json"],
        capfd,
    )
    run = trained(out, tiny_llm_dir)
    assert (run["distributed"], run["processes"], run["steps"]) == ("multi_cpu", 2, 3)
    assert len(run["losses"]) == 3 and run["final_eval_loss"] < run["first_eval_loss"]
    # The main process reports, the other stays quiet (DeepSpeed, when installed, logs to stdout too).
    assert len([line for line in printed.out.splitlines() if line.startswith("{")]) == 1
    assert not (out / "checkpoint").exists()


def test_zero3_trains_lora_in_one_cpu_process(tiny_llm_dir: Path, qa_file: Path, tmp_path: Path, capfd):
    out = tmp_path / "adapter"
    argv = ["finetune", "--data", str(qa_file), "--out", str(out), *settings(tiny_llm_dir)]
    extra = ["--launch-args", "--main_process_port 0", "--num-processes", "1"]
    launch([*argv, "--quantization", "none", "--accelerate-config", "zero3", *extra], capfd)
    run = trained(out, tiny_llm_dir)
    assert (run["distributed"], run["processes"], run["steps"]) == ("deepspeed", 1, 2)
