"""The MCP server: answers, documents and citation checks as tools and resources for AI agents
(Model Context Protocol, on the official `mcp` SDK's `MCPServer`). One implementation, two
transports: stdio (`verbatim mcp`, what desktop assistants launch) and streamable HTTP at `/mcp`
beside the form and the API (`verbatim serve`).

Each tool validates its arguments with the HTTP API's own request models and answers through
the same `State` (its answer slots included), so its limits, errors and messages are the API's:
an error is a tool result with `isError` and the message the API would give. Nothing here writes
to the index.
"""

# No `from __future__ import annotations` here: the SDK reads the tools' signatures and return
# annotations at run time.

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from itertools import islice
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.mcpserver.resources import ResourceSecurity
from mcp.server.mcpserver.tools import Tool
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.uri_template import UriTemplate
from mcp.types import (
    CallToolResult,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from verbatim import __version__
from verbatim.errors import VerbatimError
from verbatim.records import Answer, Document, Quote
from verbatim.server import api, feedback
from verbatim.server.auth import bearer_refusal
from verbatim.server.errors import BUSY, error_response, validation_message
from verbatim.server.models import (
    COLLECTION,
    CollectionList,
    DocumentPage,
    Filters,
    ask_request,
)
from verbatim.server.state import Busy, State
from verbatim.settings import MAX_K, Settings

DOCUMENT_URI = "verbatim://{collection}/{+doc_id}"  # a document as an MCP resource
READ_CHARS = 4_000  # what read_document returns without offsets: one page
MAX_READ_CHARS = 20_000  # the most one read_document call returns
LISTED = 500  # resources per resources/list page
LOOPBACK = ("127.0.0.1", "localhost", "::1")
READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
_URI = UriTemplate.parse(DOCUMENT_URI)

INSTRUCTIONS = """\
Verbatim answers questions only with verbatim quotes from its documents. Call `ask` first.
Quote each quote's text exactly, in quotation marks, with its attribution (title, author, date)
and its link; never present a paraphrase as a quote. When `abstained` is true the documents do
not address the question: say so, and do not answer from the near misses."""


def document_uri(collection: str, doc_id: str) -> str:
    """The MCP resource URI of a document: verbatim://<collection>/<doc id>."""
    return _URI.expand({"collection": collection, "doc_id": doc_id})


class QuoteOut(BaseModel):
    """A verbatim quote: `text` is exactly the document's clean text [start, end)."""

    model_config = ConfigDict(extra="forbid")  # a field `Quote` gains must be added here

    text: str = Field(description="The exact words: quote them as they are, in quotation marks.")
    doc_id: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None
    section: str = Field(description="The heading the quote is under.")
    role: str = Field(description="Whose voice the section is (e.g. a reader's letter).")
    passage_id: str
    passage_start: int
    passage_end: int
    start: int = Field(description="Character offset of the quote in the document's text.")
    end: int
    content_hash: str = Field(description="The document's hash; verify_citation checks it.")
    score: float
    link: str | None = Field(
        description="The source with a text fragment that highlights the quote: give it."
    )
    also_in: list[str] = Field(description="Other documents holding the same text.")
    page: int | None = Field(description="1-based page of the quote (PDF), else null.")
    kind: str = Field(
        default="prose",
        description='What the quote is: "prose", "code" (a code block: show it as code, '
        'lines kept), "item", "row", "term", "definition".',
    )
    lead_in: int = Field(
        default=0,
        description="Characters of the quote's text before the block it introduces "
        '(a lead-in such as "For example:" quoted with its code or list); 0 when none.',
    )
    collection: str
    resource: str = Field(description="The document as an MCP resource (read_document).")


class AskResult(BaseModel):
    """The answer: quotes in the order to show them, or an abstention with its reason."""

    question: str
    abstained: bool = Field(description="True: the documents do not address the question.")
    reason: str | None = Field(description="Why it abstained; null when it answered.")
    quotes: list[QuoteOut] = Field(description="The answer, in the order to show it.")
    near_misses: list[QuoteOut] = Field(
        description="With an abstention: the closest passages, NOT an answer; do not cite them "
        "as one."
    )
    collection: str
    generation: str = Field(description="The index generation that answered.")
    threshold: float
    timing_ms: float


class DocumentText(BaseModel):
    """A run of a document's exact text: `text` is the document's text [start, end)."""

    doc_id: str
    collection: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None
    content_hash: str
    length: int = Field(description="The whole document's length in characters.")
    start: int
    end: int
    text: str
    more_before: bool = Field(description="Text precedes `start`: read again with a lower one.")
    more_after: bool = Field(description="Text follows `end`: read again from `end`.")
    resource: str


class ReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    doc_id: str = Field(min_length=1, description="The document id (a quote's doc_id).")
    start: int | None = Field(default=None, ge=0, description="Where to start (a quote's start).")
    end: int | None = Field(default=None, ge=0, description="Where to end (a quote's end).")
    context: int = Field(
        default=300, ge=0, le=5_000, description="Characters added around start..end, each side."
    )
    collection: str | None = COLLECTION


class ListRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    collection: str | None = COLLECTION
    filters: Filters | None = None
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=200)


class NoArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OffsetOutOfRange(VerbatimError):
    status = 422
    code = "invalid_request"


def _given(model: type[BaseModel], **arguments: Any) -> Any:
    """`arguments` (those given) as `model`, validated as the HTTP API validates a JSON body."""
    given = {name: value for name, value in arguments.items() if value is not None}
    return model.model_validate_json(json.dumps(given))


def _quote(q: Quote) -> QuoteOut:
    return QuoteOut(**asdict(q), resource=document_uri(q.collection, q.doc_id))


def _attributed(q: Quote) -> str:
    """A quote in quotation marks, its attribution line, and its link (or resource)."""
    who = ", ".join(x for x in (q.author, q.site, q.date) if x)
    line = (
        f"— {q.title}"
        + (f", {who}" if who else "")
        + (f" · {q.section}" if q.section else "")
        + (f" · p. {q.page}" if q.page else "")
        + (" (a reader's letter, not advice)" if q.role == "letter" else "")
        + (" · a code block, lines as quoted" if q.kind == "code" else "")
    )
    where = q.link or document_uri(q.collection, q.doc_id)
    return f"“{q.text}”\n{line}\n{where} [{q.start}:{q.end}]"


def render_answer(answer: Answer) -> str:
    """The answer as text, for clients that read only text."""
    if answer.abstained:
        parts = [f"No answer: {answer.reason}"]
        if answer.near_misses:
            parts.append("Weaker matches (NOT an answer):")
            parts += [_attributed(q) for q in answer.near_misses]
        return "\n\n".join(parts)
    return "\n\n".join(_attributed(q) for q in answer.quotes)


def _read(doc: Document, collection: str, asked: ReadRequest) -> DocumentText:
    """The run of `doc` that `asked` names: start..end with `context` around it, or a page."""
    length = len(doc.text)
    for name in ("start", "end"):
        value = getattr(asked, name)
        if value is not None and value > length:
            raise OffsetOutOfRange(f"{name}: {value} is past the document's end ({length})")
    if asked.start is None and asked.end is None:
        start, end = 0, min(length, READ_CHARS)
    else:
        start = asked.start if asked.start is not None else max(0, (asked.end or 0) - READ_CHARS)
        end = asked.end if asked.end is not None else min(length, start + READ_CHARS)
        if start > end:
            raise OffsetOutOfRange(f"start ({start}) is after end ({end})")
        start, end = max(0, start - asked.context), min(length, end + asked.context)
    if end - start > MAX_READ_CHARS:
        raise OffsetOutOfRange(
            f"that is {end - start:,} characters; read at most {MAX_READ_CHARS:,} at once"
        )
    return DocumentText(
        **{k: getattr(doc, k) for k in ("title", "author", "date", "url", "site")},
        doc_id=doc.id,
        collection=collection,
        content_hash=doc.content_hash,
        length=length,
        start=start,
        end=end,
        text=doc.text[start:end],
        more_before=start > 0,
        more_after=end < length,
        resource=document_uri(collection, doc.id),
    )


async def _result(work: Awaitable[tuple[BaseModel, str]]) -> CallToolResult:
    """The tool's result: structured content with its text rendering, or the error the HTTP
    API would answer, as a tool error."""
    try:
        model, text = await work
    except ValidationError as exc:
        message = validation_message(exc.errors())
    except VerbatimError as exc:
        message = exc.message
    except Busy:
        message = BUSY
    else:
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=model.model_dump(mode="json"),
        )
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


