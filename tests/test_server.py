"""The JSON API and the HTML pages through FastAPI's TestClient, with the real model."""

import pytest
from fastapi.testclient import TestClient

from verbatim.server import create_app
from verbatim.server.errors import BUSY
from verbatim.settings import Settings

TOO_LONG = "x" * (Settings.model_fields["max_question_chars"].default + 1)  # one past the limit

pytestmark = pytest.mark.slow
QUESTION = "What if my husband refuses couples therapy?"


@pytest.fixture(scope="module")
def client(default_engine):
    with TestClient(create_app(default_engine.settings, engine=default_engine)) as c:
        yield c


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}
    assert body["error"]["status"] == status and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


def test_post_and_get_ask_return_the_same_grounded_answer(client, default_engine):
    posted = client.post("/api/ask", json={"question": QUESTION, "k": 4}).json()
    got = client.get("/api/ask", params={"q": QUESTION, "k": 4}).json()
    assert [q["passage_id"] for q in posted["quotes"]] == [q["passage_id"] for q in got["quotes"]]
    assert not posted["abstained"] and posted["quotes"]
    for quote in posted["quotes"]:
        text = client.get(f"/api/documents/{quote['doc_id']}").json()["text"]
        assert text[quote["start"] : quote["end"]] == quote["text"]
        assert set(quote) >= {
            "title",
            "author",
            "date",
            "url",
            "section",
            "role",
            "link",
            "passage_start",
            "passage_end",
            "content_hash",
            "score",
        }
    assert {"abstained", "reason", "near_misses", "timing_ms", "generation"} <= set(posted)


def test_filters_restrict_documents(client):
    body = {"question": QUESTION, "filters": {"documents": ["rewire-convince-partner-therapy"]}}
    quotes = client.post("/api/ask", json=body).json()["quotes"]
    assert quotes and {q["doc_id"] for q in quotes} == {"rewire-convince-partner-therapy"}
    body = {"question": QUESTION, "filters": {"author": "Nobody"}}
    assert client.post("/api/ask", json=body).json()["abstained"]


def test_off_topic_abstains_with_near_misses(client):
    answer = client.get("/api/ask", params={"q": "How do I change a car tyre?"}).json()
    assert answer["abstained"] and answer["quotes"] == [] and answer["near_misses"]


def test_documents_list_paging_and_detail(client):
    page = client.get("/api/documents", params={"limit": 1}).json()
    assert page["total"] == 2 and len(page["documents"]) == 1
    second = client.get("/api/documents", params={"limit": 1, "offset": 1}).json()
    assert second["documents"][0]["id"] != page["documents"][0]["id"]
    doc = client.get("/api/documents/rewire-convince-partner-therapy").json()
    assert doc["author"] == "Gretchen Brown" and doc["content_hash"] and doc["sections"]


def test_health(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["documents"] == 2
    assert health["model"] == "all-MiniLM-L6-v2" and health["generation"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("get", "/api/documents/nope", {}, 404, "not_found"),
        ("get", "/api/nowhere", {}, 404, "not_found"),
        ("delete", "/api/ask", {}, 405, "method_not_allowed"),
        (
            "post",
            "/api/ask",
            {"content": "x" * 20_000, "headers": {"content-type": "application/json"}},
            413,
            None,
        ),
        (
            "post",
            "/api/ask",
            {"content": "question=hi", "headers": {"content-type": "text/plain"}},
            415,
            None,
        ),
        ("post", "/api/ask", {"json": {"question": ""}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": {"question": " \u3000\n "}}, 422, "invalid_request"),
        (
            "post",
            "/api/ask",
            {"json": {"question": TOO_LONG}},
            422,
            "invalid_request",
        ),
        ("post", "/api/ask", {"json": {"question": "hi", "k": 0}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": {"question": "hi", "k": 21}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": {"question": "hi", "k": "3"}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": {"question": 42}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": {}}, 422, "invalid_request"),
        ("post", "/api/ask", {"json": ["hi"]}, 422, "invalid_request"),
        (
            "post",
            "/api/ask",
            {"content": "{not json", "headers": {"content-type": "application/json"}},
            422,
            None,
        ),
        ("get", "/api/ask", {}, 422, "invalid_request"),
        ("get", "/api/ask?q=hi&k=99", {}, 422, "invalid_request"),
        ("get", "/api/documents?limit=0", {}, 422, "invalid_request"),
    ],
)
def test_errors_are_json_with_status(client, method, path, kwargs, status, code):
    assert_error(getattr(client, method)(path, **kwargs), status, code)


def test_openapi_document_is_valid(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").json()
    validate(spec)
    ask = spec["paths"]["/api/ask"]["post"]
    assert "422" in ask["responses"] and "413" in ask["responses"]
    assert client.get("/docs").status_code == 200


def test_pages_send_security_headers(client):
    for path in ("/", "/api/health", "/documents/husband-wont-go-to-therapy", "/nope"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"


def test_form_answers_with_marked_quotes(client):
    page = client.get("/", params={"q": QUESTION}).text
    assert page.count("<mark>") >= 2 and "Show in document" in page
    assert "Help! Can I Convince My Partner To Go to Therapy?" in page
    assert "#:~:text=" in page


def test_form_escapes_questions(client):
    page = client.get("/", params={"q": "<script>alert(1)</script> therapy?"}).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_form_shows_abstention_and_errors(client):
    page = client.get("/", params={"q": "How do I bake sourdough bread?"}).text
    assert "These documents don't address that." in page and "Weaker matches" in page
    response = client.get("/", params={"q": "   "})
    assert response.status_code == 422 and "question is empty" in response.text


def test_document_page_marks_the_quote(client):
    answer = client.get("/api/ask", params={"q": QUESTION}).json()
    quote = answer["quotes"][0]
    page = client.get(
        f"/documents/{quote['doc_id']}", params={"start": quote["start"], "end": quote["end"]}
    ).text
    assert 'id="quote"' in page
    assert client.get("/documents/unknown-doc").status_code == 404


def test_saturation_answers_503_with_retry_after(default_engine):
    settings = default_engine.settings.model_copy(update={"max_concurrent": 1})
    app = create_app(settings, engine=default_engine)
    with TestClient(app) as c:
        slots = app.state.verbatim.slots
        assert slots.acquire(timeout=1)  # the only slot is busy
        try:
            busy = c.get("/api/ask", params={"q": QUESTION})
            page = c.get("/", params={"q": QUESTION})
        finally:
            slots.release()
        assert_error(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        assert page.status_code == 503 and page.headers["retry-after"] == "1"
        assert busy.json()["error"]["message"] == BUSY and BUSY in page.text
        assert c.get("/api/ask", params={"q": QUESTION}).status_code == 200
