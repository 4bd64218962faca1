"""The index in Qdrant: `QdrantStore`, the `Store` for `VERBATIM_STORE=qdrant`, and `publish`.

A generation of a collection is three Qdrant collections, named
`verbatim-<collection>-<generation>-{passages,sentences,documents}`, and the alias
`verbatim-<collection>` names the passages collection of the current generation:
- passages: point id = passage row; vectors "dense" (the passage vector, dot product: the
  vectors are unit length, so it is the cosine, without Qdrant renormalising them) and "bm25",
  a sparse vector of bm25s's own term weights for this generation (ids = the generation's
  vocabulary), so BM25 is the local store's whatever the shard count: no per-shard IDF;
  payload: document, heading, role, passage id, offsets, sentence rows;
- sentences: point id = sentence row; vector "dense"; payload `passage` (row, indexed),
  `start`, `end` and `terms` (its indexed terms, for coverage);
- documents: one point per document (id: uuid5 of its id) with its text and metadata, and
  one point with the manifest and the passage vocabulary (terms and IDF).

Publishing is one alias switch (delete and create in one request), so readers see the old
generation or the new one; the previous generation is kept until the next publish. A store
resolves the alias once, when it is opened, and reads that generation by name from then on, so
its two queries of one question never straddle a switch (reopen it to follow one, as `serve`
reloads the local store).

qdrant-client is an optional extra (`pip install ".[qdrant]"`): nothing here is imported unless
`VERBATIM_STORE=qdrant`.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from verbatim.errors import IndexCorrupt, IndexMissing, VerbatimError
from verbatim.index import generations, tables
from verbatim.index.build import EXACT_SEARCH_LIMIT
from verbatim.index.catalog import Catalog
from verbatim.index.lexical import SPLIT, Lexical, stemmer
from verbatim.index.load import where
from verbatim.index.local import TEXT_CACHE, Index
from verbatim.index.records import Candidates, PassageRows, SentenceRows, Thresholds
from verbatim.records import Document, DocumentMeta, Filters
from verbatim.settings import COLLECTION_RULE, DEFAULT_COLLECTION, Settings

PREFIX = "verbatim"
META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "verbatim:meta"))
BATCH = 256  # points per upsert
PASSAGE_FIELDS = ("doc", "heading", "role", "pid", "start", "end", "sent_lo", "sent_hi")
DOCUMENT_FIELDS = DocumentMeta._fields
# A generation's collections; a streaming ingest adds the fourth while it writes (`stream`).
KINDS = ("passages", "sentences", "documents", "terms")


def _qdrant() -> Any:
    """The qdrant_client package, imported on first use only: it is the optional extra
    `qdrant`, not a dependency of `pip install .`.

    Raises:
        VerbatimError: it is not installed; the message says how to install it.
    """
    try:
        import qdrant_client
    except ImportError:
        raise VerbatimError(
            "VERBATIM_STORE=qdrant needs qdrant-client: pip install 'verbatim[qdrant]' (or "
            "'.[qdrant]' in a checkout), or set VERBATIM_STORE=local"
        ) from None
    return qdrant_client


def _models() -> Any:
    _qdrant()
    from qdrant_client import models

    return models


@functools.cache
def connect(url: str, api_key: str | None = None) -> Any:
    """One client per address and process: an http(s):// server or cluster, or qdrant-client's
    local mode in a folder or `:memory:` (which only this process sees). Each is closed at
    exit, before the interpreter shuts down: left to its `__del__` in the shutdown, local mode
    fails to release its lock ("Exception ignored ... sys.meta_path is None")."""
    client = _qdrant().QdrantClient
    if url == ":memory:":
        made = client(location=":memory:")
    elif url.startswith(("http://", "https://")):
        made = client(url=url, api_key=api_key)
    else:
        made = client(path=url)
    atexit.register(made.close)
    return made


def client_for(settings: Settings) -> Any:
    return connect(
        settings.qdrant_url or str(settings.data_dir / "qdrant"), settings.qdrant_api_key
    )


def alias(collection: str) -> str:
    return f"{PREFIX}-{collection}"


def doc_point(doc_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"verbatim:doc:{doc_id}"))


class _Terms(Lexical):
    """`Lexical.query` over a vocabulary read back from Qdrant (no bm25s index here)."""

    def __init__(self, terms: list[str], idf: list[float]) -> None:
        self._vocab = {t: i for i, t in enumerate(terms)}
        self._idf = np.asarray(idf, dtype=np.float64)
        self._stem = stemmer()
        from bm25s.stopwords import STOPWORDS_EN

        self._stopwords = frozenset(STOPWORDS_EN)

    def ids(self, terms: list[str]) -> list[int]:
        """The ids of indexed `terms` (as `query` returns them): the sparse vectors' indices."""
        return [self._vocab[t] for t in terms]