class Tools:
    """The tools, each over the `State` that `state` returns when it is called (the app's, over
    HTTP; one of its own, over stdio). Their parameters are typed `Any` on purpose: the HTTP
    API's request models validate them (and are the published input schemas), so a bad call
    gets the API's message."""

    def __init__(self, settings: Settings, state: Callable[[], State], collection: str | None):
        self.settings = settings
        self.state = state
        self.default = collection  # the collection answering when a call names none
        self.asking = ask_request(settings.max_question_chars)

    async def ask(
        self, question: Any = None, k: Any = None, collection: Any = None, filters: Any = None
    ) -> Annotated[CallToolResult, AskResult]:
        return await _result(
            self._ask(question=question, k=k, collection=collection, filters=filters)
        )

    async def _ask(self, **arguments: Any) -> tuple[BaseModel, str]:
        asked = _given(self.asking, **arguments)
        chosen = asked.filters.record() if asked.filters else None
        state = self.state()
        found = await run_in_threadpool(
            state.ask, asked.question, asked.k, chosen, asked.collection or self.default
        )
        quotes = [_quote(q) for q in found.quotes]
        misses = [_quote(q) for q in found.near_misses]
        fields = {k: v for k, v in asdict(found).items() if k not in ("quotes", "near_misses")}
        return AskResult(**fields, quotes=quotes, near_misses=misses), render_answer(found)

    async def read_document(
        self,
        doc_id: Any = None,
        start: Any = None,
        end: Any = None,
        context: Any = None,
        collection: Any = None,
    ) -> Annotated[CallToolResult, DocumentText]:
        arguments = {"doc_id": doc_id, "start": start, "end": end, "context": context}
        return await _result(self._read(collection=collection, **arguments))

    async def _read(self, **arguments: Any) -> tuple[BaseModel, str]:
        asked: ReadRequest = _given(ReadRequest, **arguments)
        state = self.state()
        name = asked.collection or self.default
        doc = await run_in_threadpool(state.document, asked.doc_id, name)
        found = _read(doc, state.collection(name).answering.collection, asked)
        header = f"{found.title} ({found.doc_id}) [{found.start}:{found.end} of {found.length}]"
        return found, f"{header}\n\n{found.text}"

    async def list_collections(self) -> Annotated[CallToolResult, CollectionList]:
        return await _result(self._collections())

    async def _collections(self) -> tuple[BaseModel, str]:
        found = await api.collections(self.state())
        lines = [f"{c.name}: {c.documents} documents" for c in found.collections]
        return found, "\n".join(lines)

    async def list_documents(
        self, collection: Any = None, filters: Any = None, offset: Any = None, limit: Any = None
    ) -> Annotated[CallToolResult, DocumentPage]:
        arguments = {"filters": filters, "offset": offset, "limit": limit}
        return await _result(self._documents(collection=collection, **arguments))

    async def _documents(self, **arguments: Any) -> tuple[BaseModel, str]:
        asked: ListRequest = _given(ListRequest, **arguments)
        chosen = asked.filters.record() if asked.filters else None
        name = asked.collection or self.default
        page = await run_in_threadpool(
            api.document_page, self.state(), asked.offset, asked.limit, name, chosen
        )
        lines = [
            f"{d.id}: {d.title}" + (f", {d.author}" if d.author else "") for d in page.documents
        ]
        shown = f"{page.offset + 1}-{page.offset + len(page.documents)}" if lines else "none"
        return page, "\n".join([f"documents {shown} of {page.total}", *lines])

    async def verify_citation(
        self,
        doc_id: Any = None,
        start: Any = None,
        end: Any = None,
        content_hash: Any = None,
        text: Any = None,
        collection: Any = None,
    ) -> Annotated[CallToolResult, feedback.VerifyResponse]:
        arguments = {"doc_id": doc_id, "start": start, "end": end, "content_hash": content_hash}
        return await _result(self._verify(text=text, collection=collection, **arguments))

    async def _verify(self, **arguments: Any) -> tuple[BaseModel, str]:
        if arguments["collection"] is None:
            arguments["collection"] = self.default
        asked = _given(feedback.VerifyRequest, **arguments)
        found = await feedback.verify_citation(self.state(), asked)
        where = f" at [{found.start}:{found.end}]" if found.start is not None else ""
        return found, f"{found.status}{where} in generation {found.generation}"


ASK = f"""Answer a question from the indexed documents with verbatim quotes. Call it first for any
question the documents may answer. Each quote is exact text from a document: quote it word for
word in quotation marks, with its attribution (title, author, date) and its link; never present
a paraphrase as a quote. `abstained` true means the documents do not address the question: say
so, and do not answer from `near_misses` (closest passages, not an answer). `k`: quotes, 1 to
{MAX_K}. `filters` narrows to some documents (list_documents gives their ids)."""
READ = """Read the exact text of a document: around a quote (its doc_id, start and end, with
`context` characters each side) or a page (start alone, or nothing for the beginning). Call it
when a quote needs its surroundings before you answer. Offsets are characters of the document's
text, as in ask's quotes."""
COLLECTIONS = """List the collections (document sets) this server answers from, with their sizes.
Call it when the user names a document set, or when a collection is unknown."""
DOCUMENTS = """List the documents of a collection (id, title, author, date, URL), a page at a
time, optionally filtered. Call it to find document ids for ask's filters or read_document."""
VERIFY = """Check a citation against the current index: `current` (same text, same offsets),
`moved` (its new offsets), `changed` (the document no longer has the text) or `gone` (no such
document). Pass a quote from ask as it is. Call it before you reuse a citation from earlier."""


