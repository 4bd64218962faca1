"""Writing a delta generation (`write_delta`): the documents a live update added or changed,
published on a full generation (its base), which keeps serving every other document. See
`segments.py` for how the two are searched together, and `engine.update_paths` for when a
change is written as a delta and when as a full generation (a merge)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from verbatim.index import documents, generations, tables
from verbatim.index.build import (
    SENTENCE_DTYPE,
    SENTENCE_VECTORS,
    corpus_hash,
    passage_text,
    sentence_vectors,
)
from verbatim.index.lexical import Lexical
from verbatim.index.load import vector_space, where
from verbatim.index.local import Index
from verbatim.index.records import IngestReport
from verbatim.index.segments import Segmented
from verbatim.index.vectors import Vectors, VectorWriter
from verbatim.records import Document, Embedder, Passage
from verbatim.settings import Settings


@dataclass
class Change:
    """A delta's content: every document it serves (those of the previous delta that stay,
    and those read afresh), their passages in order, and the base documents it hides."""

    documents: list[Document]
    passages: list[Passage]
    masked: set[str]  # base document ids no longer served from the base


def write_delta(
    current: Index | Segmented, change: Change, settings: Settings, embedder: Embedder
) -> IngestReport:
    """Publish `change` as a delta on `current`'s base, as the new current generation.

    A passage already in the previous delta or in the base, split into the same sentences,
    keeps its vectors; the rest are embedded. The abstention thresholds are the base's.
    """
    began = time.perf_counter()
    base = current.base if isinstance(current, Segmented) else current
    sources = [current.delta, base] if isinstance(current, Segmented) else [base]
    docs = {d.id: d for d in change.documents}
    with generations.writing(where(settings)) as workspace:
        tables.write_rows(workspace / "store.sqlite", change.documents, change.passages)
        embedded, reused, dim = _write_vectors(workspace, change, docs, embedder, sources)
        _write_document_vectors(workspace, change.documents, embedder, base)
        _write_search_files(workspace, change, docs)
        manifest = _manifest(base, change, settings, dim)
        name = generations.publish(workspace, manifest, where(settings))
    return IngestReport(
        generation=name,
        documents=manifest["counts"]["documents"],
        passages=manifest["counts"]["passages"],
        sentences=manifest["counts"]["sentences"],
        embedded=embedded,
        reused=reused,
        seconds=time.perf_counter() - began,
        collection=settings.collection,
    )


def _embedded_alike(passage: Passage, title: str, index: Index, row: int) -> bool:
    """Whether passage `row` of `index` is `passage` under the same `title` and heading (what it
    is embedded with, `build.passage_text`), split into the same sentences."""
    if index.passage_heading[row] != passage.heading:
        return False
    if index.documents[passage.doc_id].title != title:
        return False
    lo, hi = int(index.sent_lo[row]), int(index.sent_hi[row])
    if hi - lo != len(passage.sentences):
        return False
    shift = int(index.passage_start[row]) - passage.start
    starts = np.array([s.start for s in passage.sentences], dtype=np.int64) + shift
    ends = np.array([s.end for s in passage.sentences], dtype=np.int64) + shift
    return bool(np.array_equal(index.sent_start[lo:hi], starts)) and bool(
        np.array_equal(index.sent_end[lo:hi], ends)
    )


def _found(passage: Passage, title: str, sources: list[Index], rows: list[dict[str, int]]):
    """The first source holding `passage` as it is embedded now, and its row there."""
    for index, where_is in zip(sources, rows, strict=True):
        row = where_is.get(passage.id)
        if row is not None and _embedded_alike(passage, title, index, row):
            return index, row
    return None


def _write_vectors(
    workspace: Path, change: Change, docs: dict[str, Document], embedder, sources: list[Index]
) -> tuple[int, int, int]:
    """passages.npy and sentences.npy of the delta (small: held whole). Returns the texts
    embedded, the passages whose vectors were copied, and the vector width."""
    rows = [{pid: row for row, pid in enumerate(s.passage_ids)} for s in sources]
    dim = int(sources[-1].manifest["dim"])
    pvecs = np.zeros((len(change.passages), dim), dtype=np.float32)
    svecs: list[np.ndarray] = []
    todo: list[int] = []
    for i, p in enumerate(change.passages):
        hit = _found(p, docs[p.doc_id].title, sources, rows)
        if hit is None:
            todo.append(i)
            svecs.append(np.zeros((len(p.sentences), dim), dtype=np.float32))
            continue
        index, row = hit
        pvecs[i] = np.asarray(index.passage_vectors[[row]], dtype=np.float32)[0]
        lo, hi = int(index.sent_lo[row]), int(index.sent_hi[row])
        svecs.append(np.asarray(index.sentence_vectors[np.arange(lo, hi)], dtype=np.float32))
    embedded = _embed(change, docs, embedder, todo, pvecs, svecs)
    sentences = np.concatenate(svecs) if svecs else np.zeros((0, dim), dtype=np.float32)
    for name, vectors, dtype in (
        ("passages.npy", pvecs, "float32"),
        ("sentences.npy", sentences, SENTENCE_DTYPE),
    ):
        writer = VectorWriter(workspace / name, len(vectors), dtype)
        writer.write(vectors)
        writer.close(dim)
    return embedded, len(change.passages) - len(todo), dim


def _embed(change: Change, docs, embedder, todo: list[int], pvecs, svecs) -> int:
    """Embed the passages at `todo` and their sentences into `pvecs` and `svecs`."""
    if not todo:
        return 0
    passages = [change.passages[i] for i in todo]
    texts = [passage_text(docs[p.doc_id], p) for p in passages]
    texts += [docs[p.doc_id].text[s.start : s.end] for p in passages for s in p.sentences]
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    pvecs[todo] = vectors[: len(todo)]
    at = len(todo)
    for i, p in zip(todo, passages, strict=True):
        svecs[i] = vectors[at : at + len(p.sentences)]
        at += len(p.sentences)
    return len(texts)


def _write_document_vectors(workspace: Path, docs: list[Document], embedder, base: Index) -> None:
    """The delta's document vectors, copying those the base has for the same document."""
    old_file = base.path / documents.FILE
    old = Vectors(old_file) if old_file.exists() else None
    try:
        rows = documents.old_rows(base.path, base.documents) if old is not None else None
        documents.write(workspace, docs, embedder, old, rows)
    finally:
        if old is not None:
            old.close()


