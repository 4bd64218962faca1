"""The JSON API: /api/ask (POST and GET), the documents, health, and the admin reload."""

# No `from __future__ import annotations` here: FastAPI resolves string annotations in the
# module's globals, and `ask_router`'s endpoints are typed with names local to it.

import time
from dataclasses import asdict
from typing import Annotated, cast

from fastapi import APIRouter, Body, Depends, Header, Query
from fastapi.responses import Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from verbatim.errors import Forbidden
from verbatim.index.catalog import Catalog
from verbatim.records import Answer, DocumentMeta, Filters
from verbatim.server.auth import admin_refusal
from verbatim.server.models import (
    ERRORS,
    EXAMPLE,
    JSON,
    NOT_BLANK,
    AskRequest,
    Collection,
    CollectionList,
    CollectionQuery,
    DocumentOut,
    DocumentPage,
    DocumentSummary,
    Health,
    WatchStatus,
    ask_request,
    filter_query,
)
from verbatim.server.state import State, StateDep
from verbatim.settings import MAX_K, Settings

ANSWER_JSON = TypeAdapter(Answer)
QuoteQuery = Annotated[int | None, Query(ge=1, le=MAX_K)]

router = APIRouter()


def ask_router(settings: Settings) -> APIRouter:
    """POST and GET /api/ask, refusing (422) and documenting questions over
    `settings.max_question_chars`: the limit is part of their types, made here per app."""
    limit = settings.max_question_chars
    Ask = ask_request(limit)
    questions = APIRouter()

    @questions.post("/api/ask", response_model=Answer, responses=ERRORS, tags=["api"])
    async def ask_post(
        state: StateDep,
        body: Annotated[Ask, Body()],  # type: ignore[valid-type]  # a class made at run time
    ) -> Response:
        """Answer a question with verbatim, attributed quotes (or abstain)."""
        ask = cast(AskRequest, body)
        filters = ask.filters.record() if ask.filters else None
        return await respond(state, ask.question, ask.k, filters, ask.collection)

    @questions.get("/api/ask", response_model=Answer, responses=ERRORS, tags=["api"])
    async def ask_get(
        state: StateDep,
        q: Annotated[
            str,
            Query(
                description="The question.",
                examples=[EXAMPLE],
                min_length=1,
                max_length=limit,
                pattern=NOT_BLANK,
            ),
        ],
        filters: Annotated[Filters | None, Depends(filter_query)],
        k: QuoteQuery = None,
        collection: CollectionQuery = None,
    ) -> Response:
        """The same as POST /api/ask, for links and curl: the filters are query parameters."""
        return await respond(state, q, k, filters, collection)

    return questions


# The answer endpoints are `async` and hand only the answer itself to a worker thread: a
# plain `def` endpoint costs FastAPI two thread hops per request (the endpoint, then the
# response's validation), and the Answer is already typed, so it is written out directly.
async def respond(
    state: State,
    question: str,
    k: int | None,
    filters: Filters | None = None,
    collection: str | None = None,
) -> Response:
    answer = await run_in_threadpool(state.ask, question, k, filters, collection)
    return Response(ANSWER_JSON.dump_json(answer), media_type=JSON)


@router.get("/api/documents", response_model=DocumentPage, responses=ERRORS, tags=["api"])
def documents(
    state: StateDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    collection: CollectionQuery = None,
) -> DocumentPage:
    """The indexed documents of a collection, a page at a time."""
    return document_page(state, offset, limit, collection)


def document_page(
    state: State,
    offset: int,
    limit: int,
    collection: str | None = None,
    filters: Filters | None = None,
) -> DocumentPage:
    """A page of the documents of a collection (those `filters` match, if given).

    Raises:
        UnknownCollection: no collection has that name.
        InvalidFilter: a filter names unknown documents or holds a malformed date.
    """
    index = state.collection(collection).answering
    ids = list(index.documents)
    if filters:
        kept = Catalog(index.documents, []).documents(filters)  # a mask in the same order
        ids = [i for i, keep in zip(ids, kept, strict=True) if keep]
    page = [_summary(index.documents[i]) for i in ids[offset : offset + limit]]
    return DocumentPage(total=len(ids), offset=offset, limit=limit, documents=page)


@router.get(
    "/api/documents/{doc_id:path}", response_model=DocumentOut, responses=ERRORS, tags=["api"]
)
def document(state: StateDep, doc_id: str, collection: CollectionQuery = None) -> DocumentOut:
    """One document: metadata, sections and the clean text all offsets point into."""
    doc = state.document(doc_id, collection)
    return DocumentOut(
        **_summary(state.collection(collection).answering.documents[doc_id]).model_dump(),
        content_hash=doc.content_hash,
        text=doc.text,
        metadata=doc.metadata,
        sections=[asdict(s) for s in doc.sections],
    )


@router.post("/api/admin/reload", response_model=Health, responses=ERRORS, tags=["admin"])
async def reload(state: StateDep, authorization: Annotated[str | None, Header()] = None) -> Health:
    """Switch every collection to its newest index generation (after `verbatim ingest`), add
    new collections and drop removed ones, without downtime.

    Needs `Authorization: Bearer <VERBATIM_ADMIN_TOKEN>`; disabled when no token is set.
    `kill -HUP <pid of verbatim serve>` does the same.
    """
    refused = admin_refusal(state.settings.admin_token, authorization, "reloading")
    if refused:
        raise Forbidden(refused)
    await run_in_threadpool(state.reload)  # loading takes a while; keep serving
    return _health(state)


@router.get("/api/collections", response_model=CollectionList, tags=["api"])
async def collections(state: StateDep) -> CollectionList:
    """The collections served: each a document set with its own index."""
    return CollectionList(collections=_collections(state))


def _collections(state: State) -> list[Collection]:
    return [
        Collection(
            name=name,
            documents=engine.answering.manifest["counts"]["documents"],
            passages=engine.answering.manifest["counts"]["passages"],
            generation=engine.answering.generation,
        )
        for name, engine in state.engines.items()
    ]


@router.get("/api/health", response_model=Health, tags=["api"])
async def health(state: StateDep) -> Health:
    """Which index generation is served, and how big it is."""
    return _health(state)


def _health(state: State) -> Health:
    index = state.engine.answering
    counts = index.manifest["counts"]
    thresholds = index.thresholds
    return Health(
        status="ok",
        store=state.engine.answering.store,
        generation=index.generation,
        model=index.manifest["model"],
        documents=counts["documents"],
        passages=counts["passages"],
        sentences=counts["sentences"],
        thresholds=dict(zip(("passage", "sentence"), thresholds, strict=True))
        if thresholds
        else None,
        uptime_s=round(time.time() - state.started, 1),
        collections=_collections(state),
        watching=_watching(state),
    )


def _watching(state: State) -> dict[str, WatchStatus]:
    from verbatim.watch import watch_status

    found = {}
    for name in state.engines:
        status = watch_status(state.settings.model_copy(update={"collection": name}))
        if status is not None:
            found[name] = WatchStatus.model_validate(status)
    return found


def _summary(doc: DocumentMeta) -> DocumentSummary:
    return DocumentSummary(
        id=doc.id, title=doc.title, author=doc.author, date=doc.date, url=doc.url, site=doc.site
    )