@functools.cache
def _analysis() -> tuple[Any, frozenset[str]]:
    from bm25s.stopwords import STOPWORDS_EN

    return stemmer(), frozenset(STOPWORDS_EN)


def tokens(text: str) -> list[str]:
    """`text`'s indexed terms, repeats kept: the analysis `Lexical.build` gives bm25s
    (lower case, its word pattern, English stop words dropped, then stemmed)."""
    stem, stopwords = _analysis()
    return stem([t for t in SPLIT(text.lower()) if t not in stopwords])


def _create(client: Any, name: str, dim: int, sparse: bool, shards: int, replicas: int) -> None:
    """A collection of the new generation, sharded and replicated as settings say (a server's
    settings; local mode has one shard whatever is asked). Documents are read one by one, for
    quotes, so their texts stay on disk."""
    m = _models()
    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(
        name,
        vectors_config={}
        if dim == 0
        else {"dense": m.VectorParams(size=dim, distance=m.Distance.DOT)},
        sparse_vectors_config={"bm25": m.SparseVectorParams()} if sparse else None,
        shard_number=shards,
        replication_factor=replicas,
        on_disk_payload=dim == 0,
    )


def _upsert(client: Any, name: str, points: Iterator) -> None:
    """Write `points` a batch at a time, built as they are written: a generation's points as
    Python objects take about 27 KB each, too many to hold at once past a few thousand."""
    while batch := list(itertools.islice(points, BATCH)):
        client.upsert(name, points=batch, wait=True)


def _passage_points(index: Index) -> Iterator:
    m = _models()
    ptr, ids, values = index.lexical.weights()
    for at in range(0, len(index.passage_ids), BATCH):
        rows = np.arange(at, min(at + BATCH, len(index.passage_ids)))
        vectors = np.asarray(index.passage_vectors[rows], np.float32)
        for row, dense in zip(rows.tolist(), vectors, strict=True):
            lo, hi = int(ptr[row]), int(ptr[row + 1])
            vector: dict = {"dense": dense.tolist()}
            if hi > lo:
                vector["bm25"] = m.SparseVector(
                    indices=ids[lo:hi].tolist(), values=values[lo:hi].tolist()
                )
            yield m.PointStruct(id=row, vector=vector, payload=_passage_payload(index, row))


def _passage_payload(index: Index, row: int) -> dict:
    return {
        "doc": index.passage_doc[row],
        "heading": index.passage_heading[row],
        "role": index.passage_role[row],
        "pid": index.passage_ids[row],
        "start": int(index.passage_start[row]),
        "end": int(index.passage_end[row]),
        "sent_lo": int(index.sent_lo[row]),
        "sent_hi": int(index.sent_hi[row]),
    }


def _sentence_points(index: Index) -> Iterator:
    m = _models()
    terms, _ = index.sentence_lexical.vocabulary()
    ptr, ids, _ = index.sentence_lexical.weights()
    for at in range(0, len(index.sent_start), BATCH):
        rows = np.arange(at, min(at + BATCH, len(index.sent_start)))
        vectors = np.asarray(index.sentence_vectors[rows], np.float32)
        for row, dense in zip(rows.tolist(), vectors, strict=True):
            payload = {
                "passage": int(index.sent_passage[row]),
                "start": int(index.sent_start[row]),
                "end": int(index.sent_end[row]),
                "terms": [terms[t] for t in ids[ptr[row] : ptr[row + 1]]],
            }
            yield m.PointStruct(id=row, vector={"dense": dense.tolist()}, payload=payload)


