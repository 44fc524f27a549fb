"""`ragtune eval`: a thin layer over `ragtune.eval.run.run_suite` (and `compare_runs` for --compare)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragtune.cli.options import ConfigOptions
from ragtune.core.errors import InputError
from ragtune.eval.run import EvalConfig
from ragtune.eval.setups import DEFAULT_SETUPS, setups_help

# Every EvalConfig field is an option (--model, -k, --seed, --retrain, --quick ...), declared once there.
EVAL = ConfigOptions(EvalConfig, flags={"k": ("-k",)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", help="suite folder (docs/v1, optional docs/v2, questions.jsonl)")
    parser.add_argument("--out", help="folder for answers.jsonl, results.json, report.md and plots/")
    parser.add_argument(
        "--setups",
        help=f"comma-separated setups to run (default: {','.join(DEFAULT_SETUPS)}); all of them: {setups_help()}",
    )
    parser.add_argument("--resume", action="store_true", help="keep the answers already in --out")
    parser.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="per-metric differences B - A of two runs"
    )
    EVAL.add_to(parser.add_argument_group("evaluation settings"))


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    if not args.suite or not args.out:
        raise InputError("give a suite folder and --out DIR (or --compare RUN_A RUN_B)")
    from ragtune.eval.run import run_suite

    config = EVAL.build(args)
    results = run_suite(
        args.suite, args.out, setups=args.setups, config=config, resume=args.resume, progress=not args.quiet
    )
    if args.json:
        print(json.dumps(results))
        return 0
    out = Path(args.out)
    print(
        f"results written to {out / 'results.json'}, report to {out / 'report.md'}, plots to {out / 'plots'}"
    )
    for setup, phases in results["setups"].items():
        for phase, metrics in phases.items():
            acc = metrics.get("accuracy", {})
            value = acc.get("value")
            shown = "n/a" if value is None else f"{value:.2f} [{acc['lo']:.2f}, {acc['hi']:.2f}]"
            print(f"  {setup:<28} {phase}  accuracy {shown} (n={acc.get('n', 0)})")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ragtune.eval.compare import compare_runs, format_comparison

    comparison = compare_runs(*args.compare)
    print(json.dumps(comparison) if args.json else format_comparison(comparison))
    return 0
