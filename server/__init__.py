"""FastAPI JSON API and the server-rendered web form. Entry point: `create_app(settings)`."""

from verbatim.server.app import create_app

__all__ = ["create_app"]
