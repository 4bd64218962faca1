"""The admin routes share one rule: `Authorization: Bearer <token>`, nothing else. Fake
embedder: fast."""

import pytest
from fastapi.testclient import TestClient

from verbatim.server import create_app
from verbatim.server.auth import admin_refusal

TOKEN = "s3cret"  # noqa: S105
# (method, path, status when refused): the statuses are those documented in the README.
ROUTES = [("POST", "/api/admin/reload", 403), ("GET", "/api/feedback", 401)]


@pytest.fixture(scope="module")
def client(shared_engine):
    settings = shared_engine.settings.model_copy(update={"admin_token": TOKEN})
    with TestClient(create_app(settings, engine=shared_engine)) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "status"), ROUTES)
@pytest.mark.parametrize(
    "header",
    [
        TOKEN,  # the bare token: reload accepted it, the feedback did not
        f"Basic {TOKEN}",
        f"Bearer{TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        f"{TOKEN} Bearer",
    ],
)
def test_every_admin_route_refuses_anything_but_bearer(client, method, path, status, header):
    refused = client.request(method, path, headers={"Authorization": header})
    assert refused.status_code == status, refused.text
    assert "Authorization: Bearer <token>" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("method", "path", "status"), ROUTES)
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])  # RFC 7235: any case
def test_every_admin_route_takes_the_bearer_token(client, method, path, status, scheme):
    response = client.request(method, path, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200, response.text


def test_without_a_token_set_the_admin_routes_are_off():
    for given in (None, "", "Bearer ", "Bearer anything"):
        assert "VERBATIM_ADMIN_TOKEN" in (admin_refusal(None, given, "reloading") or "")
        assert "VERBATIM_ADMIN_TOKEN" in (admin_refusal("", given, "reloading") or "")
