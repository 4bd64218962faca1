"""What requests share: the engine (read-only) and the slots bounding concurrent answers."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from verbatim.errors import NotFound
from verbatim.records import Answer, Document
from verbatim.settings import Settings

if TYPE_CHECKING:
    from verbatim.engine import Engine

SLOT_WAIT = 1.0  # seconds a request may wait for an answer slot before a 503 (replies within 2.5 s)
RETIRE_AFTER = 60.0  # seconds a replaced engine stays open for the answers still running on it


class Busy(Exception):
    """Every answer slot is taken."""


class State:
    """What requests share: the engine (read-only) and the slots bounding concurrent answers.

    `create_app`'s lifespan keeps it in `app.state.verbatim`; routes get it as `StateDep`.
    """

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.started = time.time()
        self.slots = threading.BoundedSemaphore(settings.max_concurrent)
        self._reloading = threading.Lock()
        self._retired: list[tuple[float, Engine]] = []

    def reload(self) -> str:
        """Serve the data directory's current generation from now on, without downtime.

        The new index is loaded beside the old one and swapped in with one assignment; answers
        already running finish on the old index, which is closed a minute later. If loading
        fails, the old index keeps serving and the error is raised.
        """
        from verbatim.engine import Engine
        from verbatim.index import load_index

        with self._reloading:
            old = self.engine
            index = load_index(old.settings)
            if index.generation == old.index.generation:
                index.close()
                return index.generation
            self.engine = Engine(old.settings, index, old.embedder)
            now = time.monotonic()
            for _retired_at, engine in [r for r in self._retired if now - r[0] > RETIRE_AFTER]:
                engine.close()
            self._retired = [r for r in self._retired if now - r[0] <= RETIRE_AFTER]
            self._retired.append((now, old))
            return index.generation

    def ask(self, question: str, k: int | None, filters: dict | None = None) -> Answer:
        """Answer in one of the slots, waiting at most `SLOT_WAIT` for one.

        Raises:
            Busy: every slot stayed taken.
        """
        if not self.slots.acquire(timeout=SLOT_WAIT):
            raise Busy()
        try:
            return self.engine.ask(question, k=k, filters=filters)
        finally:
            self.slots.release()

    def document(self, doc_id: str) -> Document:
        """One served document, with its text.

        Raises:
            NotFound: no document has that id.
        """
        if doc_id not in self.engine.index.documents:
            raise NotFound(f"no document with id {doc_id!r}; GET /api/documents lists them")
        return self.engine.index.document(doc_id)


async def current_state(request: Request) -> State:
    """The app's `State`, for `Depends` (async: a plain def would cost a thread hop)."""
    return request.app.state.verbatim


StateDep = Annotated[State, Depends(current_state)]
