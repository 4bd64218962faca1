"""A generation's document vectors (`documents.npy`): one unit vector per document, of its title
and the start of its text as the model reads them, rows in the order of the documents' ids.

Passages are scored one by one, but an answer is often a whole document about one problem (a
therapist's reply to one person); the document's own vector is that whole view, and answering
adds its cosine to each of its passages' scores (`answer.DOCUMENT_WEIGHT`). A re-ingest reuses
the vector of a document whose title and text are unchanged. Generations built before these
vectors answer without them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from verbatim.index.vectors import Vectors, VectorWriter, open_vectors
from verbatim.records import Document, DocumentMeta, Embedder

# How the document vectors are made, recorded in the manifest ("document_vectors").
DOCUMENT_VECTORS = "title-and-text"
FILE = "documents.npy"
# Characters of a document's text handed to the tokenizer: far past the 256 word pieces MiniLM
# reads (one is rarely over 20 characters), so only tokenizing the rest is saved.
TEXT_CHARS = 10_000
# Documents embedded and written at a time. A block holds each document's first `TEXT_CHARS`
# characters two or three times over (the row, the text embedded, the embedder's copy): about
# 32 KB a document. 65,536 held every document of a million passages at once (20,000 of 45 KB:
# 762 MB, 2.3 GB at three million, #34); 4,096 hold 172 MB whatever the corpus, and embed the
# same vectors (the model encodes each text alone of its batch, bit for bit).
BLOCK = 4_096


def document_text(title: str, text: str) -> str:
    """What is embedded for a document: its title, then its text."""
    return f"{title}\n{text[:TEXT_CHARS]}" if title else text[:TEXT_CHARS]


def reuse_key(doc_id: str, title: str, content_hash: str) -> str:
    """What a document's vector depends on: a vector is reused only when all three are equal."""
    return f"{doc_id}\0{title}\0{content_hash}"


def old_rows(path: Path, documents: dict[str, DocumentMeta]) -> dict[str, int]:
    """`reuse_key` -> row in generation `path`'s documents.npy (nothing when it has none)."""
    if not (path / FILE).exists():
        return {}
    return {
        reuse_key(d, documents[d].title, documents[d].content_hash): row
        for row, d in enumerate(sorted(documents))
    }


def write(
    workspace: Path,
    documents: list[Document],
    embedder: Embedder,
    old: Vectors | None = None,
    rows: dict[str, int] | None = None,
) -> int:
    """Write the documents' vectors (float32) block by block, embedding those whose `reuse_key`
    has no row in the `old` file and copying the rest. Returns how many were embedded."""
    docs = sorted(documents, key=lambda d: d.id)
    heads = ((d.id, d.title, d.text[:TEXT_CHARS], d.content_hash) for d in docs)
    return write_sorted(workspace, heads, len(docs), embedder, old, rows)


def write_sorted(
    workspace: Path,
    documents: Iterable[tuple[str, str, str, str]],
    count: int,
    embedder: Embedder,
    old: Vectors | None = None,
    rows: dict[str, int] | None = None,
) -> int:
    """`write` for `count` documents given by id as (id, title, the start of the text (at least
    `TEXT_CHARS`), content_hash), read a block at a time (a streamed build reads them from
    its SQLite file)."""
    rows = rows if old is not None and rows else {}
    writer = VectorWriter(workspace / FILE, count, "float32")
    embedded = 0
    it = iter(documents)
    while block := list(itertools.islice(it, BLOCK)):
        writer.write(_block(block, embedder, old, rows))
        embedded += sum(reuse_key(d[0], d[1], d[3]) not in rows for d in block)
    writer.close(writer.dim or (old.shape[1] if old is not None else embedder.dim))
    return embedded


def _block(
    docs: list[tuple[str, str, str, str]],
    embedder: Embedder,
    old: Vectors | None,
    rows: dict[str, int],
) -> np.ndarray:
    """The vectors of `docs`: embedded (unit length) where `rows` has none, else read from `old`."""
    keys = [reuse_key(d[0], d[1], d[3]) for d in docs]
    todo = [i for i, key in enumerate(keys) if key not in rows]
    kept = [i for i, key in enumerate(keys) if key in rows]
    fresh = np.zeros((0, 0), dtype=np.float32)
    if todo:
        texts = [document_text(docs[i][1], docs[i][2]) for i in todo]
        fresh = np.asarray(embedder.encode(texts), dtype=np.float32)
        fresh /= np.maximum(np.linalg.norm(fresh, axis=1, keepdims=True), 1e-12)
    dim = fresh.shape[1] if todo else old.shape[1] if old is not None else embedder.dim
    out = np.empty((len(docs), dim), dtype=np.float32)
    if todo:
        out[todo] = fresh
    if kept and old is not None:
        out[kept] = old[np.array([rows[keys[i]] for i in kept], dtype=np.int64)]
    return out


class DocumentVectors:
    """A generation's document vectors, by passage: `cosines` gives, for some passage rows, their
    documents' cosines with a question."""

    def __init__(self, path: Path, doc_ids: list[str], passage_doc: list[str]) -> None:
        self.vectors = open_vectors(path / FILE)
        self.row = {doc_id: i for i, doc_id in enumerate(sorted(doc_ids))}
        self.of_passage = np.fromiter(
            (self.row[d] for d in passage_doc), np.int64, len(passage_doc)
        )

    @classmethod
    def load(cls, path: Path, doc_ids: list[str], passage_doc: list[str]) -> DocumentVectors | None:
        """The vectors of generation `path`, whose documents are `doc_ids` and whose passages'
        documents are `passage_doc`; None when it was built without them."""
        return cls(path, doc_ids, passage_doc) if (path / FILE).exists() else None

    def cosines(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Each passage row's document's cosine with `vector` (float32)."""
        wanted = self.of_passage[rows]
        distinct, back = np.unique(wanted, return_inverse=True)
        return (np.asarray(self.vectors[distinct], dtype=np.float32) @ vector)[back]

    def of(self, doc_id: str) -> np.ndarray:
        """Document `doc_id`'s vector."""
        return np.asarray(self.vectors[self.row[doc_id]], dtype=np.float32)

    def close(self) -> None:
        if isinstance(self.vectors, Vectors):
            self.vectors.close()
