"""Embedding an ingest's new chunks on a Ray cluster (`ragtune ingest DIR --engine ray`).

Reading, chunking, the ingest plan and the index writing stay where they are (ingestor.py); only the
embedding of document texts moves. `RayEmbedder` is an `Embedder`: its `encode` for documents runs a
Ray Data pipeline, `map_batches` over a pool of actors that each build the embedding model once, and
returns the vectors in input order. Queries (and the empty list) are embedded locally, as without Ray.

Ray is an optional dependency (`pip install 'ragtune[ray]'`), imported only when the engine is used.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.core import errors
from ragtune.core.errors import InputError, RagtuneError
from ragtune.indexes.embedding import Embedder, SentenceTransformerEmbedder

ENGINES = ("local", "ray")
# How long a cluster address may take to accept a TCP connection. Ray itself retries a dead address for
# minutes before it gives up; a mistyped --ray-address should fail in seconds.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class IngestEngineConfig:
    """Where an ingest embeds its new chunks. A per-run choice: not saved with the index."""

    engine: str = field(
        default="local",
        metadata={
            "help": "'local' embeds in this process; 'ray' embeds on a Ray cluster (an actor pool, one "
            "model per actor, a GPU each when the cluster has them). Needs pip install 'ragtune[ray]'.",
            "choices": ENGINES,
        },
    )
    ray_address: str | None = field(
        default=None,
        metadata={
            "help": "The Ray cluster to use: HOST:PORT of its head (`ray start --head` prints it), "
            "ray://HOST:10001, or 'auto' (the cluster this machine has joined). Not set: the Ray this "
            "process already started, else $RAY_ADDRESS, else the cluster `ray start` runs on this "
            "machine, else a local Ray started for this ingest."
        },
    )
    ray_actors: int = field(
        default=2,
        metadata={
            "help": "Embedding actors, each with its own copy of the model: one GPU each when the cluster "
            "has GPUs (then at most one per GPU), else one CPU core each, so about as many as cores."
        },
    )
    ray_batch_size: int = field(
        default=256,
        metadata={
            "help": "Texts per batch handed to an actor: big enough to keep the model busy, small enough "
            "that the actors share the work evenly."
        },
    )

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"engine={self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.ray_actors < 1:
            raise InputError(f"ray_actors={self.ray_actors}: must be >= 1")
        if self.ray_batch_size < 1:
            raise InputError(f"ray_batch_size={self.ray_batch_size}: must be >= 1")
        if self.ray_address is not None and self.ray_address != "auto":
            _host_port(self.ray_address)  # a malformed address fails here, before anything is read
        if self.engine != "ray" and self.ray_address is not None:
            raise InputError(f"ray_address={self.ray_address!r} needs engine='ray' (--engine ray)")


class EmbedActor:
    """One Ray actor of the pool: builds the embedder once, then embeds every batch it is handed."""

    def __init__(self, make_embedder: Callable[[], Embedder]):
        self.embedder = make_embedder()
        if isinstance(self.embedder, SentenceTransformerEmbedder):
            # Loaded now, not on the first batch: the pool hands blocks to an actor once it is built.
            self.embedder.model  # noqa: B018

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(t) for t in batch["text"]])
        # The row numbers travel with the vectors: Ray Data does not keep the input order by default.
        return {"row": batch["row"], "vector": np.ascontiguousarray(vectors, dtype=np.float32)}


def _itself(embedder: Embedder) -> Embedder:
    return embedder


def actor_factory(embedder: Embedder, gpu: bool) -> Callable[[], Embedder]:
    """What each actor calls to get its embedder. A sentence-transformers embedder is rebuilt from its
    config (the model is loaded in the actor, on its GPU when it has one); any other embedder is shipped
    as it is (pickled), so it must be picklable."""
    if isinstance(embedder, SentenceTransformerEmbedder):
        config = dataclasses.replace(embedder.config, device="cuda" if gpu else "cpu")
        return functools.partial(SentenceTransformerEmbedder, config)
    return functools.partial(_itself, embedder)


class RayEmbedder:
    """An `Embedder` that embeds documents on a Ray cluster and queries with `local`.

    Connects to (or starts) Ray when made, so a wrong address fails before any file is read; `close()`
    shuts down a Ray it started itself, never one the caller started."""

    # Texts per `encode` call when a caller follows progress (encode_in_slices): all of them. Every call
    # is a new pipeline that starts its actors, and loads a model in each, anew (~10 s on CPU here).
    slice_size = sys.maxsize

    def __init__(self, local: Embedder, config: IngestEngineConfig):
        self.local = local
        self.name = local.name  # the vectors are the local model's: an index checks this name
        self.config = config
        self._ray = _import_ray()
        self._started = connect(self._ray, config.ray_address)

    def encode(self, texts: Sequence[str], *, query: bool = False, progress: bool = False) -> np.ndarray:
        if query or not texts:
            return self.local.encode(texts, query=query, progress=progress)
        ray = self._ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        # One GPU per actor when the cluster has any; then no more actors than GPUs, or the pool would
        # wait for GPUs that never come free. No more actors than texts either (a one-chunk edit).
        actors = min(self.config.ray_actors, gpus or self.config.ray_actors, len(texts))
        # Blocks of at most 8 batches, at least 4 per actor: every actor gets work, and one that started
        # late (loading its model) or runs slower takes fewer blocks instead of holding up the end.
        blocks = max(4 * actors, math.ceil(len(texts) / (8 * self.config.ray_batch_size)))
        dataset = ray.data.from_items(
            [{"row": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=min(len(texts), blocks)
        )
        vectors = dataset.map_batches(
            EmbedActor,
            fn_constructor_kwargs={"make_embedder": actor_factory(self.local, bool(gpus))},
            # One block at a time per actor: with more in flight, the first actor whose model is loaded
            # takes blocks the others would have embedded in parallel (seen here: one took both of 2 blocks).
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            batch_size=self.config.ray_batch_size,
            batch_format="numpy",
            **({"num_gpus": 1} if gpus else {}),
        )
        rows, parts = [], []
        try:
            with _progress_bars(ray, progress):
                for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
                    rows.append(batch["row"])
                    parts.append(batch["vector"])
        except ray.exceptions.RayError as exc:
            raise _our_error(exc) or exc from exc
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[np.concatenate(rows)] = np.vstack(parts)
        return out

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _our_error(exc: Exception) -> RagtuneError | None:
    """Our own error raised in an actor (a model folder missing on that node, say), as ours again: Ray
    passes it back only as text, in its traceback. None for anything else (a bug shows its traceback)."""
    found = re.findall(r"ragtune\.core\.errors\.(\w+): (.*)", str(exc))
    if not found:
        return None
    kind, message = found[-1]
    error = getattr(errors, kind, RagtuneError)
    return error(message) if isinstance(error, type) and issubclass(error, RagtuneError) else None


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise InputError(
            f"--engine ray needs Ray ({exc.name or exc} is missing): pip install 'ragtune[ray]'"
        ) from exc
    return ray


def connect(ray: Any, address: str | None) -> bool:
    """Make sure this process is connected to Ray; True when it started (and so owns) that Ray.

    A Ray this process already initialised is used as it is: whoever started it chose its cluster."""
    host_port = _host_port(address) if address is not None and address != "auto" else None
    if ray.is_initialized():
        if address is not None:
            warnings.warn(
                f"ragtune: Ray is already initialised in this process; ray_address={address!r} is not used",
                stacklevel=3,
            )
        return False
    if host_port is not None:
        _check_reachable(address, *host_port)
    try:
        # No dashboard: it needs extra packages, and an ingest does not need it. WARNING: Ray's INFO
        # lines (where it started, which cluster) would otherwise interleave with our progress bars.
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError...: the user needs one line
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not address:
            raise InputError(f"cannot start a local Ray: {first_line}") from exc
        # A cluster that answers but refuses us most often uses token authentication (recent Ray).
        raise InputError(
            f"cannot connect to the Ray cluster at {address!r}: {first_line} (if it uses token "
            "authentication, set RAY_AUTH_MODE=token and give this machine its token)"
        ) from exc
    return True


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.strip().removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"ray_address={address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, host: str, port: int) -> None:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise InputError(
            f"no Ray cluster answers at --ray-address {address!r} ({exc.strerror or exc}): start one with "
            "`ray start --head`, or leave --ray-address out to start a local Ray"
        ) from None


class _progress_bars:
    """Ray Data's progress bars on or off for one execution, and its INFO log lines off (the execution
    plan, where its logs are, and every 10 s a progress report when the bars are off); then as before."""

    def __init__(self, ray: Any, on: bool):
        self.context, self.on = ray.data.DataContext.get_current(), on
        self.logger = logging.getLogger("ray.data")

    def __enter__(self) -> None:
        self.before = self.context.enable_progress_bars, self.logger.level
        self.context.enable_progress_bars = self.on
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        self.context.enable_progress_bars, level = self.before
        self.logger.setLevel(level)
