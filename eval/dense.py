"""The plain whole-document dense baseline the eval reports beside Verbatim's own figures.

One vector per document, from its title and text as the model reads them (the embedder cuts at
its own limit: MiniLM reads the first 256 tokens), no BM25, no passages; documents ranked by
cosine with the question's vector. A change whose shown-order figures fall below these is seen
at once. The document vectors are computed with the engine's embedder (no second model) and
cached by content: the model and every document's id, title and content hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from verbatim.index import Store
    from verbatim.records import Embedder
    from verbatim.settings import Settings

# Characters of a document's text handed to the tokenizer: far past the 256 tokens MiniLM
# reads (a word piece is rarely over 20 characters), so only the tokenizing is saved.
TEXT_CHARS = 10_000
DEPTH = 10  # documents ranked per question


def document_text(title: str, text: str) -> str:
    """What the baseline embeds for one document: its title, then its text."""
    return f"{title}\n{text[:TEXT_CHARS]}" if title else text[:TEXT_CHARS]


def _key(store: Store, settings: Settings) -> str:
    digest = hashlib.sha256(f"{settings.model}\0{settings.backend == 'onnx-int8'}".encode())
    for doc_id in sorted(store.documents):
        meta = store.documents[doc_id]
        digest.update(f"\0{doc_id}\0{meta.title}\0{meta.content_hash}".encode())
    return digest.hexdigest()[:20]


def document_vectors(
    store: Store, embedder: Embedder, settings: Settings, cache: Path | None = None
) -> tuple[list[str], np.ndarray]:
    """Every document's id and baseline vector (unit length), read from `cache` when it holds
    them for this model and these documents, else embedded and stored there."""
    files = None
    if cache is not None:
        stem = cache / f"dense-{_key(store, settings)}"
        files = (stem.with_suffix(".json"), stem.with_suffix(".npy"))
        if files[0].exists() and files[1].exists():
            ids = json.loads(files[0].read_text(encoding="utf-8"))
            return ids, np.load(files[1], allow_pickle=False)
    ids = sorted(store.documents)
    texts = [document_text(store.documents[d].title, store.text(d)) for d in ids]
    vectors = np.asarray(embedder.encode(texts, progress=settings.progress), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if files is not None:
        files[0].parent.mkdir(parents=True, exist_ok=True)
        np.save(files[1], vectors, allow_pickle=False)
        files[0].write_text(json.dumps(ids), encoding="utf-8")
    return ids, vectors


def rank(ids: list[str], vectors: np.ndarray, question: np.ndarray, n: int = DEPTH) -> list[str]:
    """The `n` documents nearest `question` by cosine, best first (ties: the earlier id)."""
    q = np.asarray(question, dtype=np.float32)
    scores = vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))
    order = np.argsort(-scores, kind="stable")[:n]
    return [ids[int(i)] for i in order]


def comparison(metrics: dict) -> str:
    """Verbatim's shown-order figures beside the baseline's, with the difference."""
    ours, base = metrics.get("retrieval", {}), metrics.get("dense_baseline")
    if not base:
        return ""
    pairs = [
        ("nDCG@10", ours.get("ndcg@10"), base.get("ndcg@10")),
        ("recall@10", ours.get("recall@10"), base.get("recall@10")),
        ("source@1", metrics.get("quotes", {}).get("source@1"), base.get("source@1")),
    ]
    rows = ["documents as shown against the whole-document dense baseline"]
    rows.append(f"  {'figure':<12}{'verbatim':>10}{'dense':>10}{'difference':>12}")
    for name, mine, theirs in pairs:
        if mine is None or theirs is None:
            continue
        below = "  BELOW THE BASELINE" if mine < theirs else ""
        rows.append(f"  {name:<12}{mine:>10.3f}{theirs:>10.3f}{mine - theirs:>+12.3f}{below}")
    return "\n".join(rows)
