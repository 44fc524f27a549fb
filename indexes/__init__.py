"""Indexes over chunks: BM25, TF-IDF and dense, behind the interface in `indexes.base`."""
