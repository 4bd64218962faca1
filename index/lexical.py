"""BM25 over passages (bm25s), with English stemming and stop words.

Besides BM25 scores it answers "which texts contain this term" (the postings of the index's
sparse matrix) and each term's IDF, so callers can measure how much of a question's information
a passage or a single sentence covers.
"""

from __future__ import annotations

import functools
import json
import math
import re
from pathlib import Path

import numpy as np

EMPTY = "empty.json"  # marks an index of texts without a single indexable term
SPLIT = re.compile(r"(?u)\b\w\w+\b").findall  # bm25s.tokenize's own pattern


@functools.cache
def _english() -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict("en")


def information(word: str) -> float:
    """How much `word` says in general English: -log10 of its frequency there (wordfreq's
    counts), about 1.3 for "the", 6.3 for "normans" and at most 9, for a word it never saw."""
    return -math.log10(max(_english().get(word, 0.0), 1e-9))


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


class Lexical:
    """A bm25s index over a list of texts; saved as plain `.npy`/JSON files."""

    def __init__(self, retriever, size: int) -> None:
        self.retriever = retriever  # None when no text has a single indexable term
        self.size = size
        self._stem = _stemmer()
        from bm25s.stopwords import STOPWORDS_EN

        self._stopwords = frozenset(STOPWORDS_EN)
        scores = retriever.scores if retriever else {"indptr": [0], "indices": []}
        self._indptr = np.asarray(scores["indptr"], dtype=np.int64)
        self._indices = np.asarray(scores["indices"])  # as stored (int32), memory-mapped
        if retriever:  # plain views of bm25s's memory maps: slicing a np.memmap costs ~5 µs
            for key in ("data", "indices", "indptr"):
                retriever.scores[key] = np.asarray(retriever.scores[key])
        df = np.diff(self._indptr).astype(np.float64)
        self._idf = np.log1p((self.size - df + 0.5) / (df + 0.5))
        self._vocab = retriever.vocab_dict if retriever else {}

    @classmethod
    def build(cls, texts: list[str]) -> Lexical:
        import bm25s

        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)
        if not tokens.vocab:
            return cls(None, len(texts))
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        return cls(retriever, len(texts))

    @classmethod
    def load(cls, path: Path) -> Lexical:
        import bm25s

        empty = path / EMPTY
        if empty.exists():
            return cls(None, int(json.loads(empty.read_text())["size"]))
        retriever = bm25s.BM25.load(str(path), allow_pickle=False, show_progress=False, mmap=True)
        return cls(retriever, int(retriever.scores["num_docs"]))

    def save(self, path: Path) -> None:
        if self.retriever is None:
            path.mkdir(parents=True, exist_ok=True)
            (path / EMPTY).write_text(json.dumps({"size": self.size}))
        else:
            self.retriever.save(str(path), allow_pickle=False, show_progress=False)

    def tokenize(self, text: str) -> list[str]:
        """Stemmed terms of `text`, stop words dropped: the analysis `build` gives bm25s, done
        directly, as a question is one short text (bm25s.tokenize sets up progress bars and a
        vocabulary for each call, which costs more than the analysis itself)."""
        return self._stem(self._words(text))

    def _words(self, text: str) -> list[str]:
        return [t for t in SPLIT(text.lower()) if t not in self._stopwords]

    def _written(self, text: str) -> dict[str, str]:
        """Each distinct indexed term of `text`, in order of first use, with its first word."""
        words = self._words(text)
        written: dict[str, str] = {}
        for term, word in zip(self._stem(words), words, strict=True):
            if term in self._vocab:
                written.setdefault(term, word)
        return written

    def terms(self, text: str) -> list[str]:
        """The distinct indexed terms of `text`, in order of first use."""
        return list(self._written(text))

    def query(self, text: str) -> tuple[list[str], np.ndarray]:
        """The terms of `text` (see `terms()`) and how much each says, as shares summing to 1.

        A term's weight is its IDF in these texts times the information of its word (as
        written in `text`) in general English. IDF alone misjudges a small or one-topic corpus:
        it overrates words that happen to be rare here but are common anywhere ("long",
        "bring" among articles on therapy) and underrates the topic's own names ("Normans" in
        an article about them). Both are estimates of how specific a word is; their product
        keeps the words that are specific in both senses.
        """
        written = self._written(text)
        weights = np.array(
            [self.idf(t) * information(w) for t, w in written.items()], dtype=np.float64
        )
        return list(written), weights / weights.sum() if weights.sum() > 0 else weights

    def idf(self, term: str) -> float:
        """Inverse document frequency (BM25's form); 0 for a term the index never saw."""
        tid = self._vocab.get(term)
        return 0.0 if tid is None else float(self._idf[tid])

    def postings(self, term: str) -> np.ndarray:
        """Rows of the texts that contain `term`."""
        tid = self._vocab.get(term)
        if tid is None:
            return np.zeros(0, dtype=np.int64)
        return self._indices[self._indptr[tid] : self._indptr[tid + 1]]

    def contains(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """Boolean matrix (len(rows), len(terms)): whether each text holds each term."""
        out = np.zeros((len(rows), len(terms)), dtype=bool)
        for j, term in enumerate(terms):
            post = self.postings(term)  # sorted row numbers
            if len(post):
                at = np.minimum(np.searchsorted(post, rows), len(post) - 1)
                out[:, j] = post[at] == rows
        return out

    def scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every text for the query `terms` (see `terms()`), by row."""
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        return self.retriever.get_scores(terms)
