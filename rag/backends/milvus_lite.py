"""A local Milvus gRPC server for tests, benchmarks and trying the Milvus backend on one machine:
`milvus-lite server` on a free port, stopped by its PID.

With RAGTUNE_MILVUS_URI set, that server (a Milvus cluster, say) is used instead and nothing is started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtune.core.errors import RagtuneError

URI_ENV = "RAGTUNE_MILVUS_URI"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def milvus_server(data_dir: Path, timeout: float = 90.0) -> Iterator[str]:
    """The URI of a running Milvus server: the one RAGTUNE_MILVUS_URI names, or a milvus-lite server
    started here and stopped (SIGTERM, then SIGKILL) when the block ends."""
    if os.environ.get(URI_ENV):
        yield os.environ[URI_ENV]
        return
    command = Path(sys.executable).with_name("milvus-lite")
    if not command.exists():
        raise RagtuneError(f"{command} is missing: pip install 'ragtune[milvus]'")
    port = free_port()
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [
            str(command),
            "server",
            "--data-dir",
            str(data_dir / "data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(port, server, timeout, data_dir / "server.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_for(port: int, server: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RagtuneError(
                f"milvus-lite server exited with {server.returncode}: {log.read_text()[-2000:]}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RagtuneError(f"milvus-lite server did not listen on port {port} within {timeout:.0f} s")