def _document_points(index: Index) -> Iterator:
    m = _models()
    terms, idf = index.lexical.vocabulary()
    meta = {"manifest": json.dumps(index.manifest), "terms": terms, "idf": idf.tolist()}
    yield m.PointStruct(id=META_ID, vector={}, payload=meta)
    vectors = index.document_vectors
    for doc_id, doc in index.documents.items():
        payload = {**doc._asdict(), "text": index.text(doc_id)}
        if vectors is not None:  # `documents.py`: read whole by `QdrantStore`, as kept locally
            payload["vector"] = vectors.of(doc_id).tolist()
        yield m.PointStruct(id=doc_point(doc_id), vector={}, payload=payload)


def publish(index: Index, client: Any, shards: int = 1, replicas: int = 1) -> str:
    """Copy the local generation `index` into Qdrant and make it current: one alias switch.
    Generations older than the one it replaces are deleted. Returns the passages collection.

    Args:
        shards, replicas: each collection's `shard_number` and `replication_factor` on a
            cluster (`VERBATIM_QDRANT_SHARDS`, `VERBATIM_QDRANT_REPLICAS`).
    """
    base = f"{alias(index.collection)}-{index.generation}"
    dim = int(index.manifest["dim"])
    for kind, size, sparse, points in (
        ("passages", dim, True, _passage_points(index)),
        ("sentences", dim, False, _sentence_points(index)),
        ("documents", 0, False, _document_points(index)),
    ):
        _create(client, f"{base}-{kind}", size, sparse, shards, replicas)
        _upsert(client, f"{base}-{kind}", points)
    return _switch(client, index.collection, base)


def _switch(client: Any, collection: str, base: str) -> str:
    """Make generation `base` (its collections written) current: payload indexes, one alias
    switch, generations but this one and the one it replaces deleted, and a streamed one's
    `terms` collection. Returns the passages collection."""
    m = _models()
    with warnings.catch_warnings():  # local mode needs none, and says so; a server does
        warnings.filterwarnings("ignore", "Payload indexes have no effect in the local Qdrant")
        client.create_payload_index(  # answering reads sentences by id; this is for others
            f"{base}-sentences", "passage", field_schema=m.PayloadSchemaType.INTEGER, wait=True
        )
        client.create_payload_index(
            f"{base}-passages", "doc", field_schema=m.PayloadSchemaType.KEYWORD, wait=True
        )
    previous = current(client, collection)
    if previous != f"{base}-passages":
        switch: list = [
            m.CreateAliasOperation(
                create_alias=m.CreateAlias(
                    collection_name=f"{base}-passages", alias_name=alias(collection)
                )
            )
        ]
        if previous is not None:
            drop = m.DeleteAlias(alias_name=alias(collection))
            switch.insert(0, m.DeleteAliasOperation(delete_alias=drop))
        client.update_collection_aliases(change_aliases_operations=switch)
        _prune(client, collection, keep={base, (previous or "").removesuffix("-passages")})
    # else switched already, by a run killed after it: the generation it replaced is not
    # known here, so none is deleted (the next publish prunes them)
    if client.collection_exists(f"{base}-terms"):
        client.delete_collection(f"{base}-terms")
    return f"{base}-passages"


def current(client: Any, collection: str) -> str | None:
    """The passages collection the alias names, or None."""
    for item in client.get_aliases().aliases:
        if item.alias_name == alias(collection):
            return item.collection_name
    return None


def current_generation(client: Any, collection: str) -> str | None:
    """The name of the generation the alias names (its collections are `alias-<name>-<kind>`),
    or None."""
    name = current(client, collection)
    return name.removeprefix(f"{alias(collection)}-").removesuffix("-passages") if name else None


def _required_generation(client: Any, collection: str) -> str:
    """`current_generation`, which must exist.

    Raises:
        IndexMissing: the collection has no published generation; the message names the fix.
    """
    generation = current_generation(client, collection)
    if generation is None:
        raise IndexMissing(
            f"no generation of collection {collection!r} in Qdrant (alias "
            f"{alias(collection)!r}); run `verbatim ingest` with VERBATIM_STORE=qdrant"
        )
    return generation


