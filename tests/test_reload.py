"""Re-index while serving: requests keep succeeding while generations switch under them."""

import threading

import pytest
from fastapi.testclient import TestClient

from verbatim.engine import ingest_paths
from verbatim.server import create_app


@pytest.fixture
def served(fake_engine):
    settings = fake_engine.settings.model_copy(update={"admin_token": "s3cret"})
    with TestClient(create_app(settings, engine=fake_engine)) as client:
        yield settings, client


def test_reload_needs_the_token(served):
    _, client = served
    assert client.post("/api/admin/reload").status_code == 403
    bad = client.post("/api/admin/reload", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "forbidden"


@pytest.mark.stress  # ten ingests under a stream of requests: `make test` runs it
def test_ten_reindexes_under_load_fail_no_request(served, tiny_corpus, fake_embedder):
    settings, client = served
    failures, answered, stop = [], [], threading.Event()

    def load():
        while not stop.is_set():
            r = client.get("/api/ask", params={"q": "How often should I change the oil?"})
            (answered if r.status_code == 200 else failures).append(r.status_code)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    generations = []
    try:
        for n in range(10):
            (tiny_corpus / "extra.md").write_text(f"Version {n} of a note about kites.\n")
            ingest_paths([tiny_corpus], settings, fake_embedder)
            r = client.post("/api/admin/reload", headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200, r.text
            generations.append(r.json()["generation"])
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert failures == [] and len(answered) > 10
    assert len(set(generations)) == 10
    kites = client.get("/api/documents/extra").json()["text"]
    assert kites.startswith("Version 9")


def test_a_broken_new_generation_keeps_the_old_one_serving(served, tiny_corpus):
    settings, client = served
    before = client.get("/api/health").json()["generation"]
    (settings.data_dir / "CURRENT").write_text("no-such-generation\n")
    r = client.post("/api/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200  # the newest intact generation is still the old one
    assert client.get("/api/health").json()["generation"] == before
    assert client.get("/api/ask", params={"q": "oil?"}).status_code == 200