def _tool(fn: Callable[..., Any], description: str, schema: type[BaseModel]) -> Tool:
    """A read-only tool whose input schema is `schema`'s, the model that validates its calls."""
    tool = Tool.from_function(fn, description=description, annotations=READ_ONLY)
    tool.parameters = schema.model_json_schema()
    return tool


def _tools(tools: Tools) -> list[Tool]:
    return [
        _tool(tools.ask, ASK, tools.asking),
        _tool(tools.read_document, READ, ReadRequest),
        _tool(tools.list_collections, COLLECTIONS, NoArguments),
        _tool(tools.list_documents, DOCUMENTS, ListRequest),
        _tool(tools.verify_citation, VERIFY, feedback.VerifyRequest),
    ]


class Server(MCPServer):
    """The SDK's server, listing every served document as a resource, a page at a time."""

    def __init__(self, tools: Tools) -> None:
        super().__init__(
            "verbatim",
            title="Verbatim",
            instructions=INSTRUCTIONS,
            version=__version__,
            tools=_tools(tools),
            log_level="WARNING",
        )
        self.state = tools.state
        security = ResourceSecurity(exempt_params={"doc_id"})  # a key in a table, not a path
        self.resource(DOCUMENT_URI, name="document", mime_type="text/plain", security=security)(
            self.document_text
        )

    async def document_text(self, collection: str, doc_id: str) -> str:
        """A document's clean text, which every quote's offsets point into."""
        try:
            doc = await run_in_threadpool(self.state().document, doc_id, collection)
        except VerbatimError as exc:
            raise ResourceNotFoundError(exc.message) from None
        return doc.text

    # The SDK lists only resources registered one by one; documents change at every reload and
    # may be millions, so they are listed from the served indexes, LISTED at a time.
    async def _handle_list_resources(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        cursor = params.cursor if params else None
        offset = int(cursor) if cursor and cursor.isdigit() else 0
        listed = await run_in_threadpool(self._listed, offset)
        more = len(listed) == LISTED
        return ListResourcesResult(
            resources=listed, next_cursor=str(offset + LISTED) if more else None
        )

    def _listed(self, offset: int) -> list[Resource]:
        found: list[Resource] = []
        for name, engine in self.state().engines.items():
            documents = engine.answering.documents
            if offset >= len(documents):
                offset -= len(documents)
                continue
            for doc_id in islice(documents, offset, offset + LISTED - len(found)):
                meta = documents[doc_id]
                about = ", ".join(x for x in (meta.author, meta.date) if x) or None
                uri = document_uri(name, doc_id)
                found.append(
                    Resource(
                        uri=uri,
                        name=doc_id,
                        title=meta.title,
                        description=about,
                        mime_type="text/plain",
                    )
                )
            offset = 0
            if len(found) == LISTED:
                break
        return found


def create_server(
    settings: Settings, state: Callable[[], State], collection: str | None = None
) -> Server:
    """The MCP server over the `State` that `state` returns; calls that name no collection
    get `collection` (default: the default collection)."""
    return Server(Tools(settings, state, collection))


class Endpoint:
    """`/mcp` on the app: streamable HTTP (stateless, JSON responses), behind a bearer token
    when the server listens beyond localhost (`VERBATIM_MCP_TOKEN`, else the admin token).

    `Guard` counts each POST here as a question, as it counts /api/ask: the same answer slots,
    the same quick 503 when they and the queue are full.
    """

    def __init__(self, settings: Settings, state: Callable[[], State]) -> None:
        self.server = create_server(settings, state)
        self.host = settings.host
        local = settings.host in LOOPBACK
        # On localhost a token is asked for only when VERBATIM_MCP_TOKEN sets one.
        self.token = settings.mcp_token or (None if local else settings.admin_token)
        self.open = local and not self.token

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve while the app runs (a session manager runs once: a new one per start).

        Without a token, on localhost, the SDK refuses Host headers other than localhost's (DNS
        rebinding); with one, the token is the guard (a page cannot know it), so a reverse
        proxy may forward its own Host."""
        guard = (
            None if self.open else TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        self.server.streamable_http_app(
            stateless_http=True, json_response=True, host=self.host, transport_security=guard
        )
        async with self.server.session_manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        refusal = self.refusal(headers.get(b"authorization", b"").decode("latin-1"))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.server.session_manager.handle_request(scope, receive, send)

    def refusal(self, authorization: str) -> Response | None:
        """The response refusing a request with this Authorization header, or None."""
        if self.open:
            return None
        if not self.token:
            message = (
                "MCP over HTTP beyond localhost needs a token; set VERBATIM_MCP_TOKEN "
                "(or VERBATIM_ADMIN_TOKEN)"
            )
            return error_response(403, "forbidden", message)
        refused = bearer_refusal(self.token, authorization, "MCP token")
        if refused is None:
            return None
        return error_response(401, "unauthorized", refused, {"WWW-Authenticate": "Bearer"})
