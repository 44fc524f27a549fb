"""`ragtune finetune --accelerate-config NAME|FILE`: one training run on several processes (GPUs),
started by `accelerate launch`, each process running `ragtune finetune` with the same settings.

Two configs ship in finetune/accelerate_configs/: `fsdp-qlora` (FSDP + QLoRA) and `zero3` (DeepSpeed
ZeRO-3 with LoRA or QLoRA); any other accelerate config is given by its path. The config is read with
accelerate's own loader and checked here, so a bad name, a broken file or a missing GPU is one line
before any process starts. What each process does differently lives in distributed.py.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.core.errors import InputError
from ragtune.finetune.config import FinetuneConfig
from ragtune.finetune.distributed import SHARDED, check_supported

CONFIGS = Path(__file__).parent / "accelerate_configs"
ENTRY = "ragtune.cli.main"  # what each launched process runs: `python -m ragtune.cli.main finetune ...`


def shipped() -> dict[str, Path]:
    """The configs that ship with ragtune, by name (the file name without .yaml)."""
    return {path.stem: path for path in sorted(CONFIGS.glob("*.yaml"))}


@dataclass(frozen=True)
class LaunchConfig:
    """How `ragtune finetune` starts itself on several processes; none of it changes what is trained."""

    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "Train on several GPUs through `accelerate launch`: fsdp-qlora (FSDP + QLoRA), zero3 "
            "(DeepSpeed ZeRO-3, LoRA or QLoRA), or the path of an accelerate config file."
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={"help": "With --accelerate-config: processes (GPUs) to start, instead of the config's."},
    )
    launch_args: str = field(
        default="",
        metadata={
            "help": "With --accelerate-config: more `accelerate launch` options as one string, e.g. "
            "--launch-args='--main_process_port 0', or --launch-args=--cpu to try a launch without GPUs "
            "(accelerate then runs one plain process and ignores FSDP/DeepSpeed settings)."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "With --accelerate-config: print the launch command instead of running it."},
    )

    def __post_init__(self) -> None:
        if self.num_processes is not None and (
            not isinstance(self.num_processes, int) or self.num_processes < 1
        ):
            raise InputError(f"num_processes={self.num_processes!r}: must be a whole number >= 1")
        try:
            shlex.split(self.launch_args)
        except ValueError as exc:
            raise InputError(f"launch_args={self.launch_args!r}: {exc}") from exc
        if not self.accelerate_config and (
            self.num_processes is not None or self.launch_args or self.dry_run
        ):
            raise InputError(
                "--num-processes, --launch-args and --dry-run go with --accelerate-config NAME|FILE"
            )

    @property
    def on_cpu(self) -> bool:
        return "--cpu" in shlex.split(self.launch_args)


def config_file(name_or_path: str) -> Path:
    """A shipped config's file, or the file at `name_or_path`."""
    configs = shipped()
    if name_or_path in configs:
        return configs[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise InputError(
        f"--accelerate-config {name_or_path!r}: neither a config ragtune ships ({', '.join(configs)}) nor a "
        "file; pass one of those names or the path of an accelerate config (`accelerate config "
        "--config_file FILE` writes one)"
    )


def read_config(path: Path) -> Any:
    """The config as `accelerate launch` will read it, by accelerate's own loader."""
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        return load_config_from_file(str(path))
    except Exception as exc:  # YAML or JSON syntax, unknown keys, bad values: accelerate raises all kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not an accelerate config accelerate can read ({first})") from exc


def check_launchable(cluster: Any, launch: LaunchConfig, config: FinetuneConfig) -> None:
    """Refuse now what every launched process would fail on, or do wrong."""
    from accelerate.utils import DistributedType

    from ragtune.rag.models.loading import cuda_available

    name, kind = launch.accelerate_config, cluster.distributed_type
    # `accelerate launch --cpu` runs one plain process, without the FSDP or DeepSpeed settings.
    check_supported(config, kind in SHARDED and not launch.on_cpu, cuda_available())
    if launch.on_cpu:
        return
    if kind == DistributedType.DEEPSPEED and importlib.util.find_spec("deepspeed") is None:
        raise InputError(f"--accelerate-config {name} runs DeepSpeed: pip install 'ragtune[multigpu]'")
    if kind == DistributedType.FSDP and not cuda_available():
        raise InputError(
            f"--accelerate-config {name} shards the model over CUDA GPUs with FSDP and torch sees none: run "
            "it on a GPU machine, or add --launch-args=--cpu to try the launch in one CPU process"
        )
    if kind == DistributedType.MULTI_GPU and not cuda_available() and not cpu_processes():
        # accelerate would start the processes, and each would train alone and write the same files.
        raise InputError(
            f"--accelerate-config {name} starts one process per CUDA GPU and torch sees none: run it on a "
            "GPU machine, or set ACCELERATE_USE_CPU=true for processes that train together on CPUs"
        )


def cpu_processes() -> bool:
    """ACCELERATE_USE_CPU=true: accelerate's processes train together on CPUs (DDP over gloo)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def launch_command(launch: LaunchConfig, config: FinetuneConfig, finetune_args: list[str]) -> list[str]:
    """`accelerate launch` with the config file, running `ragtune finetune finetune_args` in each process."""
    path = config_file(launch.accelerate_config or "")
    check_launchable(read_config(path), launch, config)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path.resolve())]
    if launch.num_processes is not None:
        command += ["--num_processes", str(launch.num_processes)]
    return [*command, *shlex.split(launch.launch_args), "-m", ENTRY, "finetune", *finetune_args]


def run_launch(command: list[str]) -> int:
    """Run the launch; each process prints its own errors, the main one the summary."""
    return subprocess.run(command, check=False).returncode
