"""Wiring: read -> index -> answer, shared by the CLI, the server and the evaluation."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from verbatim.answer import answer
from verbatim.calibrate import calibrate
from verbatim.citations import recheck
from verbatim.errors import IndexCorrupt, IndexMissing, StorageFull, VerbatimError
from verbatim.feedback import FeedbackStore
from verbatim.index import (
    Index,
    IngestReport,
    ModelEmbedder,
    Store,
    build_index,
    generations,
    load_index,
    open_store,
    where,
)
from verbatim.index.delta import Change, write_delta
from verbatim.index.lexical import information
from verbatim.index.load import load_generation
from verbatim.index.segments import Segmented
from verbatim.ingest import (
    Reader,
    SourceFile,
    Stored,
    Streamer,
    read_folders,
    split_passages,
    stream_folders,
)
from verbatim.ingest.workers import read_all, read_each
from verbatim.records import (
    Answer,
    Corpus,
    CorpusStream,
    Document,
    DocumentPassages,
    Embedder,
    Filters,
    Skipped,
)
from verbatim.settings import DEFAULT_COLLECTION, Settings

# A live update is written as a delta beside the base while the passages it adds and masks are
# at most this share of the base's; past it, the update is a merge (one full generation). Until
# the merge a delta answers with the base's abstention thresholds and BM25 weights, which a
# change of a few percent of the passages barely moves (the thresholds are percentiles of 300
# probes sampled evenly over the corpus); every answer also pays a second, exact search over the
# delta and a mask over the base. `verbatim watch` merges in the background once the folders
# have been quiet for `watch.MERGE_QUIET_S` seconds, after which answers are a fresh ingest's.
MERGE_SHARE = 0.05


@dataclass
class Engine:
    """An index generation with its embedder: what answering, the pages and the API need.

    `store` is what answers, documents and verification read: the local generation `index`
    (the default), or, with `settings.store` "qdrant", the collection's current generation in
    Qdrant. A Qdrant engine holds no local index unless one is given (ingest's machine has one;
    a serving replica needs nothing but the Qdrant address), so replicas are stateless.
    """

    settings: Settings
    index: Index | Segmented | None
    embedder: Embedder
    store: Store | None = None

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = (
                open_store(self.settings) if self.settings.store == "qdrant" else self.index
            )
        if self.store is None:
            raise IndexMissing("an engine needs an index or a store; run `verbatim ingest`")

    @property
    def answering(self) -> Store:
        """The store answers, documents and verification come from."""
        return cast(Store, self.store)  # set by __post_init__

    def local(self) -> Index | Segmented:
        """The local generation, whose arrays the benchmarks read.

        Raises:
            IndexMissing: this engine reads Qdrant and holds none; the message says so.
        """
        if self.index is None:
            raise IndexMissing(
                f"collection {self.settings.collection!r} is served from Qdrant here, with no "
                "local index; run this with VERBATIM_STORE=local"
            )
        return self.index

    def ask(self, question: str, k: int | None = None, filters: Filters | None = None) -> Answer:
        return answer(question, self.answering, self.embedder, self.settings, k, filters)

    def close(self) -> None:
        if self.store is not None and self.store is not self.index:
            self.store.close()
        if self.index is not None:
            self.index.close()


def make_embedder(settings: Settings) -> ModelEmbedder:
    return ModelEmbedder(
        settings.model,
        settings.batch_size,
        progress=settings.progress,
        backend=settings.backend,
        cache_dir=settings.data_dir / "models",
    )


def ingest_paths(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder | None = None,
    reader: Reader | Streamer = read_each,
) -> tuple[IngestReport, list[Skipped]]:
    """Read, embed, calibrate and publish `paths` as the new index generation, then re-check
    the stored feedback citations against it (`feedback_check` tells how they stand). The
    manifest records the folders and each file's fingerprint (`verbatim watch` reads them).

    The files are read as the index is written, a block at a time (`stream_folders`): the
    ingest never holds the corpus, and one killed part way continues when run again.

    Args:
        reader: what reads the files: this machine's process pool, or Ray (`ingest_on_ray`).

    Returns:
        The `IngestReport` and the list of skipped files.
    """
    stream = stream_folders(paths, settings, reader)
    sources: dict = {}  # known once the stream is read through, before the build publishes

    def recorded(items: Iterator[DocumentPassages]) -> Iterator[DocumentPassages]:
        yield from items
        sources.update(_sources(paths, stream.files))

    stream.items = recorded(stream.items)
    return _publish(stream, sources, settings, embedder), stream.skipped


def _publish(
    corpus: Corpus | CorpusStream, sources: dict, settings: Settings, embedder: Embedder | None
) -> IngestReport:
    """Embed, calibrate and publish `corpus` with `sources` in its manifest (to Qdrant too
    when it is the store), then re-check the feedback citations against it."""
    model = embedder or make_embedder(settings)
    with generations.recording({"sources": sources}):
        report = build_index(
            corpus, settings, model, calibrate=lambda index: calibrate(index, model, settings)
        )
    if settings.store == "qdrant":  # built locally, then copied there
        from verbatim.index import qdrant

        qdrant.publish_generation(settings, report.generation)
    _recheck_feedback(settings, report.generation)
    return report


def _sources(paths: list[Path], files: list[SourceFile]) -> dict:
    """What a manifest records of where its documents came from: the folders (absolute) and
    every file read, with its fingerprint and the ids of its documents."""
    return {
        "roots": [os.path.abspath(p) for p in paths],
        "files": {
            f.path: {"size": f.size, "mtime_ns": f.mtime_ns, "sha256": f.sha256, "docs": f.docs}
            for f in files
        },
    }


def recorded_sources(
    settings: Settings, name: str | None = None
) -> tuple[list[str], dict[str, SourceFile]]:
    """The folders `settings.collection`'s generation `name` (by default the current local
    one) was read from and its files' fingerprints, as its manifest records them; nothing for
    a generation written before they were recorded, or none."""
    folder = where(settings)
    name = name or generations.current_name(folder)
    try:
        manifest = generations.read_manifest(generations.generations_dir(folder) / (name or ""))
        sources = manifest["sources"]
        files = {
            path: SourceFile(path, f["size"], f["mtime_ns"], f["sha256"], tuple(f["docs"]))
            for path, f in sources["files"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return [], {}
    return list(sources["roots"]), files


@dataclass
class Update:
    """What `update_paths` did: the files added, changed and removed since the generation it
    started from, the files skipped with the reason, and the generation published (None when
    nothing had changed)."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    report: IngestReport | None = None
    seconds: float = 0.0


