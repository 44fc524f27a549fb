"""Retrieval over one generation: a single retriever, or several fused by reciprocal rank fusion."""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.core.errors import InputError
from ragtune.rag.config import RetrievalConfig
from ragtune.rag.store.generations import Generation


@dataclass(frozen=True)
class Retrieved:
    """A chunk chosen for a query: the score of the mode asked for, and each retriever's own evidence."""

    chunk_id: str
    score: float
    scores: dict[str, float]
    ranks: dict[str, int]


def reciprocal_rank_fusion(
    rankings: dict[str, list[str]], weights: dict[str, float], rrf_k: int
) -> list[tuple[str, float]]:
    """Fuse best-first id lists: each id scores sum(weight / (rrf_k + rank)); ties go to the earlier id."""
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = weights.get(name, 0.0)
        for rank, item in enumerate(ids, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (rrf_k + rank)
    return sorted(fused.items(), key=lambda pair: -pair[1])


def validate_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InputError(f"k={k!r}: the number of results must be a whole number >= 1")


def validate_query(query: str, k: int) -> None:
    if not isinstance(query, str) or not query.strip():
        raise InputError('the query is empty: ask something, e.g. ragtune search "what is LoRA?"')
    validate_k(k)


def _ids_of(chunk_ids, rows) -> list[str]:
    """Chunk ids of rows: all at once where the generation can (segments), else one by one (a list)."""
    take = getattr(chunk_ids, "take", None)
    return take(rows) if take is not None else [chunk_ids[row] for row in rows]


def retrievers(config: RetrievalConfig) -> list[str]:
    """The retrievers a search runs: the mode's own, or in hybrid mode each one weighted above 0."""
    return [config.mode] if config.mode != "hybrid" else [n for n, w in config.weights.items() if w > 0]


def candidate_depth(config: RetrievalConfig, k: int) -> int:
    """How many results each retriever gives: k, or in hybrid mode the fusion's depth (at least k)."""
    return k if config.mode != "hybrid" else max(config.depth, k)


def retrieve(generation: Generation, query: str, k: int, config: RetrievalConfig) -> list[Retrieved]:
    validate_query(query, k)
    remote = getattr(generation, "retrieve", None)  # a generation on a server searches there
    if remote is not None:
        return remote(query, k, config)
    if not generation.chunk_ids:
        return []
    kinds, depth = retrievers(config), candidate_depth(config, k)
    ranked: dict[str, list[str]] = {}
    scores: dict[str, list[float]] = {}
    for kind in kinds:
        ranking = generation.index(kind).search(query, depth)
        ranked[kind] = _ids_of(generation.chunk_ids, ranking.rows)
        scores[kind] = ranking.scores.tolist()
    return combine(ranked, scores, config, k)


def combine(
    ranked: dict[str, list[str]], scores: dict[str, list[float]], config: RetrievalConfig, k: int
) -> list[Retrieved]:
    """The k chosen chunks from each retriever's best-first ids and scores: fused by reciprocal rank
    fusion in hybrid mode, else the one retriever's list, each with every retriever's evidence."""
    kinds = list(ranked)
    score_of = {kind: dict(zip(ranked[kind], scores[kind], strict=True)) for kind in kinds}
    if config.mode == "hybrid":
        chosen = reciprocal_rank_fusion(ranked, config.weights, config.rrf_k)[:k]
    else:
        chosen = [(cid, score_of[config.mode][cid]) for cid in ranked[config.mode]]
    rank_of = {kind: {cid: r for r, cid in enumerate(lst, start=1)} for kind, lst in ranked.items()}
    return [
        Retrieved(
            chunk_id=cid,
            score=score,
            scores={kind: score_of[kind][cid] for kind in kinds if cid in score_of[kind]},
            ranks={kind: rank_of[kind][cid] for kind in kinds if cid in rank_of[kind]},
        )
        for cid, score in chosen
    ]
