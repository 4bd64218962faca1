"""The records an index hands out and the `Store` protocol every index engine implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from verbatim.records import Document, DocumentMeta, Filters
from verbatim.settings import DEFAULT_COLLECTION


class Thresholds(NamedTuple):
    """A generation's calibrated abstention thresholds: the cosine the best passage and the
    best sentence must reach (blended by specificity, `answer.blend`). Stored in the manifest
    as {"calibration": {"passage": ..., "sentence": ...}}."""

    passage: float
    sentence: float


@dataclass
class IngestReport:
    generation: str
    documents: int
    passages: int
    sentences: int
    embedded: int  # passage and sentence texts embedded
    reused: int
    seconds: float  # embedding and indexing
    collection: str = DEFAULT_COLLECTION
    read_seconds: float = 0.0  # reading the files (set by the caller that read them)
    formats: dict[str, int] = field(default_factory=dict)  # files read per format
    documents_embedded: int = 0  # document vectors embedded (`documents.py`), not reused


@dataclass(slots=True)
class PassageRows:
    """Some passages of a store, by row (ascending), with what quoting needs of each."""

    rows: np.ndarray  # passage rows, ascending
    vectors: np.ndarray  # (rows, dim) float32
    doc: Sequence[str]
    heading: Sequence[str]
    role: Sequence[str]
    ids: Sequence[str]
    start: np.ndarray  # the passage's [start, end) in its document's text
    end: np.ndarray
    sent_lo: np.ndarray  # its sentence rows [sent_lo, sent_hi)
    sent_hi: np.ndarray

    def at(self, rows) -> np.ndarray:
        """Positions of passage `rows` (all present) in these arrays."""
        return np.searchsorted(self.rows, rows)

    def doc_of(self, row) -> str:
        """The document of passage `row` (present)."""
        return self.doc[int(np.searchsorted(self.rows, row))]


@dataclass(slots=True)
class Candidates:
    """A question's candidate passages: the nearest by embedding and the best by BM25."""

    passages: PassageRows
    dense: np.ndarray  # each passage's cosine with the question (float32)
    bm25: np.ndarray  # each passage's BM25 for the question's terms
    cover: np.ndarray  # (rows, terms) bool: whether each passage holds each term
    # each passage's document's cosine with the question (its document vector), where the
    # store has document vectors
    document: np.ndarray | None = None


@dataclass(slots=True)
class SentenceRows:
    """The sentences of some passages, by row (ascending)."""

    rows: np.ndarray
    vectors: np.ndarray  # (rows, dim) float32
    has: np.ndarray  # (rows, terms) bool: whether each sentence holds each asked term
    start: np.ndarray  # [start, end) in the document's text
    end: np.ndarray


class Store(Protocol):
    """What answering needs of an index generation, whichever engine holds it: the local files
    (`Index`, the default) or Qdrant (`verbatim.index.qdrant.QdrantStore`). Publishing a
    generation is each store's own (`build_index`; `qdrant.publish_generation`)."""

    store: str  # "local" or "qdrant", as /api/health names it
    collection: str
    generation: str
    manifest: dict
    documents: dict[str, DocumentMeta]

    @property
    def thresholds(self) -> Thresholds | None: ...

    def query_terms(self, text: str) -> tuple[list[str], np.ndarray]:
        """The question's indexed terms and their weights (`Lexical.query`)."""
        ...

    def allow(self, filters: Filters) -> np.ndarray:
        """What `filters` let answer, as a mask `candidates` takes; all False: nothing."""
        ...

    def candidates(
        self,
        vector: np.ndarray,
        terms: list[str],
        n: int,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> Candidates:
        """The `n` nearest passages by embedding and the `n` best by BM25 (above 0), together,
        of the `allowed` ones, without passage row `exclude`."""
        ...

    def passages(self, rows: np.ndarray) -> PassageRows:
        """Passage `rows` (ascending), with their vectors and what quoting needs."""
        ...

    def sentences(self, passages: PassageRows, terms: list[str]) -> SentenceRows:
        """Every sentence of `passages`, with its vector and which of `terms` it holds."""
        ...

    def text(self, doc_id: str) -> str: ...

    def document(self, doc_id: str) -> Document: ...

    def close(self) -> None: ...