def update_paths(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder | None = None,
    merge: bool = False,
    since: str | None = None,
) -> Update:
    """Bring `settings.collection` in step with `paths`, reading only the files whose size and
    modification time (else content) changed since its generation `since` (by default the
    current one) recorded them. Publishes a new generation only when a file was added, changed
    or removed: a delta on the current base (`index.delta`) holding the changed documents,
    whose cost follows the change; or, with `merge`, when there is no base to build on, or when
    the delta would pass `MERGE_SHARE` of the base, one full generation (a merge), reusing the
    vectors of unchanged passages. The passages served equal those of ingesting `paths` afresh.

    Raises:
        NoDocuments: a folder is missing, or nothing readable is left.
    """
    began = time.perf_counter()
    generation = since or generations.current_name(where(settings))  # one, should another publish
    roots, previous = recorded_sources(settings, generation)
    if roots != [os.path.abspath(p) for p in paths]:
        previous = {}  # other folders give other ids: read everything once
    if merge or not previous or settings.store != "local":
        update = _update_whole(paths, settings, embedder, generation, previous, merge)
    else:
        update = _update_delta(paths, settings, embedder, generation, previous)
    update.seconds = time.perf_counter() - began
    return update


def _update_whole(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder | None,
    generation: str | None,
    previous: dict[str, SourceFile],
    merge: bool,
    fresh: dict[str, Document] | None = None,
) -> Update:
    """A new full generation of the files under `paths` (always, with `merge`). Documents
    in `fresh` (by id) were just read: a file all of whose documents are there is not read."""
    with _stored_documents(settings, generation) as stored:
        known = fresh or {}

        def kept(source: SourceFile) -> list[Document] | None:
            if source.docs and all(i in known for i in source.docs):
                return [known[i] for i in source.docs]
            return stored(source)

        corpus, files = read_folders(paths, settings, read_all, previous, kept)
    update = _counted(previous, files, corpus.skipped)
    if merge or update.added or update.changed or update.removed:
        update.report = _publish(corpus, _sources(paths, files), settings, embedder)
    return update