def manifest(client: Any, collection: str) -> tuple[str, dict]:
    """The current generation of `collection` and its manifest, read alone (opening a
    `QdrantStore` reads every document's metadata too).

    Raises:
        IndexMissing: the collection has no published generation.
    """
    generation = _required_generation(client, collection)
    base = f"{alias(collection)}-{generation}"
    (meta,) = client.retrieve(f"{base}-documents", [META_ID], with_payload=["manifest"])
    return generation, json.loads(meta.payload["manifest"])


def collection_names(client: Any) -> list[str]:
    """The collections with a published generation (an alias): the default one first."""
    names = {
        item.alias_name.removeprefix(f"{PREFIX}-")
        for item in client.get_aliases().aliases
        if item.alias_name.startswith(f"{PREFIX}-")
    }
    valid = [n for n in names if re.fullmatch(COLLECTION_RULE, n)]
    return sorted(valid, key=lambda n: (n != DEFAULT_COLLECTION, n))


def remove_collection(client: Any, collection: str) -> None:
    """Unpublish `collection` (its alias goes first, so readers stop finding it), then delete
    its generations."""
    if current(client, collection) is not None:
        m = _models()
        drop = m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias(collection)))
        client.update_collection_aliases(change_aliases_operations=[drop])
    _prune(client, collection, keep=set())


def _prune(client: Any, collection: str, keep: set[str]) -> None:
    """Delete this collection's generations but `keep` (names less their kind). Generation
    names hold one '-' (`generations.publish`), so another collection's, whose name begins with
    this one's and a '-', is never taken for one of them."""
    mine = re.compile(re.escape(alias(collection)) + r"-[^-]+-[^-]+-" + f"({'|'.join(KINDS)})")
    for item in client.get_collections().collections:
        name = item.name
        if mine.fullmatch(name) and name.rsplit("-", 1)[0] not in keep:
            client.delete_collection(name)


