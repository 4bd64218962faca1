"""BM25 over passages (bm25s), with English stemming and stop words."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


class Lexical:
    """BM25 scores of every passage for a query; saved as plain `.npy`/JSON files."""

    def __init__(self, retriever) -> None:
        self.retriever = retriever
        self._stem = _stemmer()

    @classmethod
    def build(cls, texts: list[str]) -> Lexical:
        import bm25s

        retriever = bm25s.BM25()
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
        retriever.index(tokens, show_progress=False)
        return cls(retriever)

    @classmethod
    def load(cls, path: Path) -> Lexical:
        import bm25s

        return cls(bm25s.BM25.load(str(path), allow_pickle=False, show_progress=False))

    def save(self, path: Path) -> None:
        self.retriever.save(str(path), allow_pickle=False, show_progress=False)

    def terms(self, text: str) -> list[str]:
        """The query's indexed terms (stemmed, stop words dropped, unknown words dropped)."""
        import bm25s

        tokens = bm25s.tokenize(
            [text], stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False
        )[0]
        vocab = self.retriever.vocab_dict
        return [t for t in tokens if t in vocab]

    def scores(self, text: str) -> np.ndarray:
        """BM25 score of every passage, by row (zeros when no query term is indexed)."""
        terms = self.terms(text)
        n = self.retriever.scores["num_docs"]
        if not terms:
            return np.zeros(n, dtype=np.float32)
        return self.retriever.get_scores(terms)
