"""Building a generation: embed a corpus (reusing the current generation's vectors), write its
rows, vectors and search files (`write_segment`), calibrate it and publish it locally
(`build_index`).

A corpus is written as a stream (`CorpusStream`; an in-memory `Corpus` is a short one), a block
of about `BLOCK_TEXTS` texts at a time: read, split, embed and write, so that a build holds one
block, never the corpus's texts, vectors or token lists. What needs the whole corpus is
gathered on the way (BM25's document frequencies, counts) or read back from what was written
(the IVF training sample, document vectors by id, the corpus hash). After each block the
workspace records what it holds (`PROGRESS`): a build killed and started again on the same
sources and settings goes on from there (`_workspace`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verbatim.arrays import spans as sentence_span_rows
from verbatim.index import documents, generations, ivf, tables
from verbatim.index.lexical import LexicalWriter
from verbatim.index.load import load_index, vector_space, where
from verbatim.index.local import Index, default_nprobe
from verbatim.index.probing import Probing, release_mapped
from verbatim.index.records import IngestReport
from verbatim.index.segments import Segmented
from verbatim.index.vectors import Vectors, VectorWriter
from verbatim.records import Corpus, CorpusStream, Document, DocumentPassages, Embedder, Passage
from verbatim.settings import Settings

log = logging.getLogger("verbatim")

# Above this many passages an approximate (IVF) FAISS index replaces exact search: exact search
# costs about 0.26 µs a passage here (13 ms at 50k, as much as encoding the question), while IVF
# scanning 1/16 of its lists finds .987 of the exact top 10 on real MiniLM vectors
# (docs/design.md).
EXACT_SEARCH_LIMIT = 50_000

# An IVF index over n passages has IVF_LISTS_PER_ROOT * sqrt(n) lists (FAISS's guideline is 4
# to 16 sqrt(n); fewer lists are longer but cheaper to train), with at least MIN_PER_LIST
# passages each: FAISS's k-means wants 39 training points a centroid.
IVF_LISTS_PER_ROOT = 4
MIN_PER_LIST = 39
# k-means trains on TRAIN_PER_LIST sampled passages a list: within FAISS's 39 to 256 a
# centroid, and a million passages train in seconds rather than minutes.
TRAIN_PER_LIST = 50
# An IVF index scans the fewest lists (of 8, 16, 32, ...) that find this share of the exact top
# 10 for sentences of its own corpus, measured when it is built (`_probes`).
IVF_RECALL = 0.99
PROBE_QUERIES = 200  # sentences searched to measure it
FIRST_NPROBE = 8  # the fewest lists tried; doubled until IVF_RECALL is reached
# Corpus vectors scored against the probe queries per matrix product when finding their exact
# top 10: bounds the (queries x block) score matrix (200 x 65,536 float32: 52 MB).
RECALL_BLOCK = 65_536
# Probe queries searched between two releases of a mapped IVF file's pages (`_recall`): 25
# queries scanning 32 of a million passages' 4,000 lists read a fifth of them (150 MB).
PROBE_CHUNK = 25


Calibrate = Callable[["Index"], dict]  # the new index -> its abstention thresholds
Release = Callable[[], object]  # gives back the mapped pages of the files a search read


def passage_text(doc: Document, passage: Passage) -> str:
    """What is embedded for a passage: its text, with the title and heading as context."""
    context = " — ".join(x for x in (doc.title, passage.heading) if x)
    return f"{context}\n{passage.text}" if context else passage.text


def _faiss_index(vectors):
    """`_empty_index(vectors)` with `vectors` added, in memory: what `_write_faiss` writes to
    disk (an IVF index's lists without holding them, `ivf.write`)."""
    return _filled(_empty_index(vectors), vectors)


def _filled(index, vectors):
    """`index` with `vectors` added a block at a time."""
    for at in range(0, len(vectors), ivf.BLOCK):
        index.add(np.asarray(vectors[at : at + ivf.BLOCK], dtype=np.float32))
    return index


def _empty_index(vectors):
    """Exact search up to `EXACT_SEARCH_LIMIT` passages; above, IVF lists holding the vectors in
    float16 (half the memory and a third faster to scan than float32, same neighbours), trained
    on a sample of `vectors` (a matrix, or a `Vectors` file)."""
    import faiss

    dim = vectors.shape[1]
    index: Any
    if len(vectors) <= EXACT_SEARCH_LIMIT:
        # Inner product on L2-normalised vectors is cosine similarity.
        index = faiss.IndexFlatIP(dim)
    else:
        per_root = int(IVF_LISTS_PER_ROOT * np.sqrt(len(vectors)))
        nlist = max(1, min(per_root, len(vectors) // MIN_PER_LIST))
        fp16, inner = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, inner)
        size = min(len(vectors), TRAIN_PER_LIST * nlist)
        sample = np.random.default_rng(0).choice(len(vectors), size, False)
        index.train(np.asarray(vectors[np.sort(sample)], dtype=np.float32))
        index.nprobe = default_nprobe(nlist)
    return index


def _tenth_best(vectors, queries: np.ndarray) -> np.ndarray:
    """Each query's 10th best cosine over `vectors` (a matrix or a `Vectors` file), by blocks
    of rows."""
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for at in range(0, len(vectors), RECALL_BLOCK):
        block = np.asarray(vectors[at : at + RECALL_BLOCK], dtype=np.float32)
        scores = np.concatenate([best, queries @ block.T], axis=1)
        best = -np.partition(-scores, min(9, scores.shape[1] - 1), axis=1)[:, :10]
    return best.min(axis=1)


def _recall(
    index, vectors, queries: np.ndarray, tenth: np.ndarray, release: Release = lambda: None
) -> float:
    """The share of the index's top 10 that belong to the exact top 10. A row counts if it
    scores at least the exact 10th best: corpora repeat sentences, and a tie is no miss.
    `release()` is called after every `PROBE_CHUNK` queries."""
    found = np.empty((len(queries), 10), np.int64)
    for at in range(0, len(queries), PROBE_CHUNK):
        found[at : at + PROBE_CHUNK] = index.search(queries[at : at + PROBE_CHUNK], 10)[1]
        release()
    rows = np.asarray(vectors[np.maximum(found, 0).reshape(-1)], dtype=np.float32)
    scores = np.einsum("qkd,qd->qk", rows.reshape(*found.shape, -1), queries)
    return float(np.mean((scores >= tenth[:, None] - 1e-4) & (found >= 0)))


def _probes(index, vectors, queries: np.ndarray, release: Release = lambda: None) -> dict:
    """The fewest IVF lists to scan for `IVF_RECALL` of the exact top 10, measured with
    `queries` (sentences of the corpus, stand-ins for questions): {"nprobe", "recall_at_10"}.
    `release`: what gives back the pages of a memory-mapped index a few searches have read.

    How many lists a search must scan depends on how the corpus clusters, and a fixed share
    spends most of a million-passage answer scanning lists a corpus may not need. On real
    MiniLM vectors sentences are harder queries than questions (at each `nprobe` they find
    fewer of their exact top 10, docs/design.md), so this errs towards scanning more."""
    tenth = _tenth_best(vectors, queries)
    nprobe = FIRST_NPROBE
    while True:
        index.nprobe = min(nprobe, index.nlist)
        recall = _recall(index, vectors, queries, tenth, release)
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
    # Each old sentence's [start, end) from its passage's start: a passage whose text is the
    # same but which the splitter now cuts differently must be embedded again.
    sent_from: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sent_to: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # What a passage was embedded with besides its text (`passage_text`): a new title or
    # heading over the same paragraph makes another vector.
    headings: list[str] = field(default_factory=list)  # by old passage row
    titles: dict[str, str] = field(default_factory=dict)  # by document id
    passages: Vectors | None = None
    sentences: Vectors | None = None
    documents: Vectors | None = None  # document vectors, by `documents.old_rows`
    document_rows: dict[str, int] = field(default_factory=dict)
    # The delta served beside the current generation, when it is one: its passages' vectors are
    # copied too (a merge would otherwise embed again every passage the delta holds).
    delta: _Reuse | None = None

    def sources(self) -> list[_Reuse]:
        return [self] if self.delta is None else [self, self.delta]

    def close(self) -> None:
        for vectors in (self.passages, self.sentences, self.documents):
            if vectors is not None:
                vectors.close()
        if self.delta is not None:
            self.delta.close()


# How the sentence vectors are made, recorded in the manifest: one forward pass per sentence.
# Another kind (late chunking was measured, docs/design.md) would be another value; a
# generation never reuses vectors of another kind, and a manifest without the field holds these.
SENTENCE_VECTORS = "per-sentence"
# How they are stored (manifest "sentence_dtype"; before the field: float32; float16 until int8,
# each row's scale in sentences.scale.npy). A re-ingest reuses any of the three, converting the
# rows once.
SENTENCE_DTYPE = "int8"
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
        if not isinstance(old, Segmented):
            return _reuse_of(old, settings)
        reuse = _reuse_of(old.base, settings)
        if reuse.passages is not None:  # the delta is in the base's vector space
            reuse.delta = _reuse_of(old.delta, settings)
        return reuse


def _reuse_of(old: Index, settings: Settings) -> _Reuse:
    if vector_space(old.manifest) != vector_space(settings):
        return _Reuse()
    if sentence_vectors(old.manifest) != SENTENCE_VECTORS:
        return _Reuse()
    return _Reuse(
        manifest=old.manifest,
        rows={pid: row for row, pid in enumerate(old.passage_ids)},
        sent_lo=old.sent_lo,
        sent_hi=old.sent_hi,
        sent_from=old.sent_start - old.passage_start[old.sent_passage],
        sent_to=old.sent_end - old.passage_start[old.sent_passage],
        headings=old.passage_heading,
        titles={doc_id: meta.title for doc_id, meta in old.documents.items()},
        passages=Vectors(old.path / "passages.npy"),
        sentences=Vectors(old.path / "sentences.npy"),
        documents=(
            Vectors(old.path / documents.FILE) if (old.path / documents.FILE).exists() else None
        ),
        document_rows=documents.old_rows(old.path, old.documents),
    )


def _embedded_alike(passage: Passage, title: str, reuse: _Reuse) -> bool:
    """Whether the current generation holds `passage` under the same `title` and heading, split
    into the same sentences, so its vectors can be copied."""
    row = reuse.rows.get(passage.id)
    if row is None or reuse.headings[row] != passage.heading:
        return False
    if reuse.titles.get(passage.doc_id) != title:
        return False
    lo, hi = int(reuse.sent_lo[row]), int(reuse.sent_hi[row])
    if hi - lo != len(passage.sentences):
        return False
    base = passage.start
    return all(
        s.start - base == reuse.sent_from[lo + i] and s.end - base == reuse.sent_to[lo + i]
        for i, s in enumerate(passage.sentences)
    )


def _texts_to_embed(docs: dict[str, Document], passages: list[Passage], todo: list[int]) -> list:
    """The new passages' texts, then all their sentences', in order."""
    texts = [passage_text(docs[passages[i].doc_id], passages[i]) for i in todo]
    for p in (passages[i] for i in todo):
        text = docs[p.doc_id].text
        texts += [text[s.start : s.end] for s in p.sentences]
    return texts


@dataclass
class _Block:
    """The vectors of some consecutive passage rows and of their sentences."""

    passages: np.ndarray  # (rows, dim) float32
    sentences: np.ndarray  # (their sentences, dim) float32
    embedded: int  # texts that went through the embedder
    reused: int  # passages whose vectors were copied from the current generation


def _block(passages: list[Passage], docs: dict[str, Document], embedder, reuse: _Reuse) -> _Block:
    """Vectors of `passages` and their sentences: freshly embedded for passages the current
    generation lacks (their texts, then their sentences', in one call), copied for the rest."""
    counts = np.array([len(p.sentences) for p in passages], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    sources = reuse.sources()
    source = np.array(
        [_source_of(p, docs[p.doc_id].title, sources) for p in passages], dtype=np.int64
    )
    todo = [int(i) for i in np.flatnonzero(source < 0)]
    fresh = _encode(embedder, _texts_to_embed(docs, passages, todo))
    dim = fresh.shape[1] if len(fresh) else _reused_dim(reuse)
    fresh = fresh.reshape(len(fresh), dim)  # (0, 0) when nothing was new
    pvecs = np.empty((len(passages), dim), dtype=np.float32)
    svecs = np.empty((int(counts.sum()), dim), dtype=np.float32)
    at = np.array(todo, dtype=np.int64)
    pvecs[at] = fresh[: len(at)]
    svecs[sentence_span_rows(starts[at], starts[at] + counts[at])] = fresh[len(at) :]
    for s, held in enumerate(sources):
        at = np.flatnonzero(source == s)
        if len(at) and held.passages is not None and held.sentences is not None:
            kept = np.array([held.rows[passages[i].id] for i in at], np.int64)
            pvecs[at] = held.passages[kept]
            old = sentence_span_rows(held.sent_lo[kept], held.sent_hi[kept])
            svecs[sentence_span_rows(starts[at], starts[at] + counts[at])] = held.sentences[old]
    return _Block(pvecs, svecs, len(fresh), len(passages) - len(todo))


def _source_of(passage: Passage, title: str, sources: list[_Reuse]) -> int:
    """The first of `sources` holding `passage` as it is embedded now (its vectors are copied
    from there), or -1: it is embedded."""
    return next((s for s, held in enumerate(sources) if _embedded_alike(passage, title, held)), -1)


def _encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """The embedder's float32 vectors of `texts`; nothing asked of it when there are none."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(embedder.encode(texts), dtype=np.float32)


def _reused_dim(reuse: _Reuse) -> int:
    if reuse.passages is None:
        raise ValueError("a block with neither new nor reused passages")
    return reuse.passages.shape[1]


PROGRESS = "progress.json"  # what a workspace holds, rewritten after each block and step
LEXICAL = ("bm25", "bm25-sentences")  # the BM25 indexes: of passages, of sentences


@dataclass
class _Progress:
    """What a workspace holds (`PROGRESS`): rows written, vectors' width, the BM25 writers'
    states, and the steps finished after the stream. Recorded only after what it counts was
    flushed to the disk, so a build killed at any point finds at least that much there."""

    key: str = ""  # the stream's key (`CorpusStream.key`)
    documents: int = 0
    passages: int = 0
    sentences: int = 0
    dim: int | None = None
    embedded: int = 0  # texts that went through the embedder
    reused: int = 0  # passages whose vectors were copied
    lexical: dict = field(default_factory=dict)  # LEXICAL name -> `LexicalWriter.state()`
    done: list = field(default_factory=list)  # "stream", "documents", "faiss", LEXICAL names
    documents_embedded: int = 0
    ivf: dict = field(default_factory=dict)

    def save(self, workspace: Path) -> None:
        """Record it (a stream without a key is never continued: nothing is written)."""
        if not self.key:
            return
        tmp = workspace / f"{PROGRESS}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, workspace / PROGRESS)
        fd = os.open(workspace, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def of(cls, workspace: Path, key: str) -> _Progress:
        """The progress recorded in `workspace` for stream `key`; none (start afresh) when
        there is no record, or it is another stream's."""
        try:
            recorded = cls(**json.loads((workspace / PROGRESS).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return cls(key)
        if not key or recorded.key != key:
            return cls(key)
        log.info("resuming a build: %d passages already written", recorded.passages)
        return recorded


@dataclass
class _Pending:
    """What the stream gave since the last block was written: documents whose rows are due,
    passages (about `BLOCK_TEXTS` texts with their sentences) and their documents. Counts what
    it saw, so that a resumed build passes over what was written before."""

    documents: list[Document] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    texts: dict[str, Document] = field(default_factory=dict)
    count: int = 0  # passages and sentences in `passages`
    seen_documents: int = 0
    seen_passages: int = 0

    def document(self, item: DocumentPassages, written: _Progress) -> None:
        if item.first:
            self.seen_documents += 1
            if self.seen_documents > written.documents:
                self.documents.append(item.document)

    def passage(self, doc: Document, passage: Passage, written: _Progress) -> int:
        """Take `passage` (unless it was written before); the texts pending now."""
        self.seen_passages += 1
        if self.seen_passages > written.passages:
            self.passages.append(passage)
            self.texts[doc.id] = doc
            self.count += 1 + len(passage.sentences)
        return self.count

    def clear(self) -> None:
        self.documents, self.passages, self.texts, self.count = [], [], {}, 0


class _Writers:
    """The files a stream is written to, opened where `progress` says they end."""

    def __init__(self, workspace: Path, progress: _Progress) -> None:
        self.workspace, self.progress = workspace, progress
        at = progress.passages
        self.rows = tables.RowWriter(
            workspace / "store.sqlite", progress.documents, at, progress.sentences
        )
        self.passages = VectorWriter.resume(workspace / "passages.npy", "float32", at, progress.dim)
        self.sentences = VectorWriter.resume(
            workspace / "sentences.npy", SENTENCE_DTYPE, progress.sentences, progress.dim
        )
        self.lexical = {n: LexicalWriter(workspace / n, progress.lexical.get(n)) for n in LEXICAL}

    def write(self, pending: _Pending, embedder: Embedder, reuse: _Reuse) -> None:
        """Embed and write the pending passages and rows, then record them as written."""
        block, docs = pending.passages, pending.texts
        if block:
            vectors = _block(block, docs, embedder, reuse)
            self.passages.write(vectors.passages)
            self.sentences.write(vectors.sentences)
            self.progress.embedded += vectors.embedded
            self.progress.reused += vectors.reused
            self.lexical["bm25"].add(passage_text(docs[p.doc_id], p) for p in block)
            self.lexical["bm25-sentences"].add(
                docs[p.doc_id].text[s.start : s.end] for p in block for s in p.sentences
            )
        self.rows.add(pending.documents, block)
        self.passages.sync()
        self.sentences.sync()
        self.progress.lexical = {name: w.state() for name, w in self.lexical.items()}
        self.progress.documents = self.rows.documents
        self.progress.passages = self.rows.passages
        self.progress.sentences = self.rows.sentences
        self.progress.dim = self.passages.dim
        self.progress.save(self.workspace)
        pending.clear()

    def close(self, dim: int) -> None:
        self.passages.close(dim)
        self.sentences.close(dim)
        self.rows.close()


def _write_stream(
    workspace: Path, stream: CorpusStream, progress: _Progress, embedder: Embedder, reuse: _Reuse
) -> None:
    """Rows, vectors and BM25 postings of every passage of `stream`, a block at a time: the
    same blocks (the same texts embedded together) as an uninterrupted build's."""
    out = _Writers(workspace, progress)
    pending = _Pending()
    try:
        for item in stream.items:
            pending.document(item, progress)
            for passage in item.passages:
                if pending.passage(item.document, passage, progress) >= BLOCK_TEXTS:
                    out.write(pending, embedder, reuse)
        if pending.passages or pending.documents:
            out.write(pending, embedder, reuse)
        dim = out.passages.dim or (_reused_dim(reuse) if reuse.passages else embedder.dim)
    finally:
        out.rows.close()
    out.close(dim)
    _done(workspace, progress, "stream")


def _probe_queries(path: Path, passages) -> np.ndarray:
    """`PROBE_QUERIES` sentence vectors spread over the corpus (passages if it has none)."""
    sentences = Vectors(path)
    try:
        source = sentences if len(sentences) else passages
        pick = np.random.default_rng(0).choice(len(source), min(len(source), PROBE_QUERIES), False)
        return np.asarray(source[np.sort(pick)], dtype=np.float32)
    finally:
        sentences.close()


def _write_faiss(workspace: Path) -> dict:
    """The FAISS index over passages.npy, read a block at a time; for an IVF index, how many
    lists its searches scan, measured on the written file as a server maps it."""
    import faiss

    path = workspace / "passages.faiss"
    vectors = Vectors(workspace / "passages.npy")
    try:
        searcher = _empty_index(vectors)
        if not hasattr(searcher, "nlist"):  # exact search: EXACT_SEARCH_LIMIT vectors at most
            faiss.write_index(_filled(searcher, vectors), str(path))
            return {}
        ivf.write(searcher, vectors, path)
        queries = _probe_queries(workspace / "sentences.npy", vectors)
        mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
        probes = _probes(mapped, vectors, queries, lambda: release_mapped(workspace))
        ivf.set_nprobe(path, probes["nprobe"])
    finally:
        vectors.close()
    return probes


@dataclass
class Segment:
    """What `write_segment` wrote into a workspace."""

    documents: int
    passages: int
    sentences: int
    dim: int
    embedded: int  # passage and sentence texts that went through the embedder
    reused: int  # passages whose vectors were copied from the current generation
    documents_embedded: int
    corpus_hash: str
    ivf: dict  # an IVF index's {"nprobe", "recall_at_10"}; {} for exact search


def write_segment(
    workspace: Path,
    corpus: Corpus | CorpusStream,
    settings: Settings,
    embedder: Embedder,
    reuse: _Reuse | None = None,
) -> Segment:
    """Write a generation's files for `corpus` into `workspace`: its SQLite rows, passage and
    sentence vectors, document vectors, FAISS index and both BM25 indexes; no calibration, no
    manifest, nothing published. Vectors of passages and documents that `reuse` (the current
    generation's, `_reusable(settings)`) holds unchanged are copied, not embedded.

    The corpus is read once, a block at a time. A workspace holding the `PROGRESS` of an
    earlier call on a stream with the same key (killed part way) is continued: the blocks it
    wrote are passed over (read, not embedded), the steps it finished are not done again.
    """
    stream = corpus.stream() if isinstance(corpus, Corpus) else corpus
    reuse = reuse or _Reuse()
    progress = _Progress.of(workspace, stream.key)
    if "stream" in progress.done:
        for _ in stream.items:  # read through, for what the stream reports at its end
            pass
    else:
        _write_stream(workspace, stream, progress, embedder, reuse)
    db = tables.open_db(workspace / "store.sqlite")
    try:
        _finish(workspace, db, progress, embedder, reuse)
        digest = _hash_rows(tables.describe_documents(db))
    finally:
        db.close()
    dim = progress.dim or Vectors(workspace / "passages.npy").shape[1]
    return Segment(
        documents=progress.documents,
        passages=progress.passages,
        sentences=progress.sentences,
        dim=dim,
        embedded=progress.embedded,
        reused=progress.reused,
        documents_embedded=progress.documents_embedded,
        corpus_hash=digest,
        ivf=progress.ivf,
    )


def _finish(workspace: Path, db, progress: _Progress, embedder: Embedder, reuse: _Reuse) -> None:
    """The files written from the streamed ones, each step recorded as it is done: document
    vectors (by id, read back from the rows), the FAISS index and both BM25 indexes."""
    if "documents" not in progress.done:
        heads = tables.documents_by_id(db, documents.TEXT_CHARS)
        progress.documents_embedded = documents.write_sorted(
            workspace, heads, progress.documents, embedder, reuse.documents, reuse.document_rows
        )
        _done(workspace, progress, "documents")
    if "faiss" not in progress.done:
        progress.ivf = _write_faiss(workspace)
        _done(workspace, progress, "faiss")
    for name in LEXICAL:
        if name not in progress.done:
            LexicalWriter(workspace / name, progress.lexical.get(name)).finish()
            _done(workspace, progress, name)


def _done(workspace: Path, progress: _Progress, step: str) -> None:
    progress.done.append(step)
    progress.save(workspace)
    log.info("build: %s written", step)


def _manifest(segment: Segment, settings: Settings) -> dict:
    return {
        "model": settings.model,
        "int8": vector_space(settings)[1],
        "dim": int(segment.dim),
        "sentence_vectors": SENTENCE_VECTORS,
        "sentence_dtype": SENTENCE_DTYPE,
        "document_vectors": documents.DOCUMENT_VECTORS,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passage_chars": settings.passage_chars,
        "counts": {
            "documents": segment.documents,
            "passages": segment.passages,
            "sentences": segment.sentences,
        },
        "corpus_hash": segment.corpus_hash,
    }


def _calibration(workspace: Path, manifest: dict, old: dict, calibrate: Calibrate | None):
    """The abstention thresholds: kept when the corpus is unchanged, else measured afresh."""
    unchanged = all(old.get(key) == manifest[key] for key in ("corpus_hash", "passage_chars"))
    if unchanged and "calibration" in old:
        return old["calibration"]  # same corpus, same answer
    if calibrate is None:
        return None
    # `Probing`: what an `Index` finds, holding one probe's mapped pages and one text at a time
    with Probing(workspace, {**manifest, "files": {}}) as fresh_index:
        return calibrate(fresh_index)


def _resume_key(stream: CorpusStream, settings: Settings, embedder: Embedder) -> str:
    """What a killed build must share with a new one for the new one to continue it: the
    stream's sources, every setting and the embedder's kind ("" for a stream never resumed)."""
    if not stream.key:
        return ""
    parts = (stream.key, settings.model_dump_json(), type(embedder).__qualname__)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def build_index(
    corpus: Corpus | CorpusStream,
    settings: Settings,
    embedder: Embedder,
    calibrate: Calibrate | None = None,
) -> IngestReport:
    """Embed `corpus` (in memory, or a stream read as it is written) and publish it as the new
    current generation.

    Vectors of passages whose text is unchanged since the current generation are reused, so
    re-ingesting an unchanged folder embeds nothing (and keeps its calibration). Until
    `publish` returns, the previous generation stays current: a crash loses nothing, and a
    stream with a key continues, when built again, from what the crashed build wrote.

    Args:
        calibrate: run on the new index before publishing; its result is stored in the
            manifest under "calibration".
    """
    began = time.perf_counter()
    stream = corpus.stream() if isinstance(corpus, Corpus) else corpus
    reuse = _reusable(settings)
    try:
        key = _resume_key(stream, settings, embedder)[:24] or None
        with generations.writing(where(settings), resume=key) as workspace:
            segment = write_segment(workspace, stream, settings, embedder, reuse)
            manifest = _manifest(segment, settings) | ({"ivf": segment.ivf} if segment.ivf else {})
            calibration = _calibration(workspace, manifest, reuse.manifest, calibrate)
            if calibration is not None:
                manifest["calibration"] = calibration
                log.info("build: calibrated")
            (workspace / PROGRESS).unlink(missing_ok=True)
            name = generations.publish(workspace, manifest, where(settings))
    finally:
        reuse.close()
    return IngestReport(
        generation=name,
        documents=segment.documents,
        passages=segment.passages,
        sentences=segment.sentences,
        embedded=segment.embedded,
        documents_embedded=segment.documents_embedded,
        reused=segment.reused,
        seconds=time.perf_counter() - began,
        collection=settings.collection,
        read_seconds=stream.read_seconds,
        formats=dict(stream.formats),
    )


Reuse = _Reuse  # what `write_segment` may copy vectors from


def reusable(settings: Settings) -> Reuse:
    """The current generation's vectors for `write_segment` to copy (`_reusable`); close it."""
    return _reusable(settings)


def corpus_hash(docs: list[Document]) -> str:
    rows = (
        (d.id, d.content_hash, d.title, d.author, d.url) for d in sorted(docs, key=lambda d: d.id)
    )
    return _hash_rows(rows)


def _hash_rows(rows: Iterable[tuple]) -> str:
    """The corpus hash of documents given by id as (id, content_hash, title, author, url)."""
    digest = hashlib.sha256()
    for doc_id, content_hash, title, author, url in rows:
        digest.update(f"{doc_id}\0{content_hash}\0{title}\0{author}\0{url}\n".encode())
    return digest.hexdigest()
