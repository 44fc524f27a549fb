"""TF-IDF with scikit-learn's TfidfTransformer; rows and queries are L2-normalised, so scores are cosines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from indexes.base import Ranking, read_params, top_k, write_params
from indexes.terms import TermCounts
from indexes.tokenize import Tokenizer, TokenizerConfig


@dataclass(frozen=True)
class TfidfConfig:
    sublinear_tf: bool = field(default=True, metadata={"help": "Use 1 + ln(tf) instead of raw counts."})
    smooth_idf: bool = field(default=True, metadata={"help": "Add one to document frequencies."})


class TfidfIndex:
    kind = "tfidf"

    def __init__(
        self,
        counts: TermCounts,
        config: TfidfConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        idf: np.ndarray | None = None,
        weights: sp.csc_matrix | None = None,
    ):
        self.config = config or TfidfConfig()
        self.tokenizer_config = tokenizer or TokenizerConfig()
        self.tokenize = Tokenizer(self.tokenizer_config)
        self.counts = counts
        # Imported here: scikit-learn takes a second to import and only TF-IDF needs it.
        from sklearn.feature_extraction.text import TfidfTransformer

        self.transformer = TfidfTransformer(
            norm="l2", sublinear_tf=self.config.sublinear_tf, smooth_idf=self.config.smooth_idf
        )
        if idf is None:
            if len(counts):
                weights = self.transformer.fit_transform(counts.counts).tocsc()
                idf = self.transformer.idf_
            else:
                idf, weights = np.zeros(0), sp.csc_matrix((0, 0))
        else:
            self.transformer.idf_ = idf
        self.idf = idf
        self.weights = weights

    @classmethod
    def empty(cls, config: TfidfConfig | None = None, tokenizer: TokenizerConfig | None = None) -> TfidfIndex:
        return cls(TermCounts.empty(), config, tokenizer)

    def __len__(self) -> int:
        return len(self.counts)

    def updated(self, keep: np.ndarray, added_texts: Sequence[str]) -> TfidfIndex:
        return TfidfIndex(
            self.counts.updated(keep, added_texts, self.tokenize), self.config, self.tokenizer_config
        )

    def search(self, query: str, k: int) -> Ranking:
        cols, times = self.counts.query_counts(self.tokenize(query))
        if cols.size == 0 or len(self) == 0:
            return Ranking.empty()
        query_row = sp.csr_matrix((times, cols, [0, cols.size]), shape=(1, len(self.counts.terms)))
        query_vector = self.transformer.transform(query_row)
        columns = self.weights[:, query_vector.indices]
        scores = columns @ query_vector.data
        return top_k(scores, np.unique(columns.indices), k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.counts.save(directory)
        np.save(directory / "idf.npy", self.idf, allow_pickle=False)
        sp.save_npz(directory / "weights.npz", self.weights, compressed=False)
        write_params(directory, self.kind, tfidf=asdict(self.config), tokenizer=asdict(self.tokenizer_config))

    @classmethod
    def load(cls, directory: Path) -> TfidfIndex:
        params = read_params(directory, cls.kind)
        return cls(
            TermCounts.load(directory),
            TfidfConfig(**params["tfidf"]),
            TokenizerConfig(**params["tokenizer"]),
            idf=np.load(directory / "idf.npy", allow_pickle=False),
            weights=sp.load_npz(directory / "weights.npz").tocsc(),
        )
