"""Errors as responses: JSON `{"error": {code, message, status}}` under /api/, the error page
elsewhere. `HANDLERS` is the app's `exception_handlers`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from verbatim.errors import VerbatimError
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
    return request.url.path.startswith("/api/")


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
    """422 naming the first invalid field, e.g. `question: String should have at most ...`."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
    message = f"{where}: {first.get('msg', 'invalid input')}" if where else "invalid input"
    return error_response(422, "invalid_request", message)


async def library_error(request: Request, exc: VerbatimError) -> Response:
    if _api(request):
        return error_response(exc.status, exc.code, exc.message)
    return page_error(request, exc.status, exc.message)


async def busy(request: Request, exc: Busy) -> Response:
    return busy_response(request)


HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    StarletteHTTPException: http_error,
    RequestValidationError: invalid,
    VerbatimError: library_error,
    Busy: busy,
}
