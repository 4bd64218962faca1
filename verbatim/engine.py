"""Wiring: read -> index -> answer, shared by the CLI, the server and the evaluation."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
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
from verbatim.index.lexical import information
from verbatim.ingest import Reader, read_documents
from verbatim.ingest.workers import read_all
from verbatim.records import Answer, Embedder, Filters, Skipped
from verbatim.settings import DEFAULT_COLLECTION, Settings


@dataclass
class Engine:
    """An index generation with its embedder: what answering, the pages and the API need.

    `store` is what answers, documents and verification read: the local generation `index`
    (the default), or, with `settings.store` "qdrant", the collection's current generation in
    Qdrant. A Qdrant engine holds no local index unless one is given (ingest's machine has one;
    a serving replica needs nothing but the Qdrant address), so replicas are stateless.
    """

    settings: Settings
    index: Index | None
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

    def local(self) -> Index:
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
    reader: Reader = read_all,
) -> tuple[IngestReport, list[Skipped]]:
    """Read, embed, calibrate and publish `paths` as the new index generation, then re-check
    the stored feedback citations against it (`feedback_check` tells how they stand).

    Args:
        reader: what reads the files: this machine's process pool, or Ray (`ingest_on_ray`).

    Returns:
        The `IngestReport` and the list of skipped files.
    """
    corpus = read_documents(paths, settings, reader)
    model = embedder or make_embedder(settings)
    report = build_index(
        corpus, settings, model, calibrate=lambda index: calibrate(index, model, settings)
    )
    if settings.store == "qdrant":  # built locally, then copied there
        from verbatim.index import qdrant

        qdrant.publish_generation(settings, report.generation)
    _recheck_feedback(settings, report.generation)
    return report, corpus.skipped


def ingest_on_ray(
    paths: list[Path], settings: Settings, address: str | None = None, workers: int | None = None
) -> tuple[IngestReport, list[Skipped]]:
    """`ingest_paths` with Ray Data reading the files and embedding the texts (one model per
    actor, a GPU each when the cluster has them); the index is written as always. `address`
    None starts a local cluster, unless Ray is already initialised.

    Raises:
        VerbatimError: Ray is not installed; the message says how to install it.
    """
    try:
        import ray
    except ImportError:
        raise VerbatimError(
            "ingest --ray needs Ray: pip install 'verbatim[ray]' ('.[ray]' in a checkout)"
        ) from None
    from verbatim.index.cluster import RayEmbedder
    from verbatim.ingest.cluster import read_on_ray

    make_embedder(settings).encode(["warm up"], progress=False)  # the model export, made once
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        options = {"model": settings.model, "batch_size": settings.batch_size}
        options |= {"backend": settings.backend, "cache_dir": settings.data_dir / "models"}
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
    "remove_collection",
    "served_collections",
    "store_location",
]