class QdrantStore:
    """A published generation of one collection, read from Qdrant: the `Store` answering uses
    with `VERBATIM_STORE=qdrant`. It holds the documents' metadata (not their texts) and the
    passage vocabulary in memory, as the local store does; everything else is asked of Qdrant.
    Shared between threads as its client is: a server's client is; local mode is meant for
    one process and tests."""

    store = "qdrant"

    def __init__(self, client: Any, collection: str, generation: str | None = None) -> None:
        """Args:
        generation: read this generation, published or not (a streaming ingest calibrates
            against the one it is writing); by default the one the alias names."""
        self.client, self.collection = client, collection
        self.generation = generation or _required_generation(client, collection)
        self.base = f"{alias(collection)}-{self.generation}"
        self.documents: dict[str, DocumentMeta] = {}
        meta = None
        vectors: dict[str, list[float]] = {}
        for point in self._scroll(f"{self.base}-documents", exclude=["text"]):
            if point.id == META_ID:
                meta = point.payload
            else:
                doc = DocumentMeta(*(point.payload[f] for f in DOCUMENT_FIELDS))
                self.documents[doc.id] = doc
                if "vector" in point.payload:
                    vectors[doc.id] = point.payload["vector"]
        if meta is None:
            raise IndexCorrupt(f"{self.base}-documents has no manifest; publish it again")
        self.documents = dict(sorted(self.documents.items()))  # by id, as the local store
        self.manifest: dict = json.loads(meta["manifest"])
        self._terms = _Terms(meta["terms"], meta["idf"])
        self.catalog = Catalog(self.documents, [])
        self._doc_ids = list(self.documents)
        self._doc_row = {doc_id: i for i, doc_id in enumerate(self._doc_ids)}
        self._doc_vectors = (
            np.array([vectors[d] for d in self._doc_ids], dtype=np.float32)
            if vectors and len(vectors) == len(self._doc_ids)
            else None
        )
        self._recent_texts = functools.lru_cache(maxsize=TEXT_CACHE)(self._read_text)

    def _scroll(self, name: str, exclude: list[str], limit: int = 1024):
        """Every point of `name`, with its payload less the fields `exclude` names."""
        payload = _models().PayloadSelectorExclude(exclude=exclude)
        offset = None
        while True:
            points, offset = self.client.scroll(
                name, limit=limit, offset=offset, with_payload=payload, with_vectors=False
            )
            yield from points
            if offset is None:
                return

    def __enter__(self) -> QdrantStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: the client is shared (`connect`)."""

    @property
    def thresholds(self) -> Thresholds | None:
        """Calibrated abstention thresholds (passage, sentence), if the index has them."""
        return generations.thresholds(self.manifest)

    def query_terms(self, text: str) -> tuple[list[str], np.ndarray]:
        return self._terms.query(text)

    def allow(self, filters: Filters) -> np.ndarray:
        """A boolean mask over the documents (by id), which `candidates` sends as a filter."""
        return self.catalog.documents(filters)

    def text(self, doc_id: str) -> str:
        return self._recent_texts(doc_id)

    def _read_text(self, doc_id: str) -> str:
        points = self.client.retrieve(
            f"{self.base}-documents", [doc_point(doc_id)], with_payload=["text"]
        )
        if not points:
            raise KeyError(doc_id)
        return points[0].payload["text"]

    def document(self, doc_id: str) -> Document:
        return tables.document(self.documents[doc_id], self.text(doc_id))

    def candidates(
        self,
        vector: np.ndarray,
        terms: list[str],
        n: int,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> Candidates:
        """One `query_points`: a dense and a sparse (BM25) prefetch of `n` each, fused by RRF
        only to return their union; the scores that rank are computed here from the returned
        vectors, exactly as the local store computes them (`Index.candidates`)."""
        m = _models()
        flt = None
        if allowed is not None:
            if not allowed.any():
                return self._gather([], vector, terms, n)
            if not allowed.all():
                listed = [d for d, ok in zip(self._doc_ids, allowed.tolist(), strict=True) if ok]
                flt = m.Filter(must=[m.FieldCondition(key="doc", match=m.MatchAny(any=listed))])
        ids = self._terms.ids(terms)
        # Exact up to the size the local store searches exactly, approximate (HNSW) above.
        exact = m.SearchParams(exact=self.manifest["counts"]["passages"] <= EXACT_SEARCH_LIMIT)
        prefetch = [
            m.Prefetch(query=vector.tolist(), using="dense", limit=n, filter=flt, params=exact)
        ]
        if ids:
            sparse = m.SparseVector(indices=ids, values=[1.0] * len(ids))
            prefetch.append(m.Prefetch(query=sparse, using="bm25", limit=n, filter=flt))
        hits = self.client.query_points(
            f"{self.base}-passages",
            prefetch=prefetch,
            query=m.FusionQuery(fusion=m.Fusion.RRF),
            limit=2 * n,
            with_payload=True,
            with_vectors=True,
        ).points
        if exclude is not None:  # after the top n, as the local store leaves it out
            hits = [p for p in hits if p.id != exclude]
        return self._gather(hits, vector, terms, n)

    def _gather(self, hits: list, vector: np.ndarray, terms: list[str], n: int) -> Candidates:
        """The union of the two prefetches, less what local mode adds and the local store
        does not (sparse hits scoring 0), scored as the local store scores it."""
        hits = sorted(hits, key=lambda p: p.id)
        rows = np.array([p.id for p in hits], dtype=np.int64)
        passages = self._rows(hits)
        ids = self._terms.ids(terms)
        bm25 = np.zeros(len(hits), dtype=np.float32)
        cover = np.zeros((len(hits), len(terms)), dtype=bool)
        for i, p in enumerate(hits):
            sparse = p.vector.get("bm25") if isinstance(p.vector, dict) else None
            weight = dict(zip(sparse.indices, sparse.values, strict=True)) if sparse else {}
            total = np.float32(0)
            for j, t in enumerate(ids):  # term by term in float32, as bm25s sums them
                if t in weight:
                    total += np.float32(weight[t])
                    cover[i, j] = True
            bm25[i] = total
        dense = passages.vectors @ vector
        near = np.lexsort((rows, -dense))[:n]  # the dense prefetch: ties to the lower row
        lexical = np.flatnonzero(bm25 > 0)
        lexical = lexical[np.argsort(-bm25[lexical], kind="stable")[:n]]
        keep = np.union1d(near, lexical).astype(np.int64)
        kept = _subset(passages, keep)
        return Candidates(
            passages=kept,
            dense=dense[keep],
            bm25=bm25[keep],
            cover=cover[keep],
            document=self._document_cosines(kept.doc, vector),
        )

    def _document_cosines(self, docs, vector: np.ndarray) -> np.ndarray | None:
        """Each passage's document's cosine with `vector` (`documents.py`), as the local store
        gives it; None for a generation published without document vectors."""
        if self._doc_vectors is None:
            return None
        rows = np.fromiter((self._doc_row[d] for d in docs), np.int64, len(docs))
        return self._doc_vectors[rows] @ vector.astype(np.float32)

    def _rows(self, points: list) -> PassageRows:
        dim = int(self.manifest["dim"])
        get = [[p.payload[f] for p in points] for f in PASSAGE_FIELDS]
        doc, heading, role, pid, start, end, lo, hi = get
        return PassageRows(
            rows=np.array([p.id for p in points], dtype=np.int64),
            vectors=np.array([p.vector["dense"] for p in points], dtype=np.float32).reshape(
                -1, dim
            ),
            doc=doc,
            heading=heading,
            role=role,
            ids=pid,
            start=np.array(start, dtype=np.int64),
            end=np.array(end, dtype=np.int64),
            sent_lo=np.array(lo, dtype=np.int64),
            sent_hi=np.array(hi, dtype=np.int64),
        )

    def passages(self, rows: np.ndarray) -> PassageRows:
        points = self.client.retrieve(
            f"{self.base}-passages", rows.tolist(), with_payload=True, with_vectors=["dense"]
        )
        return self._rows(sorted(points, key=lambda p: p.id))

    def sentences(self, passages: PassageRows, terms: list[str]) -> SentenceRows:
        """Every sentence of `passages`, with vectors, in one request by point id: a passage's
        sentences are the rows `sent_lo` to `sent_hi`, and a sentence's point id is its row.
        (A filtered scroll on `passage` found the same points 30 to 50 times slower on
        qdrant-client's local mode, which checks a filter against every point.)"""
        spans = zip(passages.sent_lo.tolist(), passages.sent_hi.tolist(), strict=True)
        rows = [r for lo, hi in spans for r in range(lo, hi)]
        points = self.client.retrieve(
            f"{self.base}-sentences", rows, with_payload=True, with_vectors=["dense"]
        )
        points = sorted(points, key=lambda p: p.id)
        dim = int(self.manifest["dim"])
        wanted = set(terms)
        held = [wanted.intersection(p.payload["terms"]) for p in points]
        has = np.array([[t in h for t in terms] for h in held], dtype=bool)
        return SentenceRows(
            rows=np.array([p.id for p in points], dtype=np.int64),
            vectors=np.array([p.vector["dense"] for p in points], dtype=np.float32).reshape(
                -1, dim
            ),
            has=has.reshape(len(points), len(terms)),
            start=np.array([p.payload["start"] for p in points], dtype=np.int64),
            end=np.array([p.payload["end"] for p in points], dtype=np.int64),
        )


def _subset(p: PassageRows, keep: np.ndarray) -> PassageRows:
    listed = keep.tolist()
    return PassageRows(
        rows=p.rows[keep],
        vectors=p.vectors[keep],
        doc=[p.doc[i] for i in listed],
        heading=[p.heading[i] for i in listed],
        role=[p.role[i] for i in listed],
        ids=[p.ids[i] for i in listed],
        start=p.start[keep],
        end=p.end[keep],
        sent_lo=p.sent_lo[keep],
        sent_hi=p.sent_hi[keep],
    )


def publish_generation(settings: Settings, generation: str) -> None:
    """Copy the local generation `generation` of `settings.collection` (just built) into Qdrant
    and switch its alias there. The local files stay: the next ingest reuses their vectors, and
    `serve` may read either."""
    path = generations.generations_dir(where(settings)) / generation
    with Index(path, generations.verify_manifest(path), settings.collection) as index:
        publish(index, client_for(settings), settings.qdrant_shards, settings.qdrant_replicas)


def open_store(settings: Settings) -> QdrantStore:
    """The current generation of `settings.collection` in the Qdrant `settings` names."""
    return QdrantStore(client_for(settings), settings.collection)


# A streaming ingest (`verbatim.index.cluster.stream`) writes a generation batch by batch, from
# many processes, with no local copy. Its points have ids `batch << ID_SHIFT | row in batch`,
# so every writer knows its ids without knowing the batches before it, rows keep the corpus's
# order (ties rank as locally), and a batch written twice overwrites itself. Until the
# generation is published a fourth collection, `terms`, holds each passage's term counts (the
# BM25 weights need the corpus's document frequencies, known only when every batch is in) and
# the progress records that let a killed ingest resume; it is deleted at the end.
ID_SHIFT = 32
K1, B = 1.5, 0.75  # bm25s's defaults, which `Lexical.build` uses
RECORD = "record"  # the payload field naming a progress record's kind


def point_id(batch: int, row: int) -> int:
    """The point id of row `row` of batch `batch` (passages and sentences alike)."""
    return (batch << ID_SHIFT) | row


def batch_ids(batch: int, count: int) -> list[int]:
    return [point_id(batch, row) for row in range(count)]


def _record_id(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"verbatim:progress:{name}"))


