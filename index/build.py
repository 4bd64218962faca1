"""Building a generation: embed a corpus (reusing the current generation's vectors), write its
rows, vectors and search files, calibrate it and publish it locally (`build_index`)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verbatim.arrays import spans as sentence_span_rows
from verbatim.index import documents, generations, tables
from verbatim.index.lexical import Lexical
from verbatim.index.load import load_index, vector_space, where
from verbatim.index.local import Index, default_nprobe
from verbatim.index.records import IngestReport
from verbatim.index.vectors import Vectors, VectorWriter
from verbatim.records import Corpus, Document, Embedder, Passage
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


Calibrate = Callable[["Index"], dict]  # the new index -> its abstention thresholds


def passage_text(doc: Document, passage: Passage) -> str:
    """What is embedded for a passage: its text, with the title and heading as context."""
    context = " — ".join(x for x in (doc.title, passage.heading) if x)
    return f"{context}\n{passage.text}" if context else passage.text


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
        per_root = int(IVF_LISTS_PER_ROOT * np.sqrt(len(vectors)))
        nlist = max(1, min(per_root, len(vectors) // MIN_PER_LIST))
        fp16, inner = faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist, fp16, inner)
        size = min(len(vectors), TRAIN_PER_LIST * nlist)
        sample = np.random.default_rng(0).choice(len(vectors), size, False)
        index.train(vectors[np.sort(sample)])
        index.nprobe = default_nprobe(nlist)
    index.add(vectors)
    return index


def _tenth_best(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's 10th best cosine over `vectors`, by blocks of rows."""
    best = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    for at in range(0, len(vectors), RECALL_BLOCK):
        scores = np.concatenate([best, queries @ vectors[at : at + RECALL_BLOCK].T], axis=1)
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
    nprobe = FIRST_NPROBE
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
    # Each old sentence's [start, end) from its passage's start: a passage whose text is the
    # same but which the splitter now cuts differently must be embedded again.
    sent_from: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sent_to: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    passages: Vectors | None = None
    sentences: Vectors | None = None
    documents: Vectors | None = None  # document vectors, by `documents.old_rows`
    document_rows: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        for vectors in (self.passages, self.sentences, self.documents):
            if vectors is not None:
                vectors.close()


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
            passages=Vectors(old.path / "passages.npy"),
            sentences=Vectors(old.path / "sentences.npy"),
            documents=(
                Vectors(old.path / documents.FILE) if (old.path / documents.FILE).exists() else None
            ),
            document_rows=documents.old_rows(old.path, old.documents),
        )


def _same_split(passage: Passage, reuse: _Reuse) -> bool:
    """Whether the current generation holds `passage` split into the same sentences, so its
    vectors can be copied."""
    row = reuse.rows.get(passage.id)
    if row is None:
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
    reused: int  # passages whose vectors were copied from the current generation


@dataclass
class _Written:
    """What `_write_vectors` wrote: the vector width, and the work saved and done."""

    dim: int
    embedded: int  # texts that went through the embedder
    reused: int  # passages whose vectors were copied


def _block(
    passages: list[Passage], rows: range, docs: dict[str, Document], embedder, reuse: _Reuse
) -> _Block:
    """Vectors of passage `rows` and their sentences: freshly embedded for passages the current
    generation lacks (their texts, then their sentences', in one call), copied for the rest."""
    counts = np.array([len(passages[r].sentences) for r in rows], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    ids = [passages[r].id for r in rows]
    new = np.array([not _same_split(passages[r], reuse) for r in rows], dtype=bool)
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
    return _Block(pvecs, svecs, len(fresh), len(kept))


def _encode(embedder: Embedder, texts: list[str]) -> np.ndarray:
    """The embedder's float32 vectors of `texts`; nothing asked of it when there are none."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(embedder.encode(texts), dtype=np.float32)


def _reused_dim(reuse: _Reuse) -> int:
    if reuse.passages is None:
        raise ValueError("a block with neither new nor reused passages")
    return reuse.passages.shape[1]


def _write_vectors(workspace: Path, corpus: Corpus, embedder: Embedder, reuse: _Reuse) -> _Written:
    """Write passages.npy (float32) and sentences.npy (`SENTENCE_DTYPE`) block by block,
    embedding what the current generation lacks: the build holds one block's vectors, never
    the whole matrices."""
    passages = corpus.passages
    n_sentences = sum(len(p.sentences) for p in passages)
    docs = {d.id: d for d in corpus.documents}
    pfile = VectorWriter(workspace / "passages.npy", len(passages), "float32")
    sfile = VectorWriter(workspace / "sentences.npy", n_sentences, SENTENCE_DTYPE)
    embedded = reused = 0
    for rows in _blocks(passages):
        block = _block(passages, rows, docs, embedder, reuse)
        pfile.write(block.passages)
        sfile.write(block.sentences)
        embedded += block.embedded
        reused += block.reused
    dim = pfile.dim or (_reused_dim(reuse) if reuse.passages is not None else embedder.dim)
    pfile.close(dim)
    sfile.close(dim)
    return _Written(dim, embedded, reused)


def _probe_queries(path: Path, passages: np.ndarray) -> np.ndarray:
    """`PROBE_QUERIES` sentence vectors spread over the corpus (passages if it has none)."""
    sentences = Vectors(path)
    try:
        source = sentences if len(sentences) else passages
        pick = np.random.default_rng(0).choice(len(source), min(len(source), PROBE_QUERIES), False)
        return np.asarray(source[np.sort(pick)], dtype=np.float32)
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
        "int8": vector_space(settings)[1],
        "dim": int(dim),
        "sentence_vectors": SENTENCE_VECTORS,
        "sentence_dtype": SENTENCE_DTYPE,
        "document_vectors": documents.DOCUMENT_VECTORS,
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
    try:
        with generations.writing(where(settings)) as workspace:
            tables.write_rows(workspace / "store.sqlite", corpus.documents, corpus.passages)
            written = _write_vectors(workspace, corpus, embedder, reuse)
            documents_embedded = documents.write(
                workspace, corpus.documents, embedder, reuse.documents, reuse.document_rows
            )
            probes = _write_search_files(workspace, corpus)
            manifest = _manifest(corpus, settings, written.dim)
            manifest |= {"ivf": probes} if probes else {}
            calibration = _calibration(workspace, manifest, reuse.manifest, calibrate)
            if calibration is not None:
                manifest["calibration"] = calibration
            name = generations.publish(workspace, manifest, where(settings))
    finally:
        reuse.close()
    return IngestReport(
        generation=name,
        documents=len(corpus.documents),
        passages=len(corpus.passages),
        sentences=manifest["counts"]["sentences"],
        embedded=written.embedded,
        documents_embedded=documents_embedded,
        reused=written.reused,
        seconds=time.perf_counter() - began,
        collection=settings.collection,
        read_seconds=corpus.read_seconds,
        formats=dict(corpus.formats),
    )


def corpus_hash(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.id):
        digest.update(f"{d.id}\0{d.content_hash}\0{d.title}\0{d.author}\0{d.url}\n".encode())
    return digest.hexdigest()
