"""What requests share: an engine per collection (read-only) and the slots bounding answers."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from verbatim.errors import NotFound, UnknownCollection, VerbatimError
from verbatim.records import Answer, Document, Filters
from verbatim.settings import DEFAULT_COLLECTION, Settings

if TYPE_CHECKING:
    from verbatim.engine import Engine

SLOT_WAIT = 1.0  # seconds a request may wait for an answer slot before a 503 (replies within 2.5 s)
RETIRE_AFTER = 60.0  # seconds a replaced engine stays open for the answers still running on it
# Seconds between two looks at every collection's pointer (CURRENT, or Qdrant's alias): a new
# generation published by anyone (`verbatim ingest`, `verbatim watch`) is served within this.
FOLLOW_EVERY = 1.0
log = logging.getLogger("verbatim")


class Busy(Exception):
    """Every answer slot is taken."""


class State:
    """What requests share: the engine of each collection and the slots bounding answers.

    `create_app`'s lifespan keeps it in `app.state.verbatim`; routes get it as `StateDep`.
    """

    def __init__(self, settings: Settings, engines: dict[str, Engine]) -> None:
        self.settings = settings
        self.engines = engines  # replaced whole by `reload`, never changed in place
        self.started = time.time()
        self.slots = threading.BoundedSemaphore(settings.max_concurrent)
        self._reloading = threading.Lock()
        self._retired: list[tuple[float, Engine]] = []
        self._seen: dict[str, str | None] | None = None  # the pointers `follow` last acted on

    def collection(self, name: str | None = None) -> Engine:
        """The engine of collection `name`; by default the default collection (or, in a data
        directory without one, the first).

        Raises:
            UnknownCollection: no collection has that name; the message lists them.
        """
        engines = self.engines
        if name is None:
            return engines.get(DEFAULT_COLLECTION) or next(iter(engines.values()))
        if name not in engines:
            raise UnknownCollection(
                f"no collection named {name!r}; known collections: {', '.join(engines)} "
                "(GET /api/collections)"
            )
        return engines[name]

    @property
    def engine(self) -> Engine:
        """The default collection's engine."""
        return self.collection()

    def reload(self) -> dict[str, str]:
        """Serve the data directory's collections as they are now, without downtime: new ones
        are added, changed ones switched to their current generation, removed ones dropped.

        Each new index is loaded beside the old one; the collections are swapped in with one
        assignment, and answers already running finish on the old indexes, which are closed
        a minute later. A collection that fails to load keeps its old index, and the first
        such error is raised once the others are switched.

        Returns:
            The generation now served for each collection.
        """
        with self._reloading:
            old = self.engines
            new, errors = self._load_all(old)
            if new:
                self.engines = new
                self._retire([e for name, e in old.items() if new.get(name) is not e])
            if errors:
                raise errors[0]
            return {name: e.answering.generation for name, e in self.engines.items()}

    def pointers(self) -> dict[str, str | None]:
        """Every collection's current generation as its pointer names it, without loading."""
        from verbatim.engine import current_generation, served_collections

        names = served_collections(self.settings)
        return {
            name: current_generation(self.settings.model_copy(update={"collection": name}))
            for name in names
        }

    def follow(self) -> bool:
        """Reload if any collection's pointer moved (or one appeared or went) since the last
        look; a pointer whose generation failed to load is not retried until it moves again.

        Returns:
            Whether it reloaded.
        """
        if self.settings.store == "qdrant" and not _remote(self.settings.qdrant_url):
            return False  # Qdrant's local mode: only this process writes it, nothing to follow
        now = self.pointers()
        if self._seen is None:  # the first look: what is served is what the pointers named
            served: dict[str, str | None] = {
                name: e.answering.generation for name, e in self.engines.items()
            }
            self._seen = served if set(served) == set(now) else {}
        if now == self._seen:
            return False
        self._seen = now
        try:
            self.reload()
        except VerbatimError as exc:
            log.warning("new generation not served: %s", exc.message)
        return True

    def _load_all(self, old: dict[str, Engine]) -> tuple[dict[str, Engine], list[VerbatimError]]:
        from verbatim.engine import served_collections

        new: dict[str, Engine] = {}
        errors: list[VerbatimError] = []
        for name in served_collections(self.settings):
            try:
                new[name] = self._load(name, old.get(name))
            except VerbatimError as exc:
                log.warning("collection %s not reloaded: %s", name, exc.message)
                errors.append(exc)
                if name in old:
                    new[name] = old[name]
        return new, errors

    def _load(self, name: str, old: Engine | None) -> Engine:
        """Collection `name`'s current generation: `old` itself when that is it (known from
        the generation's pointer, so an unchanged collection is not loaded again)."""
        from verbatim.engine import current_generation, load_engine

        settings = self.settings.model_copy(update={"collection": name})
        if old is not None and current_generation(settings) == old.answering.generation:
            return old
        engine = load_engine(settings, next(iter(self.engines.values())).embedder)
        if old is not None and engine.answering.generation == old.answering.generation:
            engine.close()
            return old
        return engine

    def _retire(self, engines: list[Engine]) -> None:
        now = time.monotonic()
        for _retired_at, engine in [r for r in self._retired if now - r[0] > RETIRE_AFTER]:
            engine.close()
        self._retired = [r for r in self._retired if now - r[0] <= RETIRE_AFTER]
        self._retired.extend((now, engine) for engine in engines)

    def ask(
        self,
        question: str,
        k: int | None,
        filters: Filters | None = None,
        collection: str | None = None,
    ) -> Answer:
        """Answer from `collection` in one of the slots, waiting at most `SLOT_WAIT` for one.

        Raises:
            UnknownCollection: no collection has that name.
            Busy: every slot stayed taken.
        """
        engine = self.collection(collection)
        if not self.slots.acquire(timeout=SLOT_WAIT):
            raise Busy()
        try:
            return engine.ask(question, k=k, filters=filters)
        finally:
            self.slots.release()

    def document(self, doc_id: str, collection: str | None = None) -> Document:
        """One served document, with its text.

        Raises:
            UnknownCollection: no collection has that name.
            NotFound: no document has that id.
        """
        store = self.collection(collection).answering
        if doc_id not in store.documents:
            raise NotFound(f"no document with id {doc_id!r}; GET /api/documents lists them")
        return store.document(doc_id)


def _remote(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("http://", "https://"))


async def current_state(request: Request) -> State:
    """The app's `State`, for `Depends` (async: a plain def would cost a thread hop)."""
    return request.app.state.verbatim


StateDep = Annotated[State, Depends(current_state)]
