"""The local index: a generation in the data directory's files, searched in process."""

from __future__ import annotations

import array
import functools
import operator
import threading
from pathlib import Path
from typing import Any

import numpy as np

from verbatim.arrays import spans as sentence_span_rows
from verbatim.errors import IndexCorrupt
from verbatim.index import generations, tables
from verbatim.index.catalog import Catalog
from verbatim.index.documents import DocumentVectors
from verbatim.index.lexical import Lexical
from verbatim.index.records import Candidates, PassageRows, SentenceRows, Thresholds
from verbatim.index.vectors import Vectors, open_vectors
from verbatim.records import Document, DocumentMeta, Filters
from verbatim.settings import DEFAULT_COLLECTION

# A filter allowing at most this many passages of an IVF index is searched exactly, over their
# vectors alone: a few milliseconds, where IVF's lists may hold none of so few.
FILTERED_EXACT_LIMIT = 10_000
FILTERED_MIN_COMPARED = 4_000  # allowed vectors a filtered IVF search compares, about
TEXT_CACHE = 2048  # documents whose text is kept in memory once quoted


# An index built before its nprobe was measured (`build._probes`) scans 1/OLD_NPROBE_SHARE of its
# IVF lists, at least OLD_NPROBE_MIN: the rule it was built and measured with then.
OLD_NPROBE_SHARE = 16
OLD_NPROBE_MIN = 32


