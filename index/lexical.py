"""BM25 over passages (bm25s), with English stemming and stop words.

Besides BM25 scores it answers "which of these texts contain which of these terms" and each
term's IDF, so callers can measure how much of a question's information a passage or a single
sentence covers. For that it keeps the index's matrix transposed as well: each text's term ids
(`terms.npy`, `terms-ptr.npy`), so the answer costs the length of the texts asked about, not of
the terms' postings.
"""

from __future__ import annotations

import functools
import json
import math
import queue
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.sparse._sparsetools import csc_matvec  # y += A @ x, A one column

from verbatim.arrays import spans

EMPTY = "empty.json"  # marks an index of texts without a single indexable term
SPLIT = re.compile(r"(?u)\b\w\w+\b").findall  # bm25s.tokenize's own pattern
TERMS, TERMS_PTR = "terms.npy", "terms-ptr.npy"  # text i's term ids: terms[ptr[i]:ptr[i + 1]]
# Above this many texts `best` ranks only the texts at or above a floor the top must reach:
# ranking a million scores (argpartition) costs 4.5 ms, finding those above the floor 1 ms.
FLOOR_ABOVE = 50_000


def _by_text(indptr: np.ndarray, indices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The term-by-text matrix (postings: `indptr` by term, `indices` = text rows) transposed:
    each text's term ids, ascending, and where each text's run starts."""
    term = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    terms = term[np.argsort(indices, kind="stable")]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=size))])
    return terms, ptr.astype(np.int64)


@functools.cache
def _english() -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict("en")


def information(word: str) -> float:
    """How much `word` says in general English: -log10 of its frequency there (wordfreq's
    counts), about 1.3 for "the", 6.3 for "normans" and at most 9, for a word it never saw."""
    return -math.log10(max(_english().get(word, 0.0), 1e-9))


def stemmer():
    import Stemmer

    return Stemmer.Stemmer("english").stemWords


class Lexical:
    """A bm25s index over a list of texts; saved as plain `.npy`/JSON files."""

    def __init__(self, retriever, size: int, by_text=None) -> None:
        self.retriever = retriever  # None when no text has a single indexable term
        self.size = size
        self._stem = stemmer()
        from bm25s.stopwords import STOPWORDS_EN

        self._stopwords = frozenset(STOPWORDS_EN)
        empty = {"indptr": np.zeros(1, dtype=np.int64), "indices": np.zeros(0, dtype=np.int32)}
        scores = retriever.scores if retriever else empty
        indptr = np.asarray(scores["indptr"], dtype=np.int64)
        if retriever:  # plain views of bm25s's memory maps: slicing a np.memmap costs ~5 µs
            for key in ("data", "indices", "indptr"):
                retriever.scores[key] = np.asarray(retriever.scores[key])
        indices = np.asarray(scores["indices"])
        terms_ptr = by_text or _by_text(indptr, indices, size)
        self._text_terms: np.ndarray = terms_ptr[0]
        self._text_ptr: np.ndarray = terms_ptr[1]
        self._indptr = indptr
        df = np.diff(indptr).astype(np.float64)
        self._idf = np.log1p((self.size - df + 0.5) / (df + 0.5))
        self._vocab = retriever.vocab_dict if retriever else {}
        self._tables: queue.SimpleQueue = queue.SimpleQueue()  # idle lookup tables of `contains`

    @classmethod
    def build(cls, texts: Iterable[str]) -> Lexical:
        """Index `texts`, read once: an ingest passes a generator, so that its millions of
        sentences are never all held as strings beside their token lists."""
        import bm25s

        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), show_progress=False)
        size = len(tokens.ids)
        if not tokens.vocab:
            return cls(None, size)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        del tokens  # a list of term ids per text, no longer needed once indexed
        return cls(retriever, size)

    @classmethod
    def load(cls, path: Path) -> Lexical:
        import bm25s

        empty = path / EMPTY
        if empty.exists():
            return cls(None, int(json.loads(empty.read_text())["size"]))
        retriever = bm25s.BM25.load(str(path), allow_pickle=False, show_progress=False, mmap=True)
        by_text = None  # indexes written before the transposed matrix get it computed here
        if (path / TERMS).exists():
            by_text = tuple(
                np.asarray(np.load(path / name, mmap_mode="r", allow_pickle=False))
                for name in (TERMS, TERMS_PTR)
            )
        return cls(retriever, int(retriever.scores["num_docs"]), by_text)

    def save(self, path: Path) -> None:
        if self.retriever is None:
            path.mkdir(parents=True, exist_ok=True)
            (path / EMPTY).write_text(json.dumps({"size": self.size}))
        else:
            self.retriever.save(str(path), allow_pickle=False, show_progress=False)
            np.save(path / TERMS, self._text_terms, allow_pickle=False)
            np.save(path / TERMS_PTR, self._text_ptr, allow_pickle=False)

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

    def query(self, text: str) -> tuple[list[str], np.ndarray]:
        """The distinct indexed terms of `text`, in order of first use, and how much each says,
        as shares summing to 1.

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

    def contains(self, terms: list[str], rows: np.ndarray) -> np.ndarray:
        """Boolean matrix (len(rows), len(terms)): whether each text holds each (distinct) term.

        Reads the texts' own term ids (the transposed matrix) in one vectorised pass, each id
        looked up in a table from term id to column (-1: not asked). Tables are kept between
        calls, reset after each, one per call running at the same time.
        """
        out = np.zeros((len(rows), len(terms)), dtype=bool)
        wanted = np.array([self._vocab.get(t, -1) for t in terms], dtype=np.int64)
        known = np.flatnonzero(wanted >= 0)
        if not len(rows) or not len(known):
            return out
        rows = np.asarray(rows, dtype=np.int64)
        lo, hi = self._text_ptr[rows], self._text_ptr[rows + 1]
        ids = self._text_terms[spans(lo, hi)]
        try:
            column = self._tables.get_nowait()
        except queue.Empty:  # int32: a question may have more terms than int16 counts
            column = np.full(len(self._idf), -1, dtype=np.int32)
        asked = wanted[known]  # the term ids of the columns in `known`
        try:
            column[asked] = known
            at = column[ids]
        finally:
            column[asked] = -1
            self._tables.put(column)
        hit = np.flatnonzero(at >= 0)
        owner = np.searchsorted(np.cumsum(hi - lo), hit, side="right")  # the text of each id
        out[owner, at[hit]] = True
        return out

    def vocabulary(self) -> tuple[list[str], np.ndarray]:
        """Every indexed term in id order, and each one's IDF: what `query` needs, for a store
        that holds the index elsewhere (Qdrant)."""
        terms = [""] * len(self._vocab)
        for term, tid in self._vocab.items():
            terms[tid] = term
        return terms, self._idf

    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """bm25s's own term weights by text: text i holds term ids `ids[ptr[i]:ptr[i + 1]]`
        (ascending) with BM25 weights `values[...]`, so that a text's BM25 for a query is the
        sum of its weights of the query's terms, exactly as `scores` computes it."""
        if self.retriever is None:
            return self._text_ptr, self._text_terms, np.zeros(0, dtype=np.float32)
        data = self.retriever.scores
        indptr = np.asarray(data["indptr"], dtype=np.int64)
        term = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
        order = np.lexsort((term, np.asarray(data["indices"])))
        return self._text_ptr, term[order], np.asarray(data["data"])[order]

    def scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every text for the query `terms` (see `query()`), by row.

        The sum bm25s's `get_scores` computes, term by term in the same order, so the same
        floats; but each term's postings are added by scipy's compiled sparse loop (a one-column
        `csc_matvec` over views of the postings) instead of `np.add.at`: 7.4 ms instead of 17.7
        for the 5.8M postings of a CounselChat question at a million passages (docs/design.md).
        """
        if self.retriever is None:
            return np.zeros(self.size, dtype=np.float32)
        postings = self.retriever.scores
        data, indices = postings["data"], postings["indices"]
        out = np.zeros(self.size, dtype=data.dtype)
        ids = self._ids(terms)
        one = np.ones(1, dtype=data.dtype)
        for t in ids:
            lo, hi = self._indptr[t], self._indptr[t + 1]
            column = np.array([0, hi - lo], dtype=indices.dtype)
            csc_matvec(self.size, 1, column, indices[lo:hi], data[lo:hi], one, out)
        if self.retriever.nonoccurrence_array is not None:  # BM25L and BM25+, not ours
            out += self.retriever.nonoccurrence_array[ids].sum()
        return out

    def _ids(self, terms: list[str]) -> list[int]:
        """The term ids of `terms` the index knows, in their order."""
        return [self._vocab[t] for t in terms if t in self._vocab]

    def best(
        self, terms: list[str], n: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every text's BM25 for `terms` (0 for texts not `allowed`, a boolean mask by row), and
        the rows of the `n` best of them that score above 0."""
        scores = self.scores(terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        if len(scores) > FLOOR_ABOVE:
            rows = np.flatnonzero(scores >= self._floor(scores, terms, n))
        else:
            rows = np.arange(len(scores))
        if n < len(rows):
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        return rows[scores[rows] > 0], scores

    def _floor(self, scores: np.ndarray, terms: list[str], n: int) -> float:
        """A score the `n`-th best text reaches: the `n`-th best among the texts holding the
        question's rarest term that `n` texts hold (0 if none does)."""
        indptr = self._indptr
        held = [(indptr[t + 1] - indptr[t], t) for t in self._ids(terms)]
        held = [(df, t) for df, t in held if df >= n]
        if not held:
            return 0.0
        _, term = min(held)
        texts = self.retriever.scores["indices"][indptr[term] : indptr[term + 1]]
        return float(np.partition(scores[texts], len(texts) - n)[len(texts) - n])
