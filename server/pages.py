"""The HTML pages: the question form with its answer, a document with a quote marked, and the
API docs. Templates are package data in `templates/`, autoescaped."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from verbatim.errors import VerbatimError
from verbatim.records import Document, Filters, Quote, web_url
from verbatim.server.models import EXAMPLE, filter_query
from verbatim.server.state import State, StateDep
from verbatim.settings import MAX_K

# The query parameters an answer page keeps through a feedback post (its collection comes
# with each quote).
CARRIED = ("k", "documents", "author", "site", "date_from", "date_to", "path")
TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

router = APIRouter(include_in_schema=False)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The template `name` filled in with `context`."""
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status, headers=headers)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    state: StateDep,
    filters: Annotated[Filters | None, Depends(filter_query)],
    q: str | None = None,
    k: int | None = None,
    collection: str | None = None,
):
    """The form; with `q`, the answer under it (an out-of-range `k` is clamped, not refused).
    A collection and filters narrow it; all of it is in the URL, so an answer can be shared."""
    collection = collection or None
    context: dict[str, Any] = {
        "q": q or "",
        "max_question_chars": state.settings.max_question_chars,
        "examples": [],
        "answer": None,
        "error": None,
        "collections": list(state.engines),
        "collection": collection or state.collection().answering.collection,
        "filters": filters or Filters(),
        "carried": [(key, v) for key, v in request.query_params.multi_items() if key in CARRIED],
    }
    status = 200
    try:
        context["examples"] = _examples(state, collection)
        if q is not None:
            k = min(max(k or state.settings.default_k, 1), MAX_K)
            result = state.ask(q, k, filters, collection)
            context["answer"] = result
            context["cards"] = [_card(state, x) for x in result.quotes]
            context["near"] = [_card(state, x) for x in result.near_misses]
    except VerbatimError as exc:
        context["error"], status = exc.message, exc.status
    return render(request, "index.html", context, status=status)


@router.get("/documents/{doc_id:path}", response_class=HTMLResponse)
def show_document(
    request: Request,
    state: StateDep,
    doc_id: str,
    start: int | None = None,
    end: int | None = None,
    collection: str | None = None,
):
    """A whole document; `start` and `end` (character offsets) mark a quote in it."""
    doc = state.document(doc_id, collection or None)
    mark = (
        (start, end)
        if start is not None and end is not None and (0 <= start < end <= len(doc.text))
        else None
    )
    context = {
        "doc": doc,
        "blocks": _blocks(doc, mark),
        "safe_url": web_url(doc.url),
        "mark_page": bisect.bisect_right(doc.pages, mark[0]) if mark and doc.pages else None,
    }
    return render(request, "document.html", context)


@router.get("/docs", response_class=HTMLResponse)
def docs() -> str:
    """OpenAPI docs from the locally installed Swagger UI (no CDN, CSP-clean)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Verbatim API"
        "</title><link rel='stylesheet' href='/static/swagger/swagger-ui.css'></head><body>"
        "<div id='swagger-ui'></div><script src='/static/swagger/swagger-ui-bundle.js'>"
        "</script><script src='/static/swagger-init.js'></script></body></html>"
    )


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)


def _examples(state: State, collection: str | None) -> list[str]:
    index = state.collection(collection).answering
    titles = [d.title for d in index.documents.values() if d.title.rstrip().endswith("?")]
    return (list(state.settings.examples) or [EXAMPLE, *titles])[:4]


def _card(state: State, quote: Quote) -> dict[str, Any]:
    text = state.collection(quote.collection).answering.text(quote.doc_id)
    return {
        "quote": quote,
        "before": text[quote.passage_start : quote.start],
        "after": text[quote.end : quote.passage_end],
        "source": web_url(quote.link) or web_url(quote.url),
    }


def _blocks(doc: Document, mark: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The document as paragraphs; the marked span split out so the template can <mark> it.

    In a paged document (PDF) each block knows its page, and the first block of each page says
    so (`new_page`), so the template can show where pages begin. A heading is shown where its
    text is, not again where its section goes on after a page break.
    """
    spans = []
    for section in doc.sections:
        if section.heading and doc.text.startswith(section.heading, section.start):
            spans.append((section.start, section.start + len(section.heading), "heading"))
        spans.extend((a, b, "p") for a, b in section.paragraphs)
    blocks = []
    shown_page = 0
    for a, b, kind in spans:
        parts = [(doc.text[a:b], False)]
        if mark and mark[0] < b and mark[1] > a:
            s, e = max(a, mark[0]), min(b, mark[1])
            parts = [(doc.text[a:s], False), (doc.text[s:e], True), (doc.text[e:b], False)]
        role = next((x.role for x in doc.sections if x.start <= a < x.end), "article")
        page = bisect.bisect_right(doc.pages, a) if doc.pages else None
        blocks.append(
            {
                "kind": kind,
                "parts": parts,
                "role": role,
                "first_mark": mark is not None and a <= mark[0] < b,
                "page": page,
                "new_page": page is not None and page != shown_page,
            }
        )
        shown_page = page or 0
    return blocks
