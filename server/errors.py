"""Errors as responses: JSON `{"error": {code, message, status}}` under /api/, the error page
elsewhere. `HANDLERS` is the app's `exception_handlers`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from verbatim.errors import VerbatimError, storage_full
from verbatim.server.pages import render
from verbatim.server.state import Busy

# The one answer to a question that found no answer slot, whether Guard refuses it at the door
# (every slot and queue place taken) or it waited `SLOT_WAIT` in the queue in vain.
BUSY = "too many questions at once; retry"
RETRY = {"Retry-After": "1"}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The API's error body, with `status` both in it and as the HTTP status."""
    body = {"error": {"code": code, "message": message, "status": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def page_error(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The HTML error page."""
    context = {"status": status, "message": message}
    return render(request, "error.html", context, status=status, headers=headers)


def _api(request: Request) -> bool:
    """Whether errors are JSON: the API's, and the MCP endpoint's (/mcp)."""
    return request.url.path.startswith("/api/") or request.url.path == "/mcp"


def busy_response(request: Request) -> Response:
    """503 with Retry-After: JSON for the API, the error page for the form."""
    if _api(request):
        return error_response(503, "busy", BUSY, RETRY)
    return page_error(request, 503, BUSY, RETRY)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if _api(request):
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
    return page_error(request, exc.status_code, str(exc.detail))


async def invalid(request: Request, exc: RequestValidationError) -> Response:
    """422 naming the first invalid field, e.g. `question: String should have at most ...`:
    JSON for the API, the error page for the web form's pages (`/?k=1e3`)."""
    message = validation_message(exc.errors())
    if not _api(request):
        return page_error(request, 422, message)
    return error_response(422, "invalid_request", message)


def validation_message(errors: Sequence[Any]) -> str:
    """The message naming the first invalid field of a validation error's `errors()`: the
    API's 422 and the MCP tools' errors say the same."""
    first = errors[0] if errors else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    return f"{where}: {first.get('msg', 'invalid input')}" if where else "invalid input"


async def library_error(request: Request, exc: VerbatimError) -> Response:
    if _api(request):
        return error_response(exc.status, exc.code, exc.message)
    return page_error(request, exc.status, exc.message)


async def busy(request: Request, exc: Busy) -> Response:
    return busy_response(request)


async def storage_error(request: Request, exc: OSError | sqlite3.Error) -> Response:
    """A full disk under any route: 507 naming the data directory, as a library error would
    be answered. Any other OS or SQLite error is not the client's to fix: it stays a 500."""
    state = getattr(request.app.state, "verbatim", None)
    full = storage_full(exc, state.settings.data_dir if state else "the data directory")
    if full is None:
        raise exc
    return await library_error(request, full)


HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    StarletteHTTPException: http_error,
    RequestValidationError: invalid,
    VerbatimError: library_error,
    Busy: busy,
    OSError: storage_error,
    sqlite3.Error: storage_error,
}