def _counted(previous: dict[str, SourceFile], files: list[SourceFile], skipped) -> Update:
    now = {f.path: f for f in files}
    return Update(
        added=len(now.keys() - previous.keys()),
        changed=sum(now[p].sha256 != previous[p].sha256 for p in now.keys() & previous.keys()),
        removed=len(previous.keys() - now.keys()),
        skipped=skipped,
    )


def _update_delta(
    paths: list[Path],
    settings: Settings,
    embedder: Embedder | None,
    generation: str | None,
    previous: dict[str, SourceFile],
) -> Update:
    """The changed files read, and published as a delta on generation `generation`'s base
    (or as a merge, when the delta would pass `MERGE_SHARE` of the base)."""
    corpus, files = read_folders(paths, settings, read_all, previous, _by_id)
    update = _counted(previous, files, corpus.skipped)
    if not (update.added or update.changed or update.removed):
        return update
    with _generation(settings, generation) as current:
        change = _change(current, corpus, previous, files, settings)
        base = current.base if isinstance(current, Segmented) else current
        masked = sum(doc in change.masked for doc in base.passage_doc)
        if len(change.passages) + masked <= MERGE_SHARE * len(base.passage_ids):
            model = embedder or make_embedder(settings)
            with generations.recording({"sources": _sources(paths, files)}):
                update.report = write_delta(current, change, settings, model)
    if update.report is None:  # too large for a delta: a merge, reading nothing again
        fresh = {d.id: d for d in corpus.documents if d.content_hash}
        now = {f.path: f for f in files}
        merged = _update_whole(paths, settings, embedder, generation, now, True, fresh)
        update.report, update.skipped = merged.report, merged.skipped
        return update
    _recheck_feedback(settings, update.report.generation)
    return update


def _by_id(source: SourceFile) -> list[Document]:
    """An unchanged file's documents by id alone (`Stored`): a delta leaves them where they
    are, so neither their text nor their passages are read. They carry no content hash."""
    return [Document(i, "", "", "", source.path, ()) for i in source.docs]


def _change(
    current: Index | Segmented,
    corpus: Corpus,
    previous: dict[str, SourceFile],
    files: list[SourceFile],
    settings: Settings,
) -> Change:
    """The delta that serves `corpus`'s fresh documents beside `current`'s unchanged ones."""
    now = {f.path: f.sha256 for f in files}
    gone = {
        doc for path, old in previous.items() if now.get(path) != old.sha256 for doc in old.docs
    }
    fresh = [d for d in corpus.documents if d.content_hash]  # the ones read just now
    fresh_ids = {d.id for d in fresh}
    base, kept = current, []
    if isinstance(current, Segmented):
        base = current.base
        stay = sorted(set(current.delta.documents) - gone - fresh_ids)
        kept = [current.delta.document(i) for i in stay]
        masked = set(current.manifest["delta"]["masked"])
    else:
        masked = set()
    masked |= (gone | fresh_ids) & set(base.documents)
    documents = sorted(kept + fresh, key=lambda d: d.id)
    split = [p for d in documents for p in split_passages(d, settings.passage_chars)]
    return Change(documents, split, masked)


@contextmanager
def _generation(settings: Settings, name: str | None) -> Iterator[Index | Segmented]:
    """Local generation `name` of `settings.collection`, open."""
    if name is None:
        raise IndexMissing(f"collection {settings.collection!r} has no generation to update")
    index = load_generation(settings, name)
    try:
        yield index
    finally:
        index.close()


