"""Feedback on quotes: POST/GET /api/feedback, the form's buttons without JavaScript, the limits,
and storage that survives re-ingest, restart and kill -9. Fake embedder: fast."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import ExitStack

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from verbatim.cli import cli
from verbatim.engine import ingest_paths, open_engine
from verbatim.feedback import FeedbackStore, NewFeedback
from verbatim.server import create_app
from verbatim.settings import Settings

from .conftest import ROOT, TINY, FakeEmbedder, write_files

QUESTION = "How often should I change the engine oil?"
TOKEN = "s3cret"  # noqa: S105
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def docs(tiny_corpus):
    """The tiny corpus of conftest: gardening.md, bread.txt and cars.html (engine oil)."""
    return tiny_corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny corpus ingested once for the module: the data directory that `serve` copies."""
    root = tmp_path_factory.mktemp("feedback")
    settings = Settings(data_dir=root / "data", model="fake", progress=False)
    ingest_paths([write_files(root / "docs", TINY)], settings, FakeEmbedder())
    return settings.data_dir


@pytest.fixture
def serve(request, settings, fake_embedder, built):
    """`serve(**settings)`: (settings, TestClient) of a started app over the tiny corpus: a copy
    of `built`'s data directory or, for a test that asks for `docs` (to change or re-ingest
    them), those ingested. Each call opens a new engine and app: a restart."""
    own = request.getfixturevalue("docs") if "docs" in request.fixturenames else None
    with ExitStack() as stack:

        def start(**changes):
            changed = settings.model_copy(update={"admin_token": TOKEN, **changes})
            if own is not None and not (changed.data_dir / "CURRENT").exists():
                ingest_paths([own], changed, fake_embedder)
            elif not (changed.data_dir / "CURRENT").exists():
                shutil.copytree(built, changed.data_dir, dirs_exist_ok=True)
            engine = open_engine(changed, fake_embedder)
            stack.callback(engine.close)
            client = stack.enter_context(TestClient(create_app(changed, engine=engine)))
            return changed, client

        yield start


def quotes(client, question=QUESTION):
    answer = client.get("/api/ask", params={"q": question}).json()
    return answer["quotes"] or answer["near_misses"]


def cite(quote, verdict="helpful", question=QUESTION, **extra):
    keys = ("doc_id", "start", "end", "content_hash")
    return {"question": question, "verdict": verdict, **{k: quote[k] for k in keys}, **extra}


def test_post_stores_the_quote_and_get_pages_it(serve):
    _, client = serve()
    first, second = quotes(client)[:2]
    made = client.post("/api/feedback", json=cite(first, note="exactly what I needed"))
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"id"}
    client.post("/api/feedback", json=cite(second, "unhelpful"))
    page = client.get("/api/feedback", headers=AUTH).json()
    assert page["total"] == 2 and page["offset"] == 0
    newest, oldest = page["feedback"]
    assert oldest["id"] == made.json()["id"] and newest["verdict"] == "unhelpful"
    assert oldest["text"] == first["text"] and oldest["note"] == "exactly what I needed"
    health = client.get("/api/health").json()
    assert oldest["generation"] == health["generation"]
    assert oldest["collection"] == "default" and oldest["status"] == "current"
    assert {"question", "doc_id", "start", "end", "content_hash", "created"} <= set(oldest)
    second_page = client.get("/api/feedback", params={"offset": 1, "limit": 1}, headers=AUTH)
    assert [r["id"] for r in second_page.json()["feedback"]] == [oldest["id"]]
    scoped = client.get("/api/feedback", params={"collection": "default"}, headers=AUTH).json()
    assert scoped["total"] == 2


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Auth": TOKEN}],
)
def test_reading_feedback_needs_the_admin_token(serve, headers):
    _, client = serve()
    denied = client.get("/api/feedback", headers=headers)
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "unauthorized"
    assert denied.headers["www-authenticate"] == "Bearer"


