"""The web form's pages answer an invalid query parameter with their HTML error page (422),
as the API answers with JSON. Fake embedder: fast."""

import pytest
from fastapi.testclient import TestClient

from verbatim.server import create_app
from verbatim.server.middleware import SECURITY_HEADERS


@pytest.fixture(scope="module")
def client(shared_engine):
    with TestClient(create_app(shared_engine.settings, engine=shared_engine)) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/?q=oil&k=1e3", "k"),
        ("/?k=abc", "k"),
        ("/documents/bread?start=abc&end=4", "start"),
        ("/documents/bread?start=0&end=1.5", "end"),
    ],
)
def test_the_pages_answer_invalid_parameters_with_the_html_error_page(client, path, field):
    response = client.get(path)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Error 422</h1>" in response.text and f"{field}:" in response.text
    assert (
        response.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    )


@pytest.mark.parametrize("path", ["/api/ask?q=oil&k=1e3", "/api/documents?offset=-1"])
def test_the_api_keeps_answering_json(client, path):
    response = client.get(path)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
