"""Embeddings, FAISS and the on-disk store.

Public entry points: `build_index(corpus, settings, embedder)` writes a new generation and makes it
current; `load_index(settings)` opens the current one as an `Index`.
"""

from __future__ import annotations

import array
import functools
import logging
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from verbatim.arrays import spans as sentence_span_rows
from verbatim.errors import IndexCorrupt, IndexMissing, ModelMismatch
from verbatim.index import store
from verbatim.index.catalog import Catalog
from verbatim.index.embed import INT8_VERSION, ModelEmbedder
from verbatim.index.lexical import Lexical
from verbatim.records import Corpus, Document, DocumentMeta, Embedder, Filters, Passage
from verbatim.settings import DEFAULT_COLLECTION, Settings

__all__ = [
    "Index",
    "IngestReport",
    "ModelEmbedder",
    "PassageRows",
    "Pool",
    "SentenceRows",
    "Store",
    "build_index",
    "load_index",
    "open_store",
    "passage_text",
]
log = logging.getLogger("verbatim")

# Above this many passages an approximate (IVF) FAISS index replaces exact search: exact search
# costs about 0.26 µs a passage here (13 ms at 50k, as much as encoding the question), while IVF
# scanning 1/16 of its lists finds .987 of the exact top 10 on real MiniLM vectors
# (docs/design.md).
EXACT_SEARCH_LIMIT = 50_000
# A filter allowing at most this many passages of an IVF index is searched exactly, over their
# vectors alone: a few milliseconds, where IVF's lists may hold none of so few.
FILTERED_EXACT_LIMIT = 10_000
FILTERED_MIN_COMPARED = 4_000  # allowed vectors a filtered IVF search compares, about
TEXT_CACHE = 2048  # documents whose text is kept in memory once quoted


def _nprobe(nlist: int) -> int:
    """How many IVF lists a search scans in an index built before `_probes` measured it: 1/16
    of them, at least 32."""
    return min(nlist, max(32, nlist // 16))


# An IVF index scans the fewest lists (of 8, 16, 32, ...) that find this share of the exact top
# 10 for sentences of its own corpus, measured when it is built (`_probes`).
IVF_RECALL = 0.99
PROBE_QUERIES = 200  # sentences searched to measure it


Calibrate = Callable[["Index"], dict]  # the new index -> its abstention thresholds


@dataclass
class IngestReport:
    generation: str
    documents: int
    passages: int
    sentences: int
    embedded: int
    reused: int
    seconds: float  # embedding and indexing
    collection: str = "default"
    read_seconds: float = 0.0  # reading the files (set by the caller that read them)
    formats: dict[str, int] = field(default_factory=dict)  # files read per format


def passage_text(doc: Document, passage: Passage) -> str:
    """What is embedded for a passage: its text, with the title and heading as context."""
    context = " — ".join(x for x in (doc.title, passage.heading) if x)
    return f"{context}\n{passage.text}" if context else passage.text


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
class Pool:
    """A question's candidate passages: the nearest by embedding and the best by BM25."""

    passages: PassageRows
    dense: np.ndarray  # each passage's cosine with the question (float32)
    bm25: np.ndarray  # each passage's BM25 for the question's terms
    cover: np.ndarray  # (rows, terms) bool: whether each passage holds each term


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
    generation is each store's own (`build_index`; `qdrant.publish`)."""

    store: str  # "local" or "qdrant", as /api/health names it
    collection: str
    generation: str
    manifest: dict
    documents: dict[str, DocumentMeta]

    @property
    def thresholds(self) -> tuple[float, float] | None: ...

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
    ) -> Pool:
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


def _faiss_index(vectors: np.ndarray):
    """Exact search up to `EXACT_SEARCH_LIMIT` passages; above, IVF lists holding the vectors in
    float16 (half the memory and a third faster to scan than float32, same neighbours)."""
    import faiss

    dim = vectors.shape[1]
    index: Any
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        # Inner product on L2-normalised vectors is cosine similarity.
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39))  # 39+ a list
        fp16, inner = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, inner)
        sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), 50 * nlist), False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = _nprobe(nlist)
    index.add(vectors)
    return index


