"""The admin routes' one rule: `Authorization: Bearer <VERBATIM_ADMIN_TOKEN>` (RFC 6750), the
token compared in constant time; without a token set, they are disabled."""

from __future__ import annotations

import hmac

USAGE = "Authorization: Bearer <token>"


def admin_refusal(token: str | None, authorization: str | None, action: str) -> str | None:
    """Why a request may not do `action` (e.g. "reloading"), or None when its Authorization
    header is `Bearer <token>`. The scheme's case does not matter; a bare token is refused."""
    if not token:
        return f"{action} over HTTP is disabled; set VERBATIM_ADMIN_TOKEN"
    return bearer_refusal(token, authorization, "admin token")


def bearer_refusal(token: str, authorization: str | None, name: str) -> str | None:
    """Why `authorization` is not `Bearer <token>` (naming the token `name`), or None when it
    is. The admin routes' rule, and the MCP endpoint's (`VERBATIM_MCP_TOKEN`)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return f"the {name} is required ({USAGE})"
    if not hmac.compare_digest(given.encode(), token.encode()):
        return f"wrong {name} ({USAGE})"
    return None
