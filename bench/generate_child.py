"""How bench/generate.py runs each measurement in a fresh subprocess: the script itself with a hidden
--child flag and a JSON spec, whose progress lines are passed on and whose result comes back as a JSON file.
The files the children share (the RAG prompt, the chunk texts) live in the run's working folder."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

from bench.helpers import LOG_LINE, ROOT, load_average, log

SCRIPT = Path(__file__).resolve().with_name("generate.py")
PROMPT_FILE = "prompt.json"  # written by the speed child, read by the quantization children
CHUNKS_FILE = "chunks.json"  # the index's chunk texts, training data for section 3


def run_child(spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run bench/generate.py with `--child SPEC`, pass its progress lines on, and return the JSON it wrote,
    or {"error": ...}. Its other output (library warnings) is only counted, and shown on failure."""
    result_file = work / f"result-{spec['kind']}-{spec.get('variant', 'main')}.json"
    spec = {**spec, "work": str(work), "result_file": str(result_file)}
    command = [sys.executable, str(SCRIPT), "--child", json.dumps(spec)]
    name = f"{spec['kind']} {spec.get('variant', '')}".strip()
    started = load_average()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    )
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    other: deque[str] = deque(maxlen=20)
    counts = {"lines": 0, "MatMul8bitLt": 0}
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            entry = raw.rstrip("\n")
            match = LOG_LINE.match(entry)
            if match:
                log(f"  ({name}) {match.group(1)}")
                continue
            counts["lines"] += 1
            if entry.startswith("MatMul8bitLt"):
                counts["MatMul8bitLt"] += 1
            elif entry.strip():
                other.append(entry)
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0 or not result_file.is_file():
        reason = f"killed after {timeout:.0f} s" if timed_out.is_set() else f"exit code {code}"
        return {"error": f"{reason}: {other[-1] if other else 'no output'}", "output_tail": list(other)}
    result = json.loads(result_file.read_text())
    result["child_output_lines"] = counts
    result["load_average"] = {"start": started, "end": load_average()}
    return result