def _write_search_files(workspace: Path, change: Change, docs: dict[str, Document]) -> None:
    """An exact FAISS index (a delta is small) and both BM25 indexes."""
    import faiss

    vectors = np.load(workspace / "passages.npy", allow_pickle=False)
    searcher = faiss.IndexFlatIP(vectors.shape[1])
    searcher.add(vectors)
    faiss.write_index(searcher, str(workspace / "passages.faiss"))
    Lexical.build(passage_text(docs[p.doc_id], p) for p in change.passages).save(workspace / "bm25")
    sentences = (docs[p.doc_id].text[s.start : s.end] for p in change.passages for s in p.sentences)
    Lexical.build(sentences).save(workspace / "bm25-sentences")


def _served(base: Index, change: Change) -> tuple[dict, str]:
    """What the base and the delta serve together: counts, and the corpus hash a full build
    of the same documents would record."""
    live = np.fromiter((d not in change.masked for d in base.passage_doc), bool)
    base_sentences = int((base.sent_hi - base.sent_lo)[live].sum())
    kept = [m for i, m in base.documents.items() if i not in change.masked]
    counts = {
        "documents": len(kept) + len(change.documents),
        "passages": int(live.sum()) + len(change.passages),
        "sentences": base_sentences + sum(len(p.sentences) for p in change.passages),
    }
    return counts, corpus_hash(cast(list, kept) + change.documents)


def _manifest(base: Index, change: Change, settings: Settings, dim: int) -> dict:
    if sentence_vectors(base.manifest) != SENTENCE_VECTORS:
        raise ValueError("the base's sentence vectors were made another way; rebuild it whole")
    counts, digest = _served(base, change)
    return {
        "model": settings.model,
        "int8": vector_space(settings)[1],
        "dim": dim,
        "sentence_vectors": SENTENCE_VECTORS,
        "sentence_dtype": SENTENCE_DTYPE,
        "document_vectors": documents.DOCUMENT_VECTORS,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "passage_chars": settings.passage_chars,
        "counts": counts,
        "corpus_hash": digest,
        "calibration": base.manifest.get("calibration"),
        "delta": {
            "base": base.generation,
            "masked": sorted(change.masked),
            "documents": len(change.documents),
            "passages": len(change.passages),
        },
    }
