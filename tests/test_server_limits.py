"""The server's limits come from settings, and it says "busy" one way. Fake embedder: fast."""

import threading
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from verbatim.engine import ingest_paths, open_engine
from verbatim.server import create_app, errors, state
from verbatim.settings import MAX_K


@pytest.fixture
def serve(settings, tiny_corpus, fake_embedder):
    """`serve(**settings)`: a started app over the tiny corpus, and its TestClient."""
    with ExitStack() as stack:

        def start(**changes):
            changed = settings.model_copy(update=changes)
            ingest_paths([tiny_corpus], changed, fake_embedder)
            engine = open_engine(changed, fake_embedder)
            stack.callback(engine.close)
            app = create_app(changed, engine=engine)
            return app, stack.enter_context(TestClient(app))

        yield start


@pytest.mark.parametrize("limit", [50, 1000])
def test_the_question_limit_reaches_http_the_schema_and_the_form(serve, limit):
    _, client = serve(max_question_chars=limit)
    too_long, longest = "x" * (limit + 10), "x" * limit
    posted = client.post("/api/ask", json={"question": too_long})
    assert posted.status_code == 422
    assert posted.json()["error"] == {
        "code": "invalid_request",  # refused by the HTTP layer, not later by answer()
        "message": f"question: String should have at most {limit} characters",
        "status": 422,
    }
    got = client.get("/api/ask", params={"q": too_long})
    assert got.status_code == 422 and got.json()["error"]["code"] == "invalid_request"
    assert (
        got.json()["error"]["message"] == f"query.q: String should have at most {limit} characters"
    )
    assert client.post("/api/ask", json={"question": longest}).status_code == 200
    assert client.get("/api/ask", params={"q": longest}).status_code == 200

    spec = client.get("/openapi.json").json()
    question = spec["components"]["schemas"]["AskRequest"]["properties"]["question"]
    assert question["maxLength"] == limit
    assert f"1 to {limit:,} characters" in question["description"]
    (q,) = [p for p in spec["paths"]["/api/ask"]["get"]["parameters"] if p["name"] == "q"]
    assert q["schema"]["maxLength"] == limit

    assert f'maxlength="{limit}"' in client.get("/").text


def test_the_k_limit_is_max_k_everywhere(serve):
    _, client = serve()
    spec = client.get("/openapi.json").json()
    k = spec["components"]["schemas"]["AskRequest"]["properties"]["k"]
    assert k["anyOf"][0]["maximum"] == MAX_K and f"(1-{MAX_K})" in k["description"]
    (query,) = [p for p in spec["paths"]["/api/ask"]["get"]["parameters"] if p["name"] == "k"]
    assert query["schema"]["anyOf"][0]["maximum"] == MAX_K
    assert client.get("/api/ask", params={"q": "oil", "k": MAX_K}).status_code == 200
    assert client.get("/api/ask", params={"q": "oil", "k": MAX_K + 1}).status_code == 422
    over = client.post("/api/ask", json={"question": "oil", "k": MAX_K + 1})
    assert over.status_code == 422


def _busy(api, page):
    """The 503s' messages: the API's JSON one and the error page's."""
    assert api.status_code == page.status_code == 503
    assert api.headers["retry-after"] == page.headers["retry-after"] == "1"
    assert api.json()["error"]["code"] == "busy"
    assert '<p class="error" role="alert">' in page.text
    shown = page.text.split('<p class="error" role="alert">')[1].split("</p>")[0]
    return api.json()["error"]["message"], shown


def test_busy_reads_the_same_from_the_queue_and_from_the_door(serve, fake_embedder, monkeypatch):
    app, client = serve(max_concurrent=1, max_waiting=0)
    slots = app.state.verbatim.slots

    monkeypatch.setattr(state, "SLOT_WAIT", 0.1)
    assert slots.acquire(timeout=1)  # a queued question waits SLOT_WAIT, then Busy
    try:
        queued = _busy(client.get("/api/ask", params={"q": "oil"}), client.get("/?q=oil"))
    finally:
        slots.release()

    # One answer in flight fills max_concurrent + max_waiting: Guard refuses at the door. A
    # long SLOT_WAIT makes a request that got past Guard wait for the answer, not 503.
    monkeypatch.setattr(state, "SLOT_WAIT", 30.0)
    entered, gate, encode = threading.Event(), threading.Event(), fake_embedder.encode

    def held(texts, progress=None):
        entered.set()
        assert gate.wait(10)
        return encode(texts, progress)

    monkeypatch.setattr(fake_embedder, "encode", held)
    first = []
    worker = threading.Thread(target=lambda: first.append(client.get("/api/ask?q=oil")))
    worker.start()
    try:
        assert entered.wait(10)
        at_door = _busy(client.get("/api/ask", params={"q": "oil"}), client.get("/?q=oil"))
    finally:
        gate.set()
        worker.join()
    assert first[0].status_code == 200

    assert queued == at_door == (errors.BUSY, errors.BUSY)


def test_the_api_docs_page_gets_its_swagger_assets(serve):
    _, client = serve()
    page = client.get("/docs").text
    for asset in ("/static/swagger/swagger-ui.css", "/static/swagger/swagger-ui-bundle.js"):
        assert asset in page
        assert client.get(asset).status_code == 200, asset
    assert client.get("/static/swagger-init.js").status_code == 200