def create_generation(client: Any, base: str, dim: int, shards: int, replicas: int) -> None:
    """The four empty collections of a generation about to be streamed into."""
    m = _models()
    for kind, size, sparse in (
        ("passages", dim, True),
        ("sentences", dim, False),
        ("documents", 0, False),
        ("terms", 0, False),
    ):
        _create(client, f"{base}-{kind}", size, sparse, shards, replicas)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect in the local Qdrant")
        client.create_payload_index(
            f"{base}-terms", RECORD, field_schema=m.PayloadSchemaType.KEYWORD, wait=True
        )


def _vector(plain: dict) -> dict:
    m = _models()
    out: dict = {}
    for name, value in plain.items():
        out[name] = m.SparseVector(**value) if isinstance(value, dict) else value
    return out


def write(client: Any, base: str, kind: str, points: list[dict]) -> None:
    """Upsert plain points ({"id", "vector", "payload"}: what a streaming worker makes) into
    the `kind` collection of generation `base`."""
    m = _models()
    made = (
        m.PointStruct(id=p["id"], vector=_vector(p.get("vector", {})), payload=p["payload"])
        for p in points
    )
    _upsert(client, f"{base}-{kind}", made)


def record(client: Any, base: str, kind: str, name: str, payload: dict) -> None:
    """A progress record (`kind` "block", "batch", "weights", "build") of generation `base`,
    written after what it records, so that it is only found once that is in."""
    point = {"id": _record_id(name), "payload": {**payload, RECORD: kind, "name": name}}
    write(client, base, "terms", [point])


