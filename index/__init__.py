"""Embeddings, FAISS and the on-disk generations of a collection.

Public entry points: `build_index(corpus, settings, embedder)` writes a new generation and makes
it current; `load_index(settings)` opens the current one as an `Index`; `open_store(settings)`
opens it in whichever store the settings name.

Modules: `records` (what an index hands out, and the `Store` protocol), `build` (the build
pipeline), `local` (the local `Index` and its search), `probing` (the new generation as
calibration reads it), `load` (opening a generation), `generations` (their lifecycle on disk),
`tables` (SQLite rows), `vectors` (`.npy` files), `lexical` (BM25), `catalog` (filters), `embed`
(the model), `qdrant` and `cluster` (extras).
"""

from verbatim.index.build import (
    SENTENCE_DTYPE,
    SENTENCE_VECTORS,
    build_index,
    passage_text,
    sentence_dtype,
    sentence_vectors,
)
from verbatim.index.embed import ModelEmbedder
from verbatim.index.load import load_index, open_store, where
from verbatim.index.local import Index
from verbatim.index.records import (
    Candidates,
    IngestReport,
    PassageRows,
    SentenceRows,
    Store,
    Thresholds,
)

__all__ = [
    "SENTENCE_DTYPE",
    "SENTENCE_VECTORS",
    "Candidates",
    "Index",
    "IngestReport",
    "ModelEmbedder",
    "PassageRows",
    "SentenceRows",
    "Store",
    "Thresholds",
    "build_index",
    "load_index",
    "open_store",
    "passage_text",
    "sentence_dtype",
    "sentence_vectors",
    "where",
]
