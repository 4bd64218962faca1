"""Feedback on quotes and citation checks over HTTP: POST and GET /api/feedback, POST /api/verify,
and the form's POST /feedback (the quote cards' buttons, which work without JavaScript)."""

# No `from __future__ import annotations` here: FastAPI resolves string annotations in the
# module's globals, and `feedback_router`'s endpoints are typed with names local to it.

import math
import threading
import time
from collections import deque
from typing import Annotated, Any, Literal, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool

from verbatim.citations import Citation, IndexTexts, verify
from verbatim.errors import NotFound, VerbatimError
from verbatim.feedback import (
    MAX_NOTE,
    FeedbackFull,
    FeedbackStore,
    NewFeedback,
)
from verbatim.server import pages
from verbatim.server.auth import admin_refusal
from verbatim.server.errors import error_response, page_error
from verbatim.server.models import NOT_BLANK, ErrorResponse
from verbatim.server.state import State, StateDep
from verbatim.settings import Settings

ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 404, 409, 413, 422, 429)
}
# What the form's answer page was asked with, besides its question: kept through a feedback post.
CARRIED = (*pages.CARRIED, "collection")
WINDOW = 60.0  # seconds: the rate limit is `feedback_per_minute` requests in any such window


def _whole(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so do we (but not "2" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Offset = Annotated[int, Field(ge=0), BeforeValidator(_whole)]


class OffsetOutOfRange(VerbatimError):
    status = 422
    code = "invalid_request"


class ContentChanged(VerbatimError):
    status = 409
    code = "content_changed"


class RateLimit:
    """At most `limit` requests from each client address in any `window` seconds.

    Kept in memory, per server process; at most `MAX_CLIENTS` addresses are remembered (the
    longest idle are forgotten first), so a flood of addresses cannot grow it without bound.
    """

    MAX_CLIENTS = 10_000

    def __init__(self, limit: int, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Count a request from `client`: None if it is allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            self._seen[client] = times  # re-inserted: the dict's order is least recent first
            while times and now - times[0] >= self.window:
                times.popleft()
            if len(times) >= self.limit:
                return max(1, math.ceil(self.window - (now - times[0])))
            times.append(now)
            while len(self._seen) > self.MAX_CLIENTS:
                del self._seen[next(iter(self._seen))]
            return None


class FeedbackRequest(BaseModel):
    """A reader's verdict on one quote: the quote as cited, and whether it helped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str  # limited per server: see `feedback_request`
    collection: str | None = Field(default=None, description="The collection (default: default).")
    doc_id: str = Field(min_length=1, description="The quote's document.")
    start: Offset = Field(description="The quote's first character in the document's text.")
    end: Offset = Field(description="One past the quote's last character.")
    content_hash: str = Field(min_length=1, description="The document's hash the quote came with.")
    verdict: Literal["helpful", "unhelpful"]
    note: str | None = Field(default=None, max_length=MAX_NOTE, description="Why, in a few words.")


def feedback_request(max_question_chars: int) -> type[FeedbackRequest]:
    """`FeedbackRequest` whose question is limited like the questions this server answers."""
    question = Field(
        description=f"The question asked, 1 to {max_question_chars:,} characters.",
        min_length=1,
        max_length=max_question_chars,
        pattern=NOT_BLANK,
    )
    return create_model(
        "FeedbackRequest",
        __base__=FeedbackRequest,
        __doc__=FeedbackRequest.__doc__,
        question=(str, question),
    )


class FeedbackCreated(BaseModel):
    id: int


class FeedbackOut(BaseModel):
    id: int
    created: str
    collection: str
    question: str
    doc_id: str
    start: int
    end: int
    content_hash: str
    text: str
    verdict: Literal["helpful", "unhelpful"]
    note: str | None
    generation: str = Field(description="The index generation the verdict was given on.")
    status: Literal["current", "moved", "changed", "gone"] = Field(
        description="The citation at the last re-check (after an ingest)."
    )
    checked: str | None = Field(description="The generation it was last re-checked against.")


class FeedbackPage(BaseModel):
    total: int
    offset: int
    limit: int
    feedback: list[FeedbackOut]


class VerifyRequest(BaseModel):
    """A citation: a quote's document, offsets, the document's hash and the quoted text. Other
    fields are ignored, so a quote from /api/ask can be sent as it is. The offsets say where the
    text was: a citation whose offsets no longer hold it is looked for elsewhere."""

    model_config = ConfigDict(extra="ignore", strict=True)

    collection: str | None = None
    doc_id: str = Field(min_length=1)
    start: Offset
    end: Offset
    content_hash: str
    text: str = Field(min_length=1, pattern=NOT_BLANK)


class VerifyResponse(BaseModel):
    status: Literal["current", "moved", "changed", "gone"]
    start: int | None = Field(default=None, description="Current and moved: the offsets now.")
    end: int | None = None
    content_hash: str | None = Field(default=None, description="The document's hash now.")
    generation: str
    link: str | None = Field(default=None, description="The source with a text fragment.")


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(request: Request, code: str, message: str, wait: int) -> Response:
    headers = {"Retry-After": str(wait)}
    if request.url.path.startswith("/api/"):
        return error_response(429, code, message, headers)
    return page_error(request, 429, message, headers)


def _unauthorized(token: str | None, authorization: str | None) -> Response | None:
    """401 unless `authorization` is `Bearer <the admin token>`."""
    refused = admin_refusal(token, authorization, "reading feedback")
    if refused is None:
        return None
    return error_response(401, "unauthorized", refused, {"WWW-Authenticate": "Bearer"})


def record(state: State, store: FeedbackStore, body: FeedbackRequest) -> int:
    """Store a verdict on a quote of the served index; returns its id.

    Raises:
        UnknownCollection, NotFound: no such collection or document (404).
        ContentChanged: the document is not the one the quote came from (409).
        OffsetOutOfRange: the offsets are past the document's end (422).
        FeedbackFull: the day's cap is reached (429).
    """
    index = state.collection(body.collection).answering
    meta = index.documents.get(body.doc_id)
    if meta is None:
        raise NotFound(f"no document with id {body.doc_id!r}; GET /api/documents lists them")
    if body.content_hash != meta.content_hash:
        raise ContentChanged(
            f"content_hash: document {body.doc_id!r} has changed since this quote was shown; "
            "ask again and give feedback on the new quote"
        )
    text = index.text(body.doc_id)
    if body.end > len(text):
        raise OffsetOutOfRange(
            f"end: {body.end} is past the end of document {body.doc_id!r} ({len(text)} characters)"
        )
    if body.end <= body.start:
        raise OffsetOutOfRange(f"end: must be greater than start ({body.start})")
    entry = NewFeedback(
        question=body.question,
        collection=index.collection,
        doc_id=body.doc_id,
        start=body.start,
        end=body.end,
        content_hash=body.content_hash,
        text=text[body.start : body.end],
        verdict=body.verdict,
        note=body.note or None,
        generation=index.generation,
    )
    return store.add(entry, state.settings.feedback_per_day)


def _form_fields(form: Any, model: type[FeedbackRequest]) -> dict[str, Any]:
    return {name: form[name] for name in model.model_fields if form.get(name) not in (None, "")}


def _back_to_answer(body: FeedbackRequest, form: Any) -> str:
    """The answer the form was on (its question, k, collection and filters, carried in the
    form as `CARRIED` fields), with a thank-you in place of the quote's buttons."""
    query: list[tuple[str, str]] = [("q", body.question)]
    query += [
        (key, value)
        for key in CARRIED
        for value in form.getlist(key)
        if isinstance(value, str) and value and (key != "k" or value.isdigit())
    ]
    query.append(("thanked", f"{body.doc_id}:{body.start}:{body.end}"))
    return f"/?{urlencode(query)}#thanks"


async def _submit(
    request: Request, state: State, store: FeedbackStore, body: Any
) -> int | Response:
    """Store `body` (a `FeedbackRequest`), or the 429 that refuses it."""
    try:
        return await run_in_threadpool(record, state, store, cast(FeedbackRequest, body))
    except FeedbackFull as exc:
        return _too_many(request, exc.code, exc.message, exc.retry_after)


router = APIRouter()


@router.get("/api/feedback", response_model=FeedbackPage, responses=ERRORS, tags=["admin"])
async def list_feedback(
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    collection: str | None = None,
) -> Any:
    """The feedback stored, newest first, a page at a time.

    Needs `Authorization: Bearer <VERBATIM_ADMIN_TOKEN>` (401 otherwise).
    """
    denied = _unauthorized(state.settings.admin_token, authorization)
    if denied is not None:
        return denied
    if collection is not None:
        state.collection(collection)  # 404 unless it is served
    store = FeedbackStore(state.settings.data_dir)
    total, rows = await run_in_threadpool(store.page, offset, limit, collection)
    page = [FeedbackOut.model_validate(row, from_attributes=True) for row in rows]
    return FeedbackPage(total=total, offset=offset, limit=limit, feedback=page)


@router.post(
    "/api/verify",
    response_model=VerifyResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    tags=["api"],
)
async def verify_citation(state: StateDep, body: VerifyRequest) -> Any:
    """Check a citation against the served index: `current` (same text, same offsets), `moved`
    (the text elsewhere in the document: its new offsets), `changed` (the document no longer
    has the text) or `gone` (no such document). White space differences do not count."""
    index = state.collection(body.collection).answering
    citation = Citation(body.doc_id, body.start, body.end, body.text, body.content_hash)
    found = await run_in_threadpool(verify, IndexTexts(index), citation)
    return VerifyResponse.model_validate(found, from_attributes=True)


def feedback_router(settings: Settings) -> APIRouter:
    """Every feedback and verify route of an app. The two that store feedback (the API's and
    the form's) share one rate limit per client address, and refuse questions longer than
    `settings.max_question_chars` (in their type, made here per app)."""
    limit = RateLimit(settings.feedback_per_minute)
    store = FeedbackStore(settings.data_dir)
    Posted = feedback_request(settings.max_question_chars)
    routes = APIRouter()
    busy = "too much feedback from your address; wait a minute"

    @routes.post(
        "/api/feedback",
        status_code=201,
        response_model=FeedbackCreated,
        responses=ERRORS,
        tags=["feedback"],
    )
    async def post_feedback(
        request: Request,
        state: StateDep,
        body: Annotated[Posted, Body()],  # type: ignore[valid-type]  # a class made at run time
    ) -> Any:
        """Record whether a quote answered the question (helpful or unhelpful): eval data for
        `verbatim feedback export`. The quote is cited as /api/ask returned it."""
        wait = limit.retry_after(_client(request))
        if wait is not None:
            return _too_many(request, "rate_limited", busy, wait)
        stored = await _submit(request, state, store, body)
        return stored if isinstance(stored, Response) else FeedbackCreated(id=stored)

    @routes.post("/feedback", include_in_schema=False)
    async def post_form(request: Request, state: StateDep) -> Response:
        """The quote cards' buttons without JavaScript: store, then back to the same answer."""
        wait = limit.retry_after(_client(request))
        if wait is not None:
            return _too_many(request, "rate_limited", busy, wait)
        form = await request.form()
        try:
            body = Posted.model_validate(_form_fields(form, Posted), strict=False)
        except ValidationError as exc:
            first = exc.errors()[0]
            return page_error(request, 422, f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
        stored = await _submit(request, state, store, body)
        if isinstance(stored, Response):
            return stored
        return RedirectResponse(_back_to_answer(body, form), 303)

    routes.include_router(router)
    return routes