@contextmanager
def _stored_documents(settings: Settings, name: str | None) -> Iterator[Stored]:
    """A file's documents as local generation `name` stores them (None if any is missing
    there), read from its SQLite store, and for a delta from its base's too."""
    from verbatim.index import tables

    root = generations.generations_dir(where(settings))
    stores = [root / (name or "") / "store.sqlite"]
    delta = generations.delta_of(root / (name or ""))
    if delta is not None:
        stores.append(root / delta.base / "store.sqlite")
    if name is None or not all(path.exists() for path in stores):
        yield lambda source: None
        return
    dbs = [tables.open_db(path) for path in stores]
    try:
        metas = [tables.read_documents(db) for db in dbs]

        def read(doc_id: str) -> Document | None:
            for db, meta in zip(dbs, metas, strict=True):
                if doc_id in meta:
                    return tables.document(meta[doc_id], tables.read_text(db, doc_id))
            return None

        def stored(source: SourceFile) -> list[Document] | None:
            docs = [read(i) for i in source.docs]
            return None if None in docs else cast(list[Document], docs)

        yield stored
    finally:
        for db in dbs:
            db.close()


def ingest_on_ray(
    paths: list[Path],
    settings: Settings,
    address: str | None = None,
    workers: int | None = None,
    make: Callable[[], Embedder] | None = None,
) -> tuple[IngestReport, list[Skipped]]:
    """`ingest_paths` with Ray Data reading the files and embedding the texts (one model per
    actor, a GPU each when the cluster has them); the index is written as always. With
    `settings.store` "qdrant" the ingest streams instead: Ray workers read, embed and write
    their batches into Qdrant, nothing is built locally, and a killed ingest run again with
    the same arguments resumes (`verbatim.index.cluster.stream`). `address` None starts a
    local cluster, unless Ray is already initialised.

    Args:
        make: how each worker builds its embedder (by default the model of `settings`).

    Raises:
        VerbatimError: Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError:
        raise VerbatimError(
            "ingest --ray needs Ray: pip install 'verbatim[ray]' ('.[ray]' in a checkout)"
        ) from None
    from functools import partial

    from verbatim.index.cluster import RayEmbedder, model_for, run_on_ray, stream
    from verbatim.ingest.cluster import read_on_ray

    model = make() if make else make_embedder(settings)
    model.encode(["warm up"], progress=False)  # the model export, made once
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        options = {"model": settings.model, "batch_size": settings.batch_size}
        options |= {"backend": settings.backend, "cache_dir": settings.data_dir / "models"}
        if settings.store == "qdrant":
            build = make or partial(model_for, options)
            return stream(
                paths,
                settings,
                model.dim,
                lambda probe: calibrate(probe, model, settings),
                lambda client, base: run_on_ray(client, base, settings, build, workers),
            )
        return ingest_paths(paths, settings, RayEmbedder(workers, **options), read_on_ray)
    finally:
        if started:
            ray.shutdown()


def _recheck_feedback(settings: Settings, generation: str) -> None:
    """Verify the feedback citations against the new generation. The index is published by
    now: a failure here only leaves them to the next ingest, it does not fail this one."""
    try:
        recheck(settings.data_dir, generation, settings.collection)
    except (OSError, sqlite3.Error, StorageFull) as exc:
        logging.getLogger("verbatim").warning(
            "feedback citations not re-checked against %s: %s", generation, exc
        )


def feedback_check(settings: Settings, generation: str) -> dict[str, int] | None:
    """How the stored feedback citations stood when re-checked against `generation` after its
    ingest: counts of current, moved, changed and gone; None if there was nothing to check."""
    return FeedbackStore(settings.data_dir).last_check(generation, settings.collection)


def open_engine(
    settings: Settings, embedder: Embedder | None = None, build_if_missing: bool = False
) -> Engine:
    """The current generation, ready to answer, from the store `settings.store` names (for
    Qdrant, without reading the data directory's index). Optionally index
    `settings.corpus_dir` first, if the index is local: a Qdrant replica never publishes."""
    embedder = embedder or make_embedder(settings)
    try:
        engine = load_engine(settings, embedder)
    except IndexMissing:
        if not build_if_missing or settings.store == "qdrant":
            raise  # a Qdrant replica only reads: the ingest machine publishes
        logging.getLogger("verbatim").warning(
            "First run: indexing %s into %s ...", settings.corpus_dir, settings.data_dir
        )
        ingest_paths([settings.corpus_dir], settings, embedder)
        engine = load_engine(settings, embedder)
    embedder.encode(["warm up"], progress=False)  # load the model now, not in an answer
    information("the")  # and the English word frequencies behind the term weights (0.2 s)
    _one_blas_thread()
    return engine


def load_engine(settings: Settings, embedder: Embedder) -> Engine:
    """The current generation of `settings.collection` from `settings.store`, as it is: no
    build, no warm-up (a reload loads each collection with this)."""
    if settings.store == "qdrant":
        return Engine(settings, None, embedder, open_store(settings))
    return Engine(settings, load_index(settings), embedder)


def current_generation(settings: Settings) -> str | None:
    """The name of `settings.collection`'s current generation, read from its pointer alone
    (the CURRENT file, or Qdrant's alias), without loading it; None if it has none."""
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        return qdrant.current_generation(qdrant.client_for(settings), settings.collection)
    return generations.current_name(where(settings))


def served_collections(settings: Settings) -> list[str]:
    """The collections `settings.store` holds: the data directory's, or Qdrant's aliases."""
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        return qdrant.collection_names(qdrant.client_for(settings))
    return generations.collection_names(settings.data_dir)


def store_location(settings: Settings) -> str:
    """Where `settings.store` keeps the collections, as messages name it."""
    if settings.store == "qdrant":
        return settings.qdrant_url or "Qdrant"
    return str(settings.data_dir)


def collection_info(settings: Settings, name: str) -> dict:
    """Collection `name` as `verbatim collections` lists it: {name, documents, passages,
    generation}, from its manifest, without loading its index (zero counts when the manifest
    is unreadable: answering from it will say how)."""
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        generation, manifest = qdrant.manifest(qdrant.client_for(settings), name)
        counts = manifest["counts"]
    else:
        folder = where(settings.model_copy(update={"collection": name}))
        generation = generations.current_name(folder) or ""
        try:
            manifest = generations.read_manifest(generations.generations_dir(folder) / generation)
            counts = manifest["counts"]
        except (OSError, ValueError, KeyError):
            counts = {}
    return {
        "name": name,
        "documents": counts.get("documents", 0),
        "passages": counts.get("passages", 0),
        "generation": generation,
    }


def remove_collection(settings: Settings, name: str) -> None:
    """Delete collection `name` from `settings.store`; with Qdrant, the data directory's local
    copy too, if the ingest machine holds one (a serving replica does not).

    Raises:
        IndexMissing: the data directory has no such collection.
    """
    if settings.store == "qdrant":
        from verbatim.index import qdrant

        qdrant.remove_collection(qdrant.client_for(settings), name)
        if name not in generations.collection_names(settings.data_dir):
            return
    generations.remove_collection(settings.data_dir, name)


def open_engines(
    settings: Settings, embedder: Embedder | None = None, build_if_missing: bool = False
) -> dict[str, Engine]:
    """Every collection of the data directory, ready to answer, the default one first, all on
    one embedder. With none yet, `build_if_missing` indexes `settings.corpus_dir` as the
    default collection. A collection that fails to load is left out with a warning, unless
    it is the only one: then its error is raised.
    """
    embedder = embedder or make_embedder(settings)
    names = served_collections(settings) or [DEFAULT_COLLECTION]
    engines: dict[str, Engine] = {}
    for name in names:
        try:
            engines[name] = open_engine(
                settings.model_copy(update={"collection": name}), embedder, build_if_missing
            )
        except VerbatimError as exc:
            if len(names) == 1:
                raise
            logging.getLogger("verbatim").warning("collection %s not served: %s", name, exc)
    if not engines:
        raise IndexCorrupt(f"no collection in {settings.data_dir} could be loaded; see above")
    return engines


def _one_blas_thread() -> None:
    """Run BLAS single-threaded from now on in this process.

    An answer does many small matrix products right after the model's own threads ran; a
    second BLAS thread per product only fights those threads for the cores. Measured on 2
    cores: an exact search by matrix-vector product took the answer from 12 ms to 24 ms with
    OpenBLAS's default threads, and to 11.5 ms with one. Ingest's large products (FAISS
    k-means) run before an engine is opened.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


__all__ = [
    "Engine",
    "Skipped",
    "collection_info",
    "current_generation",
    "feedback_check",
    "ingest_on_ray",
    "ingest_paths",
    "load_engine",
    "make_embedder",
    "open_engine",
    "open_engines",
    "recorded_sources",
    "remove_collection",
    "served_collections",
    "store_location",
    "Update",
    "update_paths",
]
