"""`Guard`: what every request passes through before any route."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from verbatim.server.errors import busy_response, error_response
from verbatim.server.models import JSON
from verbatim.settings import Settings

MAX_BODY = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Guard:
    """Refuses what should never reach an endpoint, and adds the security headers.

    Bodies over 16 KiB get 413, a POST /api/ask that is not JSON 415, and a question arriving
    while every answer slot and queue place is taken a quick 503 with Retry-After (a quick 503
    beats a slow 200). A plain ASGI middleware: it costs microseconds, not a task per request.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_concurrent + settings.max_waiting
        self.admitted = 0  # requests computing or waiting for an answer (event loop's own count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        counted = _answers(request)

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        refusal = self.refusal(request, counted)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        self.admitted += counted
        try:
            await self.app(scope, receive, secured)
        finally:
            self.admitted -= counted

    def refusal(self, request: Request, counted: bool) -> Response | None:
        """The response refusing `request` at the door, or None to let it in."""
        length = request.headers.get("content-length")
        if length and (not length.isdigit() or int(length) > MAX_BODY):
            return error_response(413, "body_too_large", "request body is over 16 KiB")
        kind = request.headers.get("content-type", "")
        if request.method == "POST" and request.url.path == "/api/ask" and JSON not in kind:
            return error_response(
                415,
                "unsupported_media_type",
                "send the question as JSON (Content-Type: application/json)",
            )
        if counted and self.admitted >= self.limit:
            return busy_response(request)
        return None


def _answers(request: Request) -> bool:
    """Whether the request will compute an answer (and so needs an answer slot); an MCP
    message (POST /mcp) counts as one, as most are an `ask`."""
    path = request.url.path
    if path == "/mcp":
        return request.method == "POST"
    return path == "/api/ask" or (path == "/" and "q" in request.query_params)
