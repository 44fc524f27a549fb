"""The commands over models: finetune an adapter, merge it into its base, compare models."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path

from ragtune.cli.index_commands import index_folder
from ragtune.cli.options import ConfigOptions
from ragtune.core.errors import RagtuneError
from ragtune.finetune.compare import CompareConfig
from ragtune.finetune.config import FinetuneConfig
from ragtune.finetune.launch import LaunchConfig

FINETUNE = ConfigOptions(FinetuneConfig)
LAUNCH = ConfigOptions(LaunchConfig)
COMPARE = ConfigOptions(CompareConfig)


def finetune(args: argparse.Namespace) -> int:
    from ragtune.finetune.distributed import is_main_process
    from ragtune.finetune.train import finetune as train

    config = FINETUNE.build(args)
    launch = LAUNCH.build(args)
    if args.from_store and not (index_folder(args) / "store.sqlite").exists():
        raise RagtuneError(f"no index at {args.index}: run `ragtune ingest DIR` first (or pass --index)")
    data, index = args.data, args.index if args.from_store else None
    if config.raft:
        config, data = _raft_data(config, args)
        index = None
    if launch.accelerate_config:
        return _launch(launch, config, args, data, index)
    result = train(
        config,
        args.out,
        data=data,
        index=index,
        skip_bad_lines=args.skip_bad_lines,
        resume=not args.no_resume,
        progress=not args.quiet,
    )
    if not is_main_process():  # one of the processes of an accelerate launch: the main one reports
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    first, final = result.first_eval_loss, result.final_eval_loss
    print(f"adapter written to {result.adapter}")
    print(
        f"  {result.steps} steps on {result.train_examples} examples ({result.quantization}, {result.device}, "
        f"{result.optimizer}), {result.seconds:.1f} s, {result.seconds_per_step:.2f} s/step, "
        f"peak memory {result.peak_memory_mb:.0f} MB"
    )
    if first is not None and final is not None:
        print(f"  eval loss {first:.3f} -> {final:.3f} on {result.eval_examples} held-out examples")
    if result.resumed_from:
        print(f"  resumed from the checkpoint at step {result.resumed_from}")
    _config, run = FinetuneConfig.load(Path(result.adapter))
    for problem in run.get("data", {}).get("problems", []):
        print(f"  skipped {problem}")
    return 0


def _launch(launch: LaunchConfig, config: FinetuneConfig, args: argparse.Namespace, data, index) -> int:
    """Start `ragtune finetune` with the same settings in each process of `accelerate launch`. RAFT
    examples are written once, here, and each process trains on the file (so --raft is not passed on)."""
    from ragtune.finetune.launch import launch_command, run_launch

    source = ["--data", str(data)] if data is not None else ["--from-store", "--index", str(index)]
    switches = {
        "--skip-bad-lines": args.skip_bad_lines,
        "--no-resume": args.no_resume,
        "--quiet": args.quiet,
        "--json": args.json,
    }
    flags = [flag for flag, on in switches.items() if on]
    settings = FINETUNE.argv(dataclasses.replace(config, raft=False))
    command = launch_command(launch, config, [*source, "--out", str(args.out), *flags, *settings])
    if launch.dry_run:
        print(shlex.join(command))
        return 0
    if not args.quiet:
        print(f"launching: {shlex.join(command)}", file=sys.stderr, flush=True)
    status = run_launch(command)
    if status != 0:
        raise RagtuneError(f"accelerate launch exited with status {status} (its processes' errors are above)")
    return 0


def _raft_data(config: FinetuneConfig, args: argparse.Namespace) -> tuple[FinetuneConfig, str]:
    """Write OUT/raft.jsonl from the index; without --max-length, make room for its longest example
    (the default 256 tokens would cut every target off a RAFT prompt of ~700)."""
    from ragtune.finetune.raft import write_raft

    if not args.from_store:
        raise RagtuneError("--raft builds its examples from an index: use it with --from-store (and --index)")
    built = write_raft(index_folder(args), config, args.out, seed=config.seed)
    if "max_length" not in FINETUNE.given(args):
        config = dataclasses.replace(config, max_length=max(config.max_length, built.longest_tokens))
    if not args.quiet:
        print(
            f"RAFT: {built.examples} examples from {built.chunks} chunks ({built.no_gold} without their gold "
            f"chunk), longest {built.longest_tokens} tokens, written to {built.path} in {built.seconds:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return config, built.path


def merge(args: argparse.Namespace) -> int:
    from ragtune.finetune.merge import merge as fold

    result = fold(args.adapter, args.out)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"merged {result.adapter} into {result.base}: {result.out} ({result.size_mb:.0f} MB, {result.seconds:.1f} s)"
        )
    return 0


def compare(args: argparse.Namespace) -> int:
    from ragtune.finetune.compare import compare as measure
    from ragtune.finetune.compare import default_heldout_text, table

    config = COMPARE.build(args)
    report_file = Path(args.report).expanduser()
    if not report_file.parent.is_dir():  # found out now, not after minutes of measuring
        raise RagtuneError(f"cannot write --report {args.report}: {report_file.parent} is not a folder")
    if args.text:
        try:
            text = Path(args.text).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RagtuneError(f"cannot read --text {args.text}: {exc}") from exc
    else:
        text = default_heldout_text()
    specs = [args.base if m == "base" else m for m in args.models]
    with tempfile.TemporaryDirectory(prefix="ragtune-compare-") as workdir:
        results = measure(
            specs,
            config,
            text,
            Path(workdir),
            lambda spec: print(f"measuring {spec} ...", file=sys.stderr, flush=True),
        )
    report = {
        "config": dataclasses.asdict(config),
        "prompt_tokens_note": "chat prompt, greedy",
        "models": [r.to_dict() for r in results],
    }
    try:
        report_file.write_text(json.dumps(report, indent=2))
    except OSError as exc:
        raise RagtuneError(f"cannot write --report {args.report}: {exc.strerror or exc}") from exc
    if args.json:
        print(json.dumps(report))
    else:
        print(table(results, config.runs))
        print(f"\n(report written to {args.report})", file=sys.stderr)
    return 0
