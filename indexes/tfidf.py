"""TF-IDF with scikit-learn's TfidfTransformer; rows and queries are L2-normalised, so scores are cosines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ragtune.indexes.base import Ranking, damaged, load_array, read_params, top_k
from ragtune.indexes.terms import SparseTermIndex, TermCounts
from ragtune.indexes.tokenize import TokenizerConfig


@dataclass(frozen=True)
class TfidfConfig:
    sublinear_tf: bool = field(default=True, metadata={"help": "Use 1 + ln(tf) instead of raw counts."})
    smooth_idf: bool = field(default=True, metadata={"help": "Add one to document frequencies."})


class TfidfIndex(SparseTermIndex):
    kind = "tfidf"

    def __init__(
        self,
        counts: TermCounts,
        config: TfidfConfig | None = None,
        tokenizer: TokenizerConfig | None = None,
        idf: np.ndarray | None = None,
        weights: sp.csc_matrix | None = None,
    ):
        super().__init__(counts, tokenizer)
        self.config = config or TfidfConfig()
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

    def updated(self, keep: np.ndarray, added_texts: Sequence[str]) -> TfidfIndex:
        return TfidfIndex(self.updated_counts(keep, added_texts), self.config, self.tokenizer_config)

    def search(self, query: str, k: int) -> Ranking:
        cols, times = self.query_columns(query)
        if cols.size == 0:
            return Ranking.empty()
        query_row = sp.csr_matrix((times, cols, [0, cols.size]), shape=(1, len(self.counts.terms)))
        query_vector = self.transformer.transform(query_row)
        return top_k(*self.column_scores(query_vector.indices, query_vector.data), k)

    def save(self, directory: Path) -> None:
        self.save_arrays(directory, tfidf=asdict(self.config))
        np.save(directory / "idf.npy", self.idf, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> TfidfIndex:
        params = read_params(directory, cls.kind)
        counts, weights = cls.load_arrays(directory)
        idf = load_array(directory / "idf.npy", 1)
        if idf.shape != (len(counts.terms),) or not np.all(np.isfinite(idf)):
            raise damaged(directory / "idf.npy", f"{idf.shape[0]} values for {len(counts.terms)} terms")
        return cls(
            counts, TfidfConfig(**params["tfidf"]), TokenizerConfig(**params["tokenizer"]), idf, weights
        )