def _tenth_best(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's 10th best cosine over `vectors`, by blocks of rows."""
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for at in range(0, len(vectors), 65_536):
        scores = np.concatenate([best, queries @ vectors[at : at + 65_536].T], axis=1)
        best = -np.partition(-scores, min(9, scores.shape[1] - 1), axis=1)[:, :10]
    return best.min(axis=1)


def _recall(index, vectors: np.ndarray, queries: np.ndarray, tenth: np.ndarray) -> float:
    """The share of the index's top 10 that belong to the exact top 10. A row counts if it
    scores at least the exact 10th best: corpora repeat sentences, and a tie is no miss."""
    _, found = index.search(queries, 10)
    scores = np.einsum("qkd,qd->qk", vectors[np.maximum(found, 0)], queries)
    return float(np.mean((scores >= tenth[:, None] - 1e-4) & (found >= 0)))


def _probes(index, vectors: np.ndarray, queries: np.ndarray) -> dict:
    """The fewest IVF lists to scan for `IVF_RECALL` of the exact top 10, measured with
    `queries` (sentences of the corpus, stand-ins for questions): {"nprobe", "recall_at_10"}.

    How many lists a search must scan depends on how the corpus clusters, and a fixed share
    spends most of a million-passage answer scanning lists a corpus may not need. On real
    MiniLM vectors sentences are harder queries than questions (at each `nprobe` they find
    fewer of their exact top 10, docs/design.md), so this errs towards scanning more."""
    tenth = _tenth_best(vectors, queries)
    nprobe = 8
    while True:
        index.nprobe = min(nprobe, index.nlist)
        recall = _recall(index, vectors, queries, tenth)
        if recall >= IVF_RECALL or index.nprobe == index.nlist:
            return {"nprobe": int(index.nprobe), "recall_at_10": round(recall, 4)}
        nprobe *= 2


@dataclass
class _Reuse:
    """What the current generation offers a new one: its manifest, the row of each passage id,
    and its vector files, read block by block as the new ones are written (nothing when it is
    missing or in another vector space). Holding row numbers, not vectors, keeps a re-ingest of
    a million passages from holding its old vectors in memory."""

    manifest: dict = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # passage id -> its old passage row
    sent_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sent_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    passages: store.Vectors | None = None
    sentences: store.Vectors | None = None

    def close(self) -> None:
        for vectors in (self.passages, self.sentences):
            if vectors is not None:
                vectors.close()


# How the sentence vectors are made, recorded in the manifest: one forward pass per sentence.
# Another kind (late chunking was measured, docs/design.md) would be another value; a
# generation never reuses vectors of another kind, and a manifest without the field holds these.
SENTENCE_VECTORS = "per-sentence"
# How they are stored (manifest "sentence_dtype"; before the field: float32). A re-ingest reuses
# either kind of file, converting float32 rows once.
SENTENCE_DTYPE = "float16"
# About this many texts (passages and sentences) are embedded per call and written per block:
# what the build holds of the vectors at a time (100 MB at 384 dimensions).
BLOCK_TEXTS = 65_536


def sentence_vectors(manifest: dict) -> str:
    """How the sentence vectors of an index were made (manifests before the field: per sentence)."""
    return str(manifest.get("sentence_vectors", "per-sentence"))


def sentence_dtype(manifest: dict) -> str:
    """How the sentence vectors of an index are stored (manifests before the field: float32)."""
    return str(manifest.get("sentence_dtype", "float32"))


def _reusable(settings: Settings) -> _Reuse:
    """Vectors of the current generation, if it is in the same vector space and its sentence
    vectors were made the same way: a generation never mixes two kinds."""
    try:
        old = load_index(settings)
    except Exception as exc:  # no usable previous index: embed everything
        log.debug("nothing to reuse: %s", exc)
        return _Reuse()
    with old:
        if _space(old.manifest) != _space(settings):
            return _Reuse()
        if sentence_vectors(old.manifest) != SENTENCE_VECTORS:
            return _Reuse()
        return _Reuse(
            manifest=old.manifest,
            rows={pid: row for row, pid in enumerate(old.passage_ids)},
            sent_lo=old.sent_lo,
            sent_hi=old.sent_hi,
            passages=store.Vectors(old.path / "passages.npy"),
            sentences=store.Vectors(old.path / "sentences.npy"),
        )


def _texts_to_embed(docs: dict[str, Document], passages: list[Passage], todo: list[int]) -> list:
    """The new passages' texts, then all their sentences', in order."""
    texts = [passage_text(docs[passages[i].doc_id], passages[i]) for i in todo]
    for p in (passages[i] for i in todo):
        text = docs[p.doc_id].text
        texts += [text[s.start : s.end] for s in p.sentences]
    return texts


def _blocks(passages: list[Passage]) -> Iterator[range]:
    """Consecutive passage rows holding about `BLOCK_TEXTS` texts each, passages included."""
    first, count = 0, 0
    for row, p in enumerate(passages):
        count += 1 + len(p.sentences)
        if count >= BLOCK_TEXTS:
            yield range(first, row + 1)
            first, count = row + 1, 0
    if first < len(passages):
        yield range(first, len(passages))


@dataclass
class _Block:
    """The vectors of some consecutive passage rows and of their sentences."""

    passages: np.ndarray  # (rows, dim) float32
    sentences: np.ndarray  # (their sentences, dim) float32
    embedded: int  # texts that went through the embedder


def _block(
    passages: list[Passage], rows: range, docs: dict[str, Document], embedder, reuse: _Reuse
) -> _Block:
    """Vectors of passage `rows` and their sentences: freshly embedded for passages the current
    generation lacks (their texts, then their sentences', in one call), copied for the rest."""
    counts = np.array([len(passages[r].sentences) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ids = [passages[r].id for r in rows]
    new = np.array([pid not in reuse.rows for pid in ids], dtype=bool)
    todo = [rows.start + int(i) for i in np.flatnonzero(new)]
    fresh = _encode(embedder, _texts_to_embed(docs, passages, todo))
    kept = np.array(
        [reuse.rows[pid] for pid, is_new in zip(ids, new, strict=True) if not is_new], np.int64
    )
    dim = fresh.shape[1] if len(fresh) else _reused_dim(reuse)
    fresh = fresh.reshape(len(fresh), dim)  # (0, 0) when nothing was new
    pvecs = np.empty((len(rows), dim), dtype=np.float32)
    svecs = np.empty((int(counts.sum()), dim), dtype=np.float32)
    at = np.flatnonzero(new)
    pvecs[at] = fresh[: len(at)]
    svecs[sentence_span_rows(starts[at], starts[at] + counts[at])] = fresh[len(at) :]
    if len(kept) and reuse.passages is not None and reuse.sentences is not None:
        at = np.flatnonzero(~new)
        pvecs[at] = reuse.passages[kept]
        old = sentence_span_rows(reuse.sent_lo[kept], reuse.sent_hi[kept])
        svecs[sentence_span_rows(starts[at], starts[at] + counts[at])] = reuse.sentences[old]
    return _Block(pvecs, svecs, len(fresh))


def _encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """The embedder's float32 vectors of `texts`; nothing asked of it when there are none."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(embedder.encode(texts), dtype=np.float32)


def _reused_dim(reuse: _Reuse) -> int:
    if reuse.passages is None:
        raise ValueError("a block with neither new nor reused passages")
    return reuse.passages.shape[1]


def _write_vectors(
    workspace: Path, corpus: Corpus, embedder: Embedder, reuse: _Reuse
) -> tuple[int, int]:
    """Write passages.npy (float32) and sentences.npy (`SENTENCE_DTYPE`) block by block,
    embedding what the current generation lacks: the build holds one block's vectors, never
    the whole matrices. Returns the vector width and how many texts were embedded."""
    passages = corpus.passages
    n_sentences = sum(len(p.sentences) for p in passages)
    docs = {d.id: d for d in corpus.documents}
    pfile = store.VectorWriter(workspace / "passages.npy", len(passages), "float32")
    sfile = store.VectorWriter(workspace / "sentences.npy", n_sentences, SENTENCE_DTYPE)
    embedded = 0
    for rows in _blocks(passages):
        block = _block(passages, rows, docs, embedder, reuse)
        pfile.write(block.passages)
        sfile.write(block.sentences)
        embedded += block.embedded
    dim = pfile.dim or (_reused_dim(reuse) if reuse.passages is not None else embedder.dim)
    pfile.close(dim)
    sfile.close(dim)
    return dim, embedded


def _probe_queries(path: Path, passages: np.ndarray) -> np.ndarray:
    """`PROBE_QUERIES` sentence vectors spread over the corpus (passages if it has none)."""
    sentences = store.Vectors(path)
    try:
        pool = sentences if len(sentences) else passages
        pick = np.random.default_rng(0).choice(len(pool), min(len(pool), PROBE_QUERIES), False)
        return np.asarray(pool[np.sort(pick)], dtype=np.float32)
    finally:
        sentences.close()


def _write_search_files(workspace: Path, corpus: Corpus) -> dict:
    """The FAISS index (over passages.npy and sentences.npy, written already) and both BM25
    indexes (passages, sentences). For an IVF index, how many lists its searches scan."""
    import faiss

    pvecs = np.load(workspace / "passages.npy", allow_pickle=False)
    searcher = _faiss_index(pvecs)
    probes = {}
    if hasattr(searcher, "nlist"):
        probes = _probes(searcher, pvecs, _probe_queries(workspace / "sentences.npy", pvecs))
    faiss.write_index(searcher, str(workspace / "passages.faiss"))
    del pvecs, searcher
    docs = {d.id: d for d in corpus.documents}
    Lexical.build(passage_text(docs[p.doc_id], p) for p in corpus.passages).save(workspace / "bm25")
    sentences = (docs[p.doc_id].text[s.start : s.end] for p in corpus.passages for s in p.sentences)
    Lexical.build(sentences).save(workspace / "bm25-sentences")
    return probes


def _manifest(corpus: Corpus, settings: Settings, dim: int) -> dict:
    return {
        "model": settings.model,
        "int8": _space(settings)[1],
        "dim": int(dim),
        "sentence_vectors": SENTENCE_VECTORS,
        "sentence_dtype": SENTENCE_DTYPE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passage_chars": settings.passage_chars,
        "counts": {
            "documents": len(corpus.documents),
            "passages": len(corpus.passages),
            "sentences": sum(len(p.sentences) for p in corpus.passages),
        },
        "corpus_hash": corpus_hash(corpus.documents),
    }


def _calibration(workspace: Path, manifest: dict, old: dict, calibrate: Calibrate | None):
    """The abstention thresholds: kept when the corpus is unchanged, else measured afresh."""
    unchanged = all(old.get(key) == manifest[key] for key in ("corpus_hash", "passage_chars"))
    if unchanged and "calibration" in old:
        return old["calibration"]  # same corpus, same answer
    if calibrate is None:
        return None
    with Index(workspace, {**manifest, "files": {}}) as fresh_index:
        return calibrate(fresh_index)


def build_index(
    corpus: Corpus, settings: Settings, embedder: Embedder, calibrate: Calibrate | None = None
) -> IngestReport:
    """Embed `corpus` and publish it as the new current generation.

    Vectors of passages whose text is unchanged since the current generation are reused, so
    re-ingesting an unchanged folder embeds nothing (and keeps its calibration). Until
    `publish` returns, the previous generation stays current: a crash loses nothing.

    Args:
        calibrate: run on the new index before publishing; its result is stored in the
            manifest under "calibration".
    """
    began = time.perf_counter()
    reuse = _reusable(settings)
    reused = sum(p.id in reuse.rows for p in corpus.passages)
    try:
        with store.writing(where(settings)) as workspace:
            store.write_rows(workspace / "store.sqlite", corpus.documents, corpus.passages)
            dim, embedded = _write_vectors(workspace, corpus, embedder, reuse)
            probes = _write_search_files(workspace, corpus)
            manifest = _manifest(corpus, settings, dim) | ({"ivf": probes} if probes else {})
            calibration = _calibration(workspace, manifest, reuse.manifest, calibrate)
            if calibration is not None:
                manifest["calibration"] = calibration
            name = store.publish(workspace, manifest, where(settings))
    finally:
        reuse.close()
    if settings.store == "qdrant":
        _publish_to_qdrant(settings, name)
    return IngestReport(
        generation=name,
        documents=len(corpus.documents),
        passages=len(corpus.passages),
        sentences=manifest["counts"]["sentences"],
        embedded=embedded,
        reused=reused,
        seconds=time.perf_counter() - began,
        collection=settings.collection,
        read_seconds=corpus.read_seconds,
        formats=dict(corpus.formats),
    )


def _publish_to_qdrant(settings: Settings, name: str) -> None:
    """Copy the generation just published locally into Qdrant and switch its alias there. The
    local files stay: the next ingest reuses their vectors, and `serve` may read either."""
    from verbatim.index import qdrant

    path = store.generations_dir(where(settings)) / name
    with Index(path, store.verify(path), settings.collection) as index:
        client = qdrant.client_for(settings)
        qdrant.publish(index, client, settings.qdrant_shards, settings.qdrant_replicas)


def open_store(settings: Settings) -> Store:
    """The current generation in the store `settings.store` names: `load_index` for the local
    files, `qdrant.open_store` for Qdrant (imported only then)."""
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        return qdrant.open_store(settings)
    return load_index(settings)


def _space(source: Settings | dict) -> tuple[str, int]:
    """The vector space of an index or of the configured embedder: the model, and the version of
    its int8 weights, 0 for float (the `onnx` and `torch` backends give the same vectors).
    Manifests before versions said `true` for int8, which reads as 1."""
    if isinstance(source, dict):
        return source["model"], int(source.get("int8", 0))
    return source.model, INT8_VERSION if source.backend == "onnx-int8" else 0


def corpus_hash(docs: list[Document]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.id):
        digest.update(f"{d.id}\0{d.content_hash}\0{d.title}\0{d.author}\0{d.url}\n".encode())
    return digest.hexdigest()


def where(settings: Settings) -> Path:
    """The folder of the collection `settings` names: its CURRENT and generations."""
    return store.collection_dir(settings.data_dir, settings.collection)


class Index:
    """A loaded, read-only generation of one collection, in local files: the default `Store`.
    Safe to share between threads."""

    store = "local"

    def __init__(self, path: Path, manifest: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.path = path
        self.generation = path.name
        self.collection = collection
        self.manifest = manifest
        self._open_search(path)
        self._db = store.open_db(path / "store.sqlite")
        self._read_passages()
        self.sent_start = np.fromiter(store.read_sentence_column(self._db, "start"), np.int64)
        self.sent_end = np.fromiter(store.read_sentence_column(self._db, "end"), np.int64)
        self.sent_passage = np.repeat(
            np.arange(len(self.passage_ids), dtype=np.int32), self.sent_hi - self.sent_lo
        )
        self.documents: dict[str, DocumentMeta] = store.read_documents(self._db)
        self.catalog = Catalog(self.documents, self.passage_doc)
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
            searcher.nprobe = self.manifest.get("ivf", {}).get("nprobe") or _nprobe(nlist)
        self.faiss = searcher
        self.sentence_vectors = store.open_vectors(path / "sentences.npy")
        self.passage_vectors = store.open_vectors(path / "passages.npy")
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
        for pid, doc, heading, role, *spans in store.read_passages(self._db):
            self.passage_ids.append(pid)
            self.passage_doc.append(shared.setdefault(doc, doc))
            self.passage_heading.append(shared.setdefault(heading, heading))
            self.passage_role.append(shared.setdefault(role, role))
            numbers.extend(spans)
        columns = np.frombuffer(numbers, dtype=np.int64).reshape(-1, 4).T.copy()
        self.passage_start, self.passage_end, self.sent_lo, self.sent_hi = columns

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        for vectors in (self.passage_vectors, self.sentence_vectors):
            if isinstance(vectors, store.Vectors):
                vectors.close()

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """Calibrated abstention thresholds (passage, sentence), if the index has them."""
        return store.thresholds(self.manifest)

    def text(self, doc_id: str) -> str:
        """The clean text of a document: every offset points into it."""
        return self._recent_texts(doc_id)

    def _read_text(self, doc_id: str) -> str:
        return store.read_text(self._db, doc_id)

    def document(self, doc_id: str) -> Document:
        """The whole document with metadata and sections."""
        return store.document(self.documents[doc_id], self.text(doc_id))

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
    ) -> Pool:
        """See `Store.candidates`; `allowed` is a boolean mask over passage rows."""
        n = min(n, self.faiss.ntotal)
        rows, _ = self.search(vector, n, allowed)
        lex_rows, lex = self.lexical.best(terms, n, allowed)
        pool = np.unique(np.concatenate([rows, lex_rows])).astype(np.int64)
        if exclude is not None:
            pool = pool[pool != exclude]
        passages = self.passages(pool)
        return Pool(
            passages=passages,
            dense=passages.vectors @ vector,
            bm25=lex[pool],
            cover=self.lexical.contains(terms, pool),
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
    """values[rows[0]], values[rows[1]], ... (in C: a pool's columns cost no Python loop)."""
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


def _candidates(settings: Settings) -> list[Path]:
    """The collection's generations to try (`store.candidates`); when it has none, an error
    that says how to create it, or which collections there are instead of the default."""
    try:
        return store.candidates(where(settings))
    except IndexMissing:
        name = settings.collection
        if name != DEFAULT_COLLECTION:
            raise IndexMissing(
                f"no collection named {name!r} in {settings.data_dir}; create it with "
                f"`verbatim ingest PATH --collection {name}` (`verbatim collections` lists them)"
            ) from None
        others = ", ".join(store.collection_names(settings.data_dir))
        if not others:
            raise
        raise IndexMissing(
            f"no default collection in {settings.data_dir}; its collections are {others}: "
            "name one with --collection (or VERBATIM_COLLECTION)"
        ) from None


def load_index(settings: Settings) -> Index:
    """Open the current generation, verified against its manifest.

    When the current generation is damaged, the newest intact older one is served instead.

    Raises:
        IndexMissing: nothing was ever ingested into `settings.data_dir`.
        IndexCorrupt: no generation passes its checks.
        ModelMismatch: the index was built with another model than `settings.model`.
    """
    errors = []
    for path in _candidates(settings):
        try:
            manifest = store.verify(path)
            index = Index(path, manifest, settings.collection)
        except (IndexCorrupt, OSError, RuntimeError, ValueError) as exc:
            message = exc.message if isinstance(exc, IndexCorrupt) else f"{path}: {exc}"
            log.warning("skipping generation %s: %s", path.name, message)
            errors.append(message)
            continue
        if manifest["model"] == settings.model and _space(manifest) != _space(settings):
            index.close()
            built = "the onnx-int8" if manifest.get("int8") else "the onnx or torch"
            if manifest.get("int8") and settings.backend == "onnx-int8":
                built = "an older version of the onnx-int8"
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with {built} backend but "
                f"VERBATIM_BACKEND is {settings.backend!r}; run `verbatim ingest` to rebuild it "
                f"or change VERBATIM_BACKEND back"
            )
        if manifest["model"] != settings.model:
            index.close()
            raise ModelMismatch(
                f"the index in {settings.data_dir} was built with model {manifest['model']!r} "
                f"but VERBATIM_MODEL is {settings.model!r}; run `verbatim ingest` to rebuild it "
                f"or set VERBATIM_MODEL={manifest['model']}"
            )
        return index
    raise IndexCorrupt("no intact index generation: " + "; ".join(errors))