def records(client: Any, base: str, kind: str) -> Iterator[dict]:
    """The payloads of generation `base`'s progress records of `kind`, a page at a time."""
    m = _models()
    flt = m.Filter(must=[m.FieldCondition(key=RECORD, match=m.MatchValue(value=kind))])
    offset = None
    while True:
        points, offset = client.scroll(
            f"{base}-terms", scroll_filter=flt, limit=256, offset=offset, with_payload=True
        )
        yield from (p.payload for p in points)
        if offset is None:
            return


def forget(client: Any, base: str, names: list[str], ids: dict[str, list[int]]) -> None:
    """Delete progress records `names` and the points `ids` (by kind) of generation `base`:
    a batch to be written again with other document ids."""
    m = _models()
    doomed: dict[str, list] = {**ids, "terms": [*ids.get("terms", []), *map(_record_id, names)]}
    for kind, listed in doomed.items():
        for at in range(0, len(listed), 4096):
            selector = m.PointIdsList(points=listed[at : at + 4096])
            client.delete(f"{base}-{kind}", points_selector=selector, wait=True)


def resumable(client: Any, collection: str, key: str) -> str | None:
    """The unpublished generation of `collection` that a streaming ingest with run key `key`
    was writing (its `terms` collection holds a "build" record with that key), or None."""
    mine = re.compile(re.escape(alias(collection)) + r"-([^-]+-[^-]+)-terms")
    for item in client.get_collections().collections:
        found = mine.fullmatch(item.name)
        if found is None:
            continue
        base = f"{alias(collection)}-{found.group(1)}"
        if any(r.get("key") == key for r in records(client, base, "build")):
            return found.group(1)
    return None


