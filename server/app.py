"""The web form and JSON API over the same `answer()` as the CLI."""

from __future__ import annotations

import hmac
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from verbatim import __version__
from verbatim.errors import Forbidden, NotFound, VerbatimError
from verbatim.records import Answer, DocumentMeta
from verbatim.settings import Settings

HERE = Path(__file__).resolve().parent
MAX_BODY = 16 * 1024
JSON = "application/json"
SLOT_WAIT = 1.0  # seconds a request may wait for an answer slot before a 503 (replies within 2.5 s)
NOT_BLANK = r"[^\s\x00-\x1f\x7f-\x9f]"  # one character that is neither space nor control
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
EXAMPLE = "What if my husband refuses couples therapy?"
ANSWER_JSON = TypeAdapter(Answer)


def _whole(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so do we (but not "2" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


QuoteCount = Annotated[int, Field(ge=1, le=20), BeforeValidator(_whole)]


class AskRequest(BaseModel):
    """A question, and how many quotes to return."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(
        description="The question, 1 to 1,000 characters, not only white space.",
        examples=[EXAMPLE],
        min_length=1,
        max_length=1000,
        pattern=NOT_BLANK,
    )
    k: QuoteCount | None = Field(default=None, description="Quotes to return (1-20).")
    filters: Filters | None = None


class Filters(BaseModel):
    """Restrict the answer to some documents."""

    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[str] | None = Field(default=None, description="Document ids to search.")
    author: str | None = None
    site: str | None = None


AskRequest.model_rebuild()


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


class DocumentSummary(BaseModel):
    id: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None


class DocumentPage(BaseModel):
    total: int
    offset: int
    limit: int
    documents: list[DocumentSummary]


class DocumentOut(DocumentSummary):
    content_hash: str
    text: str
    metadata: dict[str, Any]
    sections: list[dict[str, Any]]


class Health(BaseModel):
    status: str
    generation: str
    model: str
    documents: int
    passages: int
    sentences: int
    thresholds: dict[str, float] | None
    uptime_s: float


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (403, 404, 413, 415, 422, 503)
}


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "status": status}}
    return JSONResponse(body, status_code=status, headers=headers)


class Busy(Exception):
    """Every answer slot is taken."""


class State:
    """What requests share: the engine (read-only) and the slots bounding concurrent answers."""

    def __init__(self, settings: Settings, engine) -> None:
        self.settings = settings
        self.engine = engine
        self.started = time.time()
        self.slots = threading.BoundedSemaphore(settings.max_concurrent)
        self._reloading = threading.Lock()
        self._retired: list[tuple[float, object]] = []

    def reload(self) -> str:
        """Serve the data directory's current generation from now on, without downtime.

        The new index is loaded beside the old one and swapped in with one assignment; answers
        already running finish on the old index, which is closed a minute later. If loading
        fails, the old index keeps serving and the error is raised.
        """
        from verbatim.index import load_index

        from verbatim.engine import Engine

        with self._reloading:
            old = self.engine
            index = load_index(old.settings)
            if index.generation == old.index.generation:
                index.close()
                return index.generation
            self.engine = Engine(old.settings, index, old.embedder)
            now = time.monotonic()
            for _retired_at, engine in [r for r in self._retired if now - r[0] > 60]:
                engine.close()
            self._retired = [r for r in self._retired if now - r[0] <= 60] + [(now, old)]
            return index.generation

    def ask(self, question: str, k: int | None, filters: dict | None = None) -> Answer:
        if not self.slots.acquire(timeout=SLOT_WAIT):
            raise Busy()
        try:
            return self.engine.ask(question, k=k, filters=filters)
        finally:
            self.slots.release()


def create_app(settings: Settings, engine=None) -> FastAPI:
    """The application. The index is loaded at start-up (built from the corpus on first run).

    Args:
        engine: an already open `Engine` (tests); by default one is opened from `settings`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from verbatim.engine import open_engine

        own = engine is None
        app.state.verbatim = State(settings, engine or open_engine(settings, build_if_missing=True))
        yield
        if own:
            app.state.verbatim.engine.close()

    app = FastAPI(
        title="Verbatim",
        summary="Answers questions only with verbatim, attributed quotes from its documents.",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _mount_swagger(app)

    app.add_middleware(Guard, settings=settings, templates=templates)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if request.url.path.startswith("/api/"):
            return error_response(exc.status_code, code, str(exc.detail), exc.headers)
        return _page_error(templates, request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = f"{where}: {first.get('msg', 'invalid input')}" if where else "invalid input"
        return error_response(422, "invalid_request", message)

    @app.exception_handler(VerbatimError)
    async def library_error(request: Request, exc: VerbatimError):
        if request.url.path.startswith("/api/"):
            return error_response(exc.status, exc.code, exc.message)
        return _page_error(templates, request, exc.status, exc.message)

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        headers = {"Retry-After": "1"}
        if request.url.path.startswith("/api/"):
            return error_response(503, "busy", "too many questions at once; retry", headers)
        return _page_error(templates, request, 503, "Too many questions at once; retry.", headers)

    def state(request: Request) -> State:
        return request.app.state.verbatim

    # The answer endpoints are `async` and hand only the answer itself to a worker thread: a
    # plain `def` endpoint costs FastAPI two thread hops per request (the endpoint, then the
    # response's validation), and the Answer is already typed, so it is written out directly.
    async def respond(request: Request, question: str, k: int | None, filters=None) -> Response:
        answer = await run_in_threadpool(state(request).ask, question, k, filters)
        return Response(ANSWER_JSON.dump_json(answer), media_type=JSON)

    @app.post("/api/ask", response_model=Answer, responses=ERRORS, tags=["api"])
    async def ask_post(request: Request, body: Annotated[AskRequest, Body()]) -> Response:
        """Answer a question with verbatim, attributed quotes (or abstain)."""
        filters = body.filters.model_dump(exclude_none=True) if body.filters else None
        return await respond(request, body.question, body.k, filters)

    @app.get("/api/ask", response_model=Answer, responses=ERRORS, tags=["api"])
    async def ask_get(
        request: Request,
        q: Annotated[
            str,
            Query(
                description="The question.",
                examples=[EXAMPLE],
                min_length=1,
                max_length=1000,
                pattern=NOT_BLANK,
            ),
        ],
        k: Annotated[int | None, Query(ge=1, le=20)] = None,
    ) -> Response:
        """The same as POST /api/ask, for links and curl."""
        return await respond(request, q, k)

    @app.get("/api/documents", response_model=DocumentPage, tags=["api"])
    def documents(
        request: Request,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> DocumentPage:
        """The indexed documents, a page at a time."""
        index = state(request).engine.index
        ids = list(index.documents)
        page = [_summary(index.documents[i]) for i in ids[offset : offset + limit]]
        return DocumentPage(total=len(ids), offset=offset, limit=limit, documents=page)

    @app.get(
        "/api/documents/{doc_id:path}", response_model=DocumentOut, responses=ERRORS, tags=["api"]
    )
    def document(request: Request, doc_id: str) -> DocumentOut:
        """One document: metadata, sections and the clean text all offsets point into."""
        doc = _document(state(request), doc_id)
        return DocumentOut(
            **_summary(state(request).engine.index.documents[doc_id]).model_dump(),
            content_hash=doc.content_hash,
            text=doc.text,
            metadata=doc.metadata,
            sections=[asdict(s) for s in doc.sections],
        )

    @app.post("/api/admin/reload", response_model=Health, responses=ERRORS, tags=["admin"])
    async def reload(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Health:
        """Switch to the newest index generation (after `verbatim ingest`), without downtime.

        Needs `Authorization: Bearer <VERBATIM_ADMIN_TOKEN>`; disabled when no token is set.
        `kill -HUP <pid of verbatim serve>` does the same.
        """
        token = settings.admin_token
        if not token:
            raise Forbidden("reloading over HTTP is disabled; set VERBATIM_ADMIN_TOKEN")
        given = (authorization or "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.encode()):
            raise Forbidden("wrong or missing admin token (Authorization: Bearer <token>)")
        await run_in_threadpool(state(request).reload)  # loading takes a while; keep serving
        return await health(request)

    @app.get("/api/health", response_model=Health, tags=["api"])
    async def health(request: Request) -> Health:
        """Which index generation is served, and how big it is."""
        s = state(request)
        index = s.engine.index
        counts = index.manifest["counts"]
        return Health(
            status="ok",
            generation=index.generation,
            model=index.manifest["model"],
            documents=counts["documents"],
            passages=counts["passages"],
            sentences=counts["sentences"],
            thresholds=dict(zip(("passage", "sentence"), index.thresholds, strict=True))
            if index.thresholds
            else None,
            uptime_s=round(time.time() - s.started, 1),
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, q: str | None = None, k: int | None = None):
        s = state(request)
        context: dict[str, Any] = {
            "q": q or "",
            "examples": _examples(s),
            "answer": None,
            "error": None,
        }
        status = 200
        if q is not None:
            try:
                k = min(max(k or s.settings.default_k, 1), 20)
                result = s.ask(q, k)
                context["answer"] = result
                context["cards"] = [_card(s, x) for x in result.quotes]
                context["near"] = [_card(s, x) for x in result.near_misses]
            except VerbatimError as exc:
                context["error"], status = exc.message, exc.status
        return templates.TemplateResponse(request, "index.html", context, status_code=status)

    @app.get("/documents/{doc_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def show_document(
        request: Request, doc_id: str, start: int | None = None, end: int | None = None
    ):
        doc = _document(state(request), doc_id)
        mark = (
            (start, end)
            if start is not None and end is not None and (0 <= start < end <= len(doc.text))
            else None
        )
        return templates.TemplateResponse(
            request,
            "document.html",
            {
                "doc": doc,
                "blocks": _blocks(doc, mark),
                "safe_url": _safe_url(doc.url),
            },
        )

    return app


class Guard:
    """Refuses what should never reach an endpoint, and adds the security headers.

    Bodies over 16 KiB get 413, a POST /api/ask that is not JSON 415, and a question arriving
    while every answer slot and queue place is taken a quick 503 with Retry-After (a quick 503
    beats a slow 200). A plain ASGI middleware: it costs microseconds, not a task per request.
    """

    def __init__(self, app, settings: Settings, templates) -> None:
        self.app = app
        self.limit = settings.max_concurrent + settings.max_waiting
        self.templates = templates
        self.admitted = 0  # requests computing or waiting for an answer (event loop's own count)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        length = request.headers.get("content-length")
        kind = request.headers.get("content-type", "")
        counted = _answers(request)
        refusal = None
        if length and (not length.isdigit() or int(length) > MAX_BODY):
            refusal = error_response(413, "body_too_large", "request body is over 16 KiB")
        elif request.method == "POST" and request.url.path == "/api/ask" and JSON not in kind:
            refusal = error_response(
                415,
                "unsupported_media_type",
                "send the question as JSON (Content-Type: application/json)",
            )
        elif counted and self.admitted >= self.limit:
            retry = {"Retry-After": "1"}
            refusal = (
                error_response(503, "busy", "too many questions at once; retry", retry)
                if request.url.path.startswith("/api/")
                else _page_error(self.templates, request, 503, "Too many questions; retry.", retry)
            )

        async def secured(message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        self.admitted += counted
        try:
            await self.app(scope, receive, secured)
        finally:
            self.admitted -= counted


def _answers(request: Request) -> bool:
    """Whether the request will compute an answer (and so needs an answer slot)."""
    path = request.url.path
    return path == "/api/ask" or (path == "/" and "q" in request.query_params)


def _page_error(templates, request, status: int, message: str, headers=None):
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message},
        status_code=status,
        headers=headers,
    )


def _summary(doc: DocumentMeta) -> DocumentSummary:
    return DocumentSummary(
        id=doc.id, title=doc.title, author=doc.author, date=doc.date, url=doc.url, site=doc.site
    )


def _document(state: State, doc_id: str):
    if doc_id not in state.engine.index.documents:
        raise NotFound(f"no document with id {doc_id!r}; GET /api/documents lists them")
    return state.engine.index.document(doc_id)


def _safe_url(url: str | None) -> str | None:
    return url if url and url.lower().startswith(("http://", "https://")) else None


def _examples(state: State) -> list[str]:
    index = state.engine.index
    titles = [d.title for d in index.documents.values() if d.title.rstrip().endswith("?")]
    return (list(state.settings.examples) or [EXAMPLE, *titles])[:4]


def _card(state: State, quote) -> dict:
    text = state.engine.index.text(quote.doc_id)
    return {
        "quote": quote,
        "before": text[quote.passage_start : quote.start],
        "after": text[quote.end : quote.passage_end],
        "source": _safe_url(quote.link) or _safe_url(quote.url),
    }


def _blocks(doc, mark: tuple[int, int] | None) -> list[dict]:
    """The document as paragraphs; the marked span split out so the template can <mark> it."""
    spans = []
    for section in doc.sections:
        spans.append(
            (section.start, section.start + len(section.heading), "heading")
            if section.heading
            else None
        )
        spans.extend((a, b, "p") for a, b in section.paragraphs)
    blocks = []
    for span in filter(None, spans):
        a, b, kind = span
        parts = [(doc.text[a:b], False)]
        if mark and mark[0] < b and mark[1] > a:
            s, e = max(a, mark[0]), min(b, mark[1])
            parts = [(doc.text[a:s], False), (doc.text[s:e], True), (doc.text[e:b], False)]
        role = next((x.role for x in doc.sections if x.start <= a < x.end), "article")
        blocks.append(
            {
                "kind": kind,
                "parts": parts,
                "role": role,
                "first_mark": bool(mark) and a <= mark[0] < b,
            }
        )
    return blocks


def _mount_swagger(app: FastAPI) -> None:
    """OpenAPI docs at /docs from the locally installed Swagger UI (no CDN, CSP-clean)."""
    import swagger_ui_bundle

    app.mount(
        "/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger"
    )

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Verbatim API"
            "</title><link rel='stylesheet' href='/static/swagger/swagger-ui.css'></head><body>"
            "<div id='swagger-ui'></div><script src='/static/swagger/swagger-ui-bundle.js'>"
            "</script><script src='/static/swagger-init.js'></script></body></html>"
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)