def test_reading_feedback_is_off_without_a_token(serve):
    _, client = serve(admin_token=None)
    denied = client.get("/api/feedback", headers=AUTH)
    assert denied.status_code == 401 and "VERBATIM_ADMIN_TOKEN" in denied.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"verdict": "meh"}, "verdict"),
        ({"verdict": None}, "verdict"),
        ({"note": "x" * 1001}, "note"),
        ({"start": -1}, "start"),
        ({"end": 10**6}, "end"),
        ({"end": "12"}, "end"),
        ({"end": 0}, "end"),
        ({"question": ""}, "question"),
        ({"question": "q" * 10_001}, "question"),  # over the default limit
        ({"doc_id": None}, "doc_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(serve, change, field):
    _, client = serve()
    body = {**cite(quotes(client)[0]), **change}
    body = {k: v for k, v in body.items() if v is not None}
    refused = client.post("/api/feedback", json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith(f"{field}:")


def test_end_before_start_and_a_1000_character_note(serve):
    _, client = serve()
    quote = quotes(client)[0]
    backwards = client.post("/api/feedback", json=cite(quote, start=quote["end"]))
    assert backwards.status_code == 422
    assert backwards.json()["error"]["message"].startswith("end:")
    assert client.post("/api/feedback", json=cite(quote, note="x" * 1000)).status_code == 201


def test_unknown_document_collection_and_a_changed_document(serve):
    _, client = serve()
    quote = quotes(client)[0]
    missing = client.post("/api/feedback", json=cite({**quote, "doc_id": "no-such-doc"}))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    other = client.post("/api/feedback", json=cite(quote, collection="archive"))
    assert other.status_code == 404
    assert other.json()["error"] == {
        "code": "unknown_collection",
        "message": "no collection named 'archive'; known collections: default "
        "(GET /api/collections)",
        "status": 404,
    }
    assert client.post("/api/feedback", json=cite(quote, collection="default")).status_code == 201
    listed = client.get("/api/feedback", params={"collection": "archive"}, headers=AUTH)
    assert listed.status_code == 404
    stale = client.post("/api/feedback", json=cite({**quote, "content_hash": "0" * 64}))
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "content_changed"


def test_rate_limit_per_client_is_429_with_retry_after(serve):
    _, client = serve(feedback_per_minute=2)
    quote = quotes(client)[0]
    assert [client.post("/api/feedback", json=cite(quote)).status_code for _ in range(2)] == [
        201,
        201,
    ]
    refused = client.post("/api/feedback", json=cite(quote))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    form = client.post("/feedback", data=cite(quote), follow_redirects=False)  # the same budget
    assert form.status_code == 429 and 'role="alert"' in form.text
    assert form.headers["retry-after"]
    assert client.get("/api/feedback", headers=AUTH).json()["total"] == 2


def test_daily_cap_is_429_until_midnight(serve):
    _, client = serve(feedback_per_day=2)
    quote = quotes(client)[0]
    for _ in range(2):
        assert client.post("/api/feedback", json=cite(quote)).status_code == 201
    refused = client.post("/api/feedback", json=cite(quote))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "feedback_limit"
    assert 1 <= int(refused.headers["retry-after"]) <= 86_401
    assert "VERBATIM_FEEDBACK_PER_DAY" in refused.json()["error"]["message"]
    assert client.get("/api/feedback", headers=AUTH).json()["total"] == 2


def test_cards_have_buttons_that_work_without_javascript(serve):
    settings, client = serve()
    page = client.get("/", params={"q": QUESTION, "k": 3})
    assert page.text.count('<form class="feedback" method="post" action="/feedback"') >= 2
    assert '<script src="/static/feedback.js" defer></script>' in page.text
    assert "<script>" not in page.text  # CSP: script-src 'self', nothing inline
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/feedback.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    quote = quotes(client)[0]
    posted = client.post(
        "/feedback", data={**cite(quote, "unhelpful"), "k": "3"}, follow_redirects=False
    )
    assert posted.status_code == 303
    back = posted.headers["location"]
    assert back.startswith("/?q=How+often") and "k=3" in back and back.endswith("#thanks")
    answer = client.get(back)
    assert answer.status_code == 200
    assert answer.text.count('id="thanks"') == 1 and "Thank you" in answer.text
    assert (
        answer.text.count('<form class="feedback"') == page.text.count('<form class="feedback"') - 1
    )
    (row,) = FeedbackStore(settings.data_dir).rows()
    assert (row.verdict, row.text, row.question) == ("unhelpful", quote["text"], QUESTION)


def test_a_tampered_form_is_an_error_page(serve):
    _, client = serve()
    bad = client.post("/feedback", data=cite(quotes(client)[0], "maybe"))
    assert bad.status_code == 422 and 'role="alert"' in bad.text and "verdict" in bad.text


def test_feedback_survives_reingest_reload_and_restart(serve, docs, fake_embedder):
    settings, client = serve()
    quote = quotes(client)[0]
    assert client.post("/api/feedback", json=cite(quote)).status_code == 201
    before = client.get("/api/feedback", headers=AUTH).json()["feedback"]
    ingest_paths([docs], settings, fake_embedder)  # unchanged corpus
    assert client.post("/api/admin/reload", headers=AUTH).status_code == 200
    assert client.get("/api/feedback", headers=AUTH).json()["feedback"][0]["id"] == before[0]["id"]
    _, restarted = serve()
    after = restarted.get("/api/feedback", headers=AUTH).json()["feedback"]
    assert [r["id"] for r in after] == [r["id"] for r in before]
    assert after[0]["text"] == before[0]["text"] and after[0]["status"] == "current"
    assert after[0]["checked"] == restarted.get("/api/health").json()["generation"]


def test_reingest_rechecks_citations_and_the_summary_says_so(serve, docs, fake_model, monkeypatch):
    """Moved ones are updated in place; changed and gone ones are kept and marked."""
    monkeypatch.setenv("VERBATIM_MODEL", "fake")
    settings, client = serve()
    cited = {
        "moved": ("cars", "Warm the engine first so the oil drains quickly and completely"),
        "changed": ("bread", "Let it rise until doubled in size."),
        "gone": ("gardening", "Aphids love tomato plants."),
        "current": ("bread", "Knead the dough for ten minutes."),
    }
    texts = {}
    for doc_id, text in cited.values():
        document = client.get(f"/api/documents/{doc_id}").json()
        texts[doc_id] = document["text"]
        start = document["text"].index(text)
        quote = {"doc_id": doc_id, "start": start, "end": start + len(text)}
        quote["content_hash"] = document["content_hash"]
        assert client.post("/api/feedback", json=cite(quote)).status_code == 201
    oil = TINY["cars.html"].replace(
        "<p>Warm the", "<p>A new paragraph, above the quote.</p><p>Warm the"
    )
    (docs / "cars.html").write_text(oil)
    (docs / "bread.txt").write_text(
        TINY["bread.txt"].replace(" Let it rise until doubled in size.", "")
    )
    (docs / "gardening.md").unlink()
    result = CliRunner().invoke(cli, ["ingest", str(docs), "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    assert "Feedback citations re-checked: 1 current, 1 moved, 1 changed, 1 gone" in result.output
    _, restarted = serve()
    rows = {r["status"]: r for r in restarted.get("/api/feedback", headers=AUTH).json()["feedback"]}
    assert set(rows) == set(cited)
    moved = rows["moved"]
    text = restarted.get("/api/documents/cars").json()
    assert text["text"][moved["start"] : moved["end"]] == moved["text"] == cited["moved"][1]
    assert moved["content_hash"] == text["content_hash"]
    assert moved["start"] > texts["cars"].index(cited["moved"][1])
    assert rows["changed"]["text"] == cited["changed"][1]  # kept as it was
    assert rows["gone"]["doc_id"] == "gardening"
    generation = restarted.get("/api/health").json()["generation"]
    assert {r["checked"] for r in rows.values()} == {generation}


CHILD = """
import sys
import uvicorn
from tests.conftest import FakeEmbedder
from verbatim.engine import Engine
from verbatim.index import load_index
from verbatim.server import create_app
from verbatim.settings import Settings

settings = Settings(data_dir=sys.argv[1], model="fake", progress=False)
app = create_app(settings, engine=Engine(settings, load_index(settings), FakeEmbedder()))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="error")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.stress  # a server process of its own, started and SIGKILLed
def test_feedback_survives_kill_9_after_the_201(settings, docs, fake_embedder):
    ingest_paths([docs], settings, fake_embedder)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.data_dir), str(port)], env=env, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/api/health", timeout=1)
                break
            except httpx.TransportError:
                assert child.poll() is None, "the server did not start"
                time.sleep(0.1)
        quote = quotes(httpx.Client(base_url=url))[0]
        made = httpx.post(f"{url}/api/feedback", json=cite(quote))
        assert made.status_code == 201
        child.send_signal(signal.SIGKILL)  # at once: no shutdown, no checkpoint
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    (row,) = FeedbackStore(settings.data_dir).rows()
    assert row.id == made.json()["id"] and row.text == quote["text"]
    with sqlite3.connect(settings.data_dir / "feedback.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_export_is_an_eval_set_that_runs(serve, fake_model, monkeypatch, tmp_path):
    """Export -> `verbatim eval` round trip, `not_answers` included."""
    monkeypatch.setenv("VERBATIM_MODEL", "fake")
    settings, client = serve()
    answer = client.get("/api/ask", params={"q": QUESTION}).json()
    assert not answer["abstained"], answer["reason"]
    first, second = answer["quotes"][:2]
    other = "Do tomatoes need full sun and regular watering?"
    shown = client.get("/api/ask", params={"q": other}).json()
    assert not shown["abstained"], shown["reason"]
    marks = [
        cite(first),
        cite(second, "unhelpful"),
        cite(second, "unhelpful", question="  how OFTEN should I change the engine oil? "),
        cite(shown["quotes"][0], "unhelpful", question=other),
    ]
    for body in marks:
        assert client.post("/api/feedback", json=body).status_code == 201
    out = tmp_path / "grown.jsonl"
    runner = CliRunner()
    data = ["--data-dir", str(settings.data_dir)]
    result = runner.invoke(cli, ["feedback", "export", str(out), *data])
    assert result.exit_code == 0, result.output
    assert "Wrote 2 questions" in result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    oil, plant = lines
    assert oil["question"] == QUESTION and oil["answers"] == [first["text"]]
    assert oil["relevant"] == [first["doc_id"]] and oil["not_answers"] == [second["text"]]
    assert plant["answers"] == [] and plant["not_answers"] == [shown["quotes"][0]["text"]]
    assert len({oil["id"], plant["id"]}) == 2

    result = runner.invoke(cli, ["eval", str(out), *data])
    assert result.exit_code == 0, result.output
    assert "unhelpful@1" in result.output
    report = tmp_path / "report.json"
    assert runner.invoke(cli, ["eval", str(out), "--json", str(report), *data]).exit_code == 0
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["quotes"]["hit@1"] == 1.0  # the quote marked helpful is still first
    assert metrics["quotes"]["unhelpful@1"] == 0.5  # the plant question's first quote: unhelpful

    later = runner.invoke(cli, ["feedback", "export", str(out), "--since", "2999-01-01", *data])
    assert later.exit_code == 0 and out.read_text() == ""
    since = runner.invoke(cli, ["feedback", "export", str(out), "--since", "2000-01-01", *data])
    assert "Wrote 2 questions" in since.output
    unknown = runner.invoke(cli, ["feedback", "export", str(out), "--collection", "x", *data])
    assert unknown.exit_code == 1 and "known collections: default" in unknown.output


def test_export_weighs_verdicts_and_leaves_out_stale_citations(tmp_path):
    from verbatim.feedback import Feedback, eval_lines

    def row(text, verdict, status="current", doc="d"):
        return Feedback(
            "Q?", "default", doc, 0, len(text), "h", text, verdict, None, "g", status=status
        )

    lines = eval_lines(
        [
            row("tie", "helpful"),
            row("tie", "unhelpful"),
            row("good", "helpful"),
            row("good", "helpful"),
            row("good", "unhelpful"),
            row("bad", "unhelpful"),
            row("gone", "helpful", "gone", "e"),
            row("changed", "unhelpful", "changed"),
            row("moved", "helpful", "moved", "f"),
        ]
    )
    assert lines == [
        {
            "id": lines[0]["id"],
            "question": "Q?",
            "answers": ["good", "moved"],
            "relevant": ["d", "f"],
            "not_answers": ["bad"],
        }
    ]


def test_lone_surrogates_are_refused_over_http_and_replaced_in_the_store(serve):
    """Valid JSON escapes, not valid UTF-8: a 422, never a 500; stored as U+FFFD by the library."""
    settings, client = serve()
    quote = quotes(client)[0]
    raw = json.dumps(cite(quote, question="oil \ud800 change?"))  # escaped: "\ud800"
    headers = {"Content-Type": "application/json"}
    assert client.post("/api/feedback", content=raw, headers=headers).status_code == 422
    store = FeedbackStore(settings.data_dir)
    entry = NewFeedback("oil \ud800?", "default", "oil", 0, 3, "h", "Cha", "helpful", "\udfff", "g")
    store.add(entry, per_day=10)
    (row,) = store.rows()
    assert (row.question, row.note) == ("oil \ufffd?", "\ufffd")