def default_nprobe(nlist: int) -> int:
    """How many IVF lists a search scans in an index built before `_probes` measured it: 1/16
    of them, at least 32."""
    return min(nlist, max(OLD_NPROBE_MIN, nlist // OLD_NPROBE_SHARE))


class Index:
    """A loaded, read-only generation of one collection, in local files: the default `Store`.
    Safe to share between threads."""

    store = "local"

    def __init__(self, path: Path, manifest: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.path = path
        self.generation = path.name
        self.collection = collection
        self.manifest = manifest
        self._users, self._users_lock = 1, threading.Lock()  # `share`, `close`
        self._open_search(path)
        self._db = tables.open_db(path / "store.sqlite")
        self._read_passages()
        self.sent_start = np.fromiter(tables.read_sentence_column(self._db, "start"), np.int64)
        self.sent_end = np.fromiter(tables.read_sentence_column(self._db, "end"), np.int64)
        self.sent_passage = np.repeat(
            np.arange(len(self.passage_ids), dtype=np.int32), self.sent_hi - self.sent_lo
        )
        self.documents: dict[str, DocumentMeta] = tables.read_documents(self._db)
        self.catalog = Catalog(self.documents, self.passage_doc)
        self.document_vectors = DocumentVectors.load(path, list(self.documents), self.passage_doc)
        # The texts quoted lately (bounded: a long-running server over a million documents
        # would otherwise end up holding every text it ever quoted).
        self._recent_texts = functools.lru_cache(maxsize=TEXT_CACHE)(self._read_text)
        if self.faiss.ntotal != len(self.passage_ids) or len(self.sentence_vectors) != len(
            self.sent_start
        ):
            raise IndexCorrupt(f"{path}: vector and row counts differ; run `verbatim ingest`")

    def _open_search(self, path: Path) -> None:
        import faiss

        # IVF lists are memory-mapped (a million passages' vectors need not be in RAM); a flat
        # index is small by construction (EXACT_SEARCH_LIMIT) and read whole.
        searcher: Any = faiss.read_index(str(path / "passages.faiss"), faiss.IO_FLAG_MMAP)
        nlist = getattr(searcher, "nlist", None)  # IVF indexes only
        flat = nlist is None
        if nlist is not None:  # as measured at build; indexes built before follow the old rule
            searcher.nprobe = self.manifest.get("ivf", {}).get("nprobe") or default_nprobe(nlist)
        self.faiss = searcher
        self.sentence_vectors = open_vectors(path / "sentences.npy")
        self.passage_vectors = open_vectors(path / "passages.npy")
        # Exact search of one question is one matrix-vector product over the (memory-mapped)
        # passage vectors: three times faster than FAISS's flat search, whose fixed cost per
        # call dominates at this size. FAISS searches IVF indexes.
        self._exact = (
            self.passage_vectors if flat and isinstance(self.passage_vectors, np.ndarray) else None
        )
        self.lexical = Lexical.load(path / "bm25")
        self.sentence_lexical = Lexical.load(path / "bm25-sentences")

    def _read_passages(self) -> None:
        """Row by row into compact columns: a million passages fetched as a list of tuples would
        take gigabytes for a moment. A repeated string (document, heading, role) is kept once."""
        self.passage_ids: list[str] = []
        self.passage_doc: list[str] = []
        self.passage_heading: list[str] = []
        self.passage_role: list[str] = []
        numbers = array.array("q")  # start, end, sent_lo, sent_hi of each passage in turn
        shared: dict[str, str] = {}
        for p in tables.read_passages(self._db):
            self.passage_ids.append(p.id)
            self.passage_doc.append(shared.setdefault(p.doc_id, p.doc_id))
            self.passage_heading.append(shared.setdefault(p.heading, p.heading))
            self.passage_role.append(shared.setdefault(p.role, p.role))
            numbers.extend((p.start, p.end, p.sent_lo, p.sent_hi))
        columns = np.frombuffer(numbers, dtype=np.int64).reshape(-1, 4).T.copy()
        self.passage_start, self.passage_end, self.sent_lo, self.sent_hi = columns

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def share(self) -> bool:
        """Take one more user of this open index (each calls `close` once); False if it is
        closed already. A generation serving several collection engines at once (a base and
        the deltas published on it, `load.load_index`) is opened and verified once."""
        with self._users_lock:
            if self._users == 0:
                return False
            self._users += 1
            return True

    @property
    def closed(self) -> bool:
        return self._users == 0

    def close(self) -> None:
        """Release this user's hold; the files close when the last user is done."""
        with self._users_lock:
            self._users = max(self._users - 1, 0)
            if self._users:
                return
        self._db.close()
        for vectors in (self.passage_vectors, self.sentence_vectors):
            if isinstance(vectors, Vectors):
                vectors.close()
        if self.document_vectors is not None:
            self.document_vectors.close()

    @property
    def thresholds(self) -> Thresholds | None:
        """Calibrated abstention thresholds (passage, sentence), if the index has them."""
        return generations.thresholds(self.manifest)

    def text(self, doc_id: str) -> str:
        """The clean text of a document: every offset points into it."""
        return self._recent_texts(doc_id)

    def _read_text(self, doc_id: str) -> str:
        return tables.read_text(self._db, doc_id)

    def document(self, doc_id: str) -> Document:
        """The whole document with metadata and sections."""
        return tables.document(self.documents[doc_id], self.text(doc_id))

    def query_terms(self, text: str) -> tuple[list[str], np.ndarray]:
        return self.lexical.query(text)

    def allow(self, filters: Filters) -> np.ndarray:
        """A boolean mask over passage rows (`Catalog.rows`)."""
        return self.catalog.rows(filters)

    def candidates(
        self,
        vector: np.ndarray,
        terms: list[str],
        n: int,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> Candidates:
        """See `Store.candidates`; `allowed` is a boolean mask over passage rows."""
        n = min(n, self.faiss.ntotal)
        rows, _ = self.search(vector, n, allowed)
        lex_rows, lex = self.lexical.best(terms, n, allowed)
        found = np.unique(np.concatenate([rows, lex_rows])).astype(np.int64)
        if exclude is not None:
            found = found[found != exclude]
        passages = self.passages(found)
        return Candidates(
            passages=passages,
            dense=passages.vectors @ vector,
            bm25=lex[found],
            cover=self.lexical.contains(terms, found),
            document=(
                None
                if self.document_vectors is None
                else self.document_vectors.cosines(found, vector)
            ),
        )

    def passages(self, rows: np.ndarray) -> PassageRows:
        listed = rows.tolist()
        return PassageRows(
            rows=rows,
            vectors=np.asarray(self.passage_vectors[rows], dtype=np.float32),
            doc=_pick(self.passage_doc, listed),
            heading=_pick(self.passage_heading, listed),
            role=_pick(self.passage_role, listed),
            ids=_pick(self.passage_ids, listed),
            start=self.passage_start[rows],
            end=self.passage_end[rows],
            sent_lo=self.sent_lo[rows],
            sent_hi=self.sent_hi[rows],
        )

    def sentences(self, passages: PassageRows, terms: list[str]) -> SentenceRows:
        rows = sentence_span_rows(passages.sent_lo, passages.sent_hi)
        return SentenceRows(
            rows=rows,
            vectors=np.asarray(self.sentence_vectors[rows], dtype=np.float32),
            has=self.sentence_lexical.contains(terms, rows),
            start=self.sent_start[rows],
            end=self.sent_end[rows],
        )

    def search(
        self, vector: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows and cosine scores of the `k` passages nearest to a normalised query vector;
        with `allowed` (a boolean mask over passage rows), of the allowed ones only. An IVF
        index scores from float16 lists (within about 1e-4); `candidates` rescores exactly."""
        vector = vector.astype(np.float32)
        if self._exact is not None:
            scores = self._exact @ vector
            if allowed is not None:
                scores = np.where(allowed, scores, -np.inf)
            return _top(scores, np.arange(len(scores)), min(k, int(np.isfinite(scores).sum())))
        if allowed is None:
            found, rows = self.faiss.search(vector.reshape(1, -1), k)
        else:
            rows_allowed = np.flatnonzero(allowed)
            if len(rows_allowed) <= FILTERED_EXACT_LIMIT:
                scores = np.asarray(self.passage_vectors[rows_allowed], dtype=np.float32) @ vector
                return _top(scores, rows_allowed, min(k, len(rows_allowed)))
            found, rows = self._search_allowed(vector, k, allowed, len(rows_allowed))
        keep = rows[0] >= 0
        return rows[0][keep], found[0][keep]

    def _search_allowed(self, vector: np.ndarray, k: int, allowed: np.ndarray, n_allowed: int):
        """IVF search of the allowed rows only: the lists an unfiltered search scans, or more,
        so that about `FILTERED_MIN_COMPARED` allowed vectors are compared (a filter matching
        10% at 300k passages scans twice the lists; at 1M, no more). Scanning a list with a
        selector still reads every id in it, so scanning lists in proportion to 1 / share, as
        this did first, cost four times the unfiltered search at 300k for no gain in recall
        (1.000 either way, docs/design.md)."""
        import faiss

        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        nlist, nprobe = self.faiss.nlist, self.faiss.nprobe
        compared = n_allowed * nprobe / nlist  # allowed vectors in `nprobe` lists, expected
        nprobe = min(nlist, int(np.ceil(nprobe * max(1.0, FILTERED_MIN_COMPARED / compared))))
        params = faiss.SearchParametersIVF()
        params.sel, params.nprobe = selector, nprobe  # `bits` and `selector` live until the end
        return self.faiss.search(vector.reshape(1, -1), k, params=params)


def _pick(values: list[str], rows: list[int]) -> tuple[str, ...]:
    """values[rows[0]], values[rows[1]], ... (in C: the candidates' columns cost no Python loop)."""
    if len(rows) > 1:
        return operator.itemgetter(*rows)(values)
    return tuple(values[r] for r in rows)


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best rows, best first; a tie goes to the lower row."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.lexsort((rows[top], -scores[top]))]
    return rows[top], scores[top].astype(np.float32)
