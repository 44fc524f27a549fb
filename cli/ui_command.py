"""`ragtune ui`: run the packaged Streamlit app on one index and print where to open it."""

from __future__ import annotations

import argparse
import importlib.util
import math
import signal
import socket
import subprocess
import sys

from ragtune.cli.options import ConfigOptions
from ragtune.core.errors import InputError, RagtuneError
from ragtune.ui.settings import UISettings

UI = ConfigOptions(UISettings, skip=("index",))  # --index is the common option
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}, this machine only; 0.0.0.0 for every interface)",
    )
    UI.add_to(parser.add_argument_group("what the page offers"))


def streamlit_command(settings: UISettings, host: str, port: int) -> list[str]:
    """The `streamlit run` command line: our app, no usage statistics, no tracebacks shown in the page."""
    app = importlib.util.find_spec("ragtune.ui.streamlit_app")
    assert app is not None and app.origin is not None  # part of this package
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        app.origin,
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",
        str(max(1, math.ceil(settings.max_upload_mb))),
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--",
        settings.to_json(),
    ]


def _check_port(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"--port {port}: use a port between 1 and 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port"
            ) from None


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise RagtuneError(
            "the UI needs Streamlit: pip install 'ragtune[ui]' (the README's set-up command installs it)"
        )
    settings = UI.build(args, UISettings(index=args.index))
    _check_port(args.host, args.port)
    print(
        f"ragtune UI for the index {settings.index}: http://{args.host}:{args.port}  (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    return _run_forwarding_signals(streamlit_command(settings, args.host, args.port))


def _run_forwarding_signals(command: list[str]) -> int:
    """Run Streamlit as a child and pass SIGTERM / SIGHUP on to it: without this, `kill` on `ragtune ui`
    (or a service manager stopping it) would leave the server running, orphaned. Ctrl-C already reaches
    both, as they share the terminal's process group."""
    server = subprocess.Popen(command)
    forwarded = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s]
    previous = {s: signal.signal(s, lambda number, _frame: server.send_signal(number)) for s in forwarded}
    try:
        while True:
            try:
                return server.wait()
            except KeyboardInterrupt:  # the child got the same Ctrl-C: wait for it to finish
                continue
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