def term_counts(client: Any, base: str, batch: int, count: int) -> Iterator[tuple[int, dict]]:
    """(passage point id, {"t": terms, "c": counts}) of batch `batch`'s `count` passages."""
    ids = batch_ids(batch, count)
    for at in range(0, len(ids), BATCH):
        points = client.retrieve(f"{base}-terms", ids[at : at + BATCH], with_payload=True)
        yield from sorted(((p.id, p.payload) for p in points), key=lambda x: x[0])


@functools.cache
def _bm25_idf(df: int, n: int) -> np.float32:
    """bm25s's IDF ("lucene", float32 as its index stores it)."""
    return np.float32(np.log(1 + (n - df + 0.5) / (df + 0.5)))


def bm25_weights(counts: list[int], dfs: list[int], n: int, avgdl: np.float64) -> np.ndarray:
    """A passage's BM25 weight of each of its terms, as bm25s computes them when it indexes
    the whole corpus (`Lexical.build`): the same operations in the same types, so the same
    float32s. `counts` are the term's occurrences in the passage, `dfs` the passages holding
    it, `n` the passages and `avgdl` their mean length in terms."""
    tf = np.asarray(counts, dtype=np.float32)
    length = int(sum(counts))
    idf = np.array([_bm25_idf(df, n) for df in dfs], dtype=np.float32)
    tfc = tf / (K1 * ((1 - B) + B * length / avgdl) + tf)
    return (idf * tfc).astype(np.float32)


def query_idf(dfs: np.ndarray, n: int) -> np.ndarray:
    """Each term's IDF as `Lexical` weighs a question's terms (float64)."""
    df = np.asarray(dfs, dtype=np.float64)
    return np.log1p((n - df + 0.5) / (df + 0.5))


def weigh(
    client: Any,
    base: str,
    batch: int,
    count: int,
    vocab: dict[str, tuple[int, int]],
    n: int,
    avgdl: np.float64,
) -> None:
    """Give batch `batch`'s passages their "bm25" sparse vectors, from their term counts and
    the corpus's `vocab` (term -> (id, document frequency)), then record it."""
    m = _models()
    name = f"{base}-passages"
    chunk: list = []
    for pid, tf in term_counts(client, base, batch, count):
        if tf["t"]:
            ids = [vocab[t][0] for t in tf["t"]]
            values = bm25_weights(tf["c"], [vocab[t][1] for t in tf["t"]], n, avgdl)
            order = np.argsort(ids)
            sparse = m.SparseVector(indices=[ids[i] for i in order], values=values[order].tolist())
            chunk.append(m.PointVectors(id=pid, vector={"bm25": sparse}))
        if len(chunk) == BATCH:
            client.update_vectors(name, points=chunk, wait=True)
            chunk = []
    if chunk:
        client.update_vectors(name, points=chunk, wait=True)
    record(client, base, "weights", f"weights:{batch}", {"batch": batch})


def write_manifest(
    client: Any, base: str, manifest: dict, terms: list[str], idf: np.ndarray
) -> None:
    """Generation `base`'s manifest and passage vocabulary (its "meta" point), which a
    `QdrantStore` of it reads."""
    meta = {"manifest": json.dumps(manifest), "terms": terms, "idf": idf.tolist()}
    write(client, base, "documents", [{"id": META_ID, "payload": meta}])


def finish(client: Any, collection: str, base: str) -> str:
    """Publish streamed generation `base` (written, manifest included): `_switch`."""
    return _switch(client, collection, base)
