"""`create_app`: the web form and JSON API over the same `answer()` as the CLI, wired up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from verbatim import __version__
from verbatim.server import api, feedback, mcp, pages
from verbatim.server.errors import HANDLERS
from verbatim.server.middleware import Guard
from verbatim.server.state import FOLLOW_EVERY, State
from verbatim.settings import Settings

if TYPE_CHECKING:
    from verbatim.engine import Engine

HERE = Path(__file__).resolve().parent


def create_app(settings: Settings, engine: Engine | dict[str, Engine] | None = None) -> FastAPI:
    """The application, serving every collection of the data directory. The indexes are loaded
    at start-up (the default one built from the corpus on first run).

    Args:
        engine: already open engines by collection, or one for the default collection
            (tests); by default every collection is opened from `settings`.
    """
    app = FastAPI(
        title="Verbatim",
        summary="Answers questions only with verbatim, attributed quotes from its documents.",
        version=__version__,
        lifespan=partial(lifespan, settings=settings, engine=engine),
        exception_handlers=HANDLERS,
        docs_url=None,
        redoc_url=None,
    )
    # Swagger UI's mount first: the one at /static would take /static/swagger/ as its own.
    swagger = StaticFiles(directory=swagger_ui_bundle.swagger_ui_path)
    app.mount("/static/swagger", swagger, name="swagger")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.ask_router(settings))
    app.include_router(api.router)
    app.include_router(feedback.feedback_router(settings))
    app.include_router(pages.router)
    # MCP for AI agents (streamable HTTP): the same State, slots and limits as /api/ask.
    app.state.mcp = mcp.Endpoint(settings, lambda: app.state.verbatim)
    app.add_route("/mcp", app.state.mcp, include_in_schema=False)
    app.add_middleware(Guard, settings=settings)
    return app


@asynccontextmanager
async def lifespan(
    app: FastAPI, settings: Settings, engine: Engine | dict[str, Engine] | None
) -> AsyncIterator[None]:
    """Open the engines (unless given) into `app.state.verbatim`, and close what it opened."""
    from verbatim.engine import open_engines

    own = engine is None
    if engine is None:
        engines = open_engines(settings, build_if_missing=True)
    else:
        engines = engine if isinstance(engine, dict) else {engine.answering.collection: engine}
    app.state.verbatim = State(settings, engines)
    follower = asyncio.create_task(_follow(app.state.verbatim))
    try:
        async with app.state.mcp.running():
            yield
    finally:
        follower.cancel()
    if own:
        for served in app.state.verbatim.engines.values():
            served.close()


async def _follow(state: State) -> None:
    """Serve each collection's new generation as soon as its pointer moves, whoever published
    it (`verbatim ingest`, `verbatim watch`): a look every `FOLLOW_EVERY` seconds, off the
    event loop. SIGHUP and the admin reload still reload at once."""
    while True:
        await asyncio.sleep(FOLLOW_EVERY)
        try:
            await run_in_threadpool(state.follow)
        except Exception:  # a pointer unreadable for a moment: look again next time
            logging.getLogger("verbatim").exception("following the collections' pointers")
