"""A generation published by a live update: a full generation (its base) searched beside a small
delta generation holding the documents the update added or changed, with the base's removed
and replaced documents masked out (`Segmented`, a `Store`).

An edited file in a million-passage collection then costs what the file costs: its passages are
embedded and written into the delta, the base's files are neither copied nor hashed again, and
a server already serving the base opens only the delta (`load.load_index` shares the open base).
A merge (`verbatim watch`, in the background) later rebuilds one full generation from both, the
way Lucene merges segments. The question's terms and their IDF are those of the texts served
(the base's unmasked ones and the delta's), as a fresh ingest would have them; until the merge
three things are approximate: the base's BM25 weights keep the base's IDF and the delta's its
own average length, and the abstention thresholds are the base's.
"""

from __future__ import annotations

import functools

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from verbatim.arrays import spans
from verbatim.index.lexical import SPLIT, information, stemmer
from verbatim.index.local import Index
from verbatim.index.records import Candidates, PassageRows, SentenceRows, Thresholds
from verbatim.records import Document, DocumentMeta, Filters

_STOPWORDS = frozenset(STOPWORDS_EN)


class Segmented:
    """A base `Index` with documents masked out, and a delta `Index` searched beside it. Rows
    run on: the delta's passage row r is `offset + r`, its sentence row s `sentence_offset + s`.
    Safe to share between threads, as `Index` is."""

    store = "local"

    def __init__(self, base: Index, delta: Index, manifest: dict, collection: str) -> None:
        self.base, self.delta = base, delta
        self.path = delta.path
        self.generation = delta.generation
        self.collection = collection
        self.manifest = manifest
        masked = set(manifest["delta"]["masked"])
        self.live = np.fromiter((d not in masked for d in base.passage_doc), bool)
        self.offset = len(base.passage_ids)
        self.sentence_offset = len(base.sent_start)
        kept = {k: v for k, v in base.documents.items() if k not in masked}
        self.documents: dict[str, DocumentMeta] = kept | delta.documents
        self._idf = _joint_idf(base, delta, self.live)
        delta.lexical.reweigh(self._idf(delta.lexical.vocabulary()[0]))
        self._stem = stemmer()

    def __enter__(self) -> Segmented:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.delta.close()
        self.base.close()

    @property
    def thresholds(self) -> Thresholds | None:
        """The base's thresholds (calibration runs again at the merge)."""
        return self.base.thresholds

    @functools.cached_property
    def passage_doc(self) -> list[str]:
        """The document of every passage row (masked base rows included)."""
        return self.base.passage_doc + self.delta.passage_doc

    def text(self, doc_id: str) -> str:
        return (self.delta if doc_id in self.delta.documents else self.base).text(doc_id)

    def document(self, doc_id: str) -> Document:
        return (self.delta if doc_id in self.delta.documents else self.base).document(doc_id)

    def allow(self, filters: Filters) -> np.ndarray:
        """A boolean mask over passage rows, base rows then delta rows."""
        base = self.base.catalog.rows(filters) & self.live
        return np.concatenate([base, self.delta.catalog.rows(filters)])

    def query_terms(self, text: str) -> tuple[list[str], np.ndarray]:
        """`Lexical.query` over both vocabularies, each term weighted by its IDF over both."""
        words = [w for w in SPLIT(text.lower()) if w not in _STOPWORDS]
        written: dict[str, str] = {}
        for term, word in zip(self._stem(words), words, strict=True):
            written.setdefault(term, word)
        idf = self._idf(list(written))  # 0: held by no served text
        held = [(t, w, f) for (t, w), f in zip(written.items(), idf, strict=True) if f > 0]
        weights = np.array([f * information(w) for _, w, f in held], dtype=np.float64)
        terms = [t for t, _, _ in held]
        return terms, weights / weights.sum() if weights.sum() > 0 else weights

    def candidates(
        self,
        vector: np.ndarray,
        terms: list[str],
        n: int,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> Candidates:
        """See `Store.candidates`: the best `n` of both segments together."""
        in_base = self.live if allowed is None else allowed[: self.offset]
        in_delta = None if allowed is None else allowed[self.offset :]
        base_rows, base_dense = self.base.search(vector, n, in_base)
        delta_rows, delta_dense = self.delta.search(vector, n, in_delta)
        dense = _best(base_rows, base_dense, delta_rows + self.offset, delta_dense, n)
        base_lex_rows, base_lex = self.base.lexical.best(terms, n, in_base)
        delta_lex_rows, delta_lex = self.delta.lexical.best(terms, n, in_delta)
        lex = _best(
            base_lex_rows, base_lex[base_lex_rows], delta_lex_rows + self.offset,
            delta_lex[delta_lex_rows], n,
        )  # fmt: skip
        found = np.unique(np.concatenate([dense, lex])).astype(np.int64)
        if exclude is not None:
            found = found[found != exclude]
        passages = self.passages(found)
        at_base, at_delta = found[found < self.offset], found[found >= self.offset] - self.offset
        return Candidates(
            passages=passages,
            dense=passages.vectors @ vector,
            bm25=np.concatenate([base_lex[at_base], delta_lex[at_delta]]),
            cover=np.vstack(
                [
                    self.base.lexical.contains(terms, at_base),
                    self.delta.lexical.contains(terms, at_delta),
                ]
            ),
            document=self._document_cosines(at_base, at_delta, vector),
        )

    def _document_cosines(self, at_base, at_delta, vector) -> np.ndarray | None:
        base, delta = self.base.document_vectors, self.delta.document_vectors
        if base is None or delta is None:
            return None
        return np.concatenate([base.cosines(at_base, vector), delta.cosines(at_delta, vector)])

    def passages(self, rows: np.ndarray) -> PassageRows:
        base = self.base.passages(rows[rows < self.offset])
        delta = self.delta.passages(rows[rows >= self.offset] - self.offset)
        return PassageRows(
            rows=rows,
            vectors=np.vstack([base.vectors, delta.vectors]),
            doc=tuple(base.doc) + tuple(delta.doc),
            heading=tuple(base.heading) + tuple(delta.heading),
            role=tuple(base.role) + tuple(delta.role),
            ids=tuple(base.ids) + tuple(delta.ids),
            start=np.concatenate([base.start, delta.start]),
            end=np.concatenate([base.end, delta.end]),
            sent_lo=np.concatenate([base.sent_lo, delta.sent_lo + self.sentence_offset]),
            sent_hi=np.concatenate([base.sent_hi, delta.sent_hi + self.sentence_offset]),
        )

    def sentences(self, passages: PassageRows, terms: list[str]) -> SentenceRows:
        rows = spans(passages.sent_lo, passages.sent_hi)
        base, delta = rows[rows < self.sentence_offset], rows[rows >= self.sentence_offset]
        delta = delta - self.sentence_offset
        parts = [(self.base, base), (self.delta, delta)]
        return SentenceRows(
            rows=rows,
            vectors=np.vstack(
                [np.asarray(index.sentence_vectors[r], dtype=np.float32) for index, r in parts]
            ),
            has=np.vstack([index.sentence_lexical.contains(terms, r) for index, r in parts]),
            start=np.concatenate([index.sent_start[r] for index, r in parts]),
            end=np.concatenate([index.sent_end[r] for index, r in parts]),
        )


def _best(rows_a, scores_a, rows_b, scores_b, n: int) -> np.ndarray:
    """The rows of the `n` best of two scored lists (scores above 0 for BM25 come that way
    already); a tie goes to the lower row, as `Index.search` breaks it."""
    rows = np.concatenate([rows_a, rows_b]).astype(np.int64)
    scores = np.concatenate([scores_a, scores_b]).astype(np.float64)
    order = np.lexsort((rows, -scores))[:n]
    return rows[order]


def _joint_idf(base: Index, delta: Index, live: np.ndarray):
    """A function from terms to BM25's IDF over the texts served: the base's `live` ones and
    the delta's (a term held by no served text gets 0, as one a fresh ingest never saw)."""
    masked = np.flatnonzero(~live)
    uncounted = base.lexical.counts(masked)
    size = base.lexical.size - len(masked) + delta.lexical.size

    def idf(terms: list[str]) -> np.ndarray:
        df = np.array(
            [base.lexical.frequency(t, uncounted) + delta.lexical.frequency(t) for t in terms],
            dtype=np.float64,
        )
        return np.where(df > 0, np.log1p((size - df + 0.5) / (df + 0.5)), 0.0)

    return idf
