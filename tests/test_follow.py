"""The server serves a collection's new generation by itself when its pointer moves (#33)."""

import time

import pytest
from fastapi.testclient import TestClient

from verbatim.engine import ingest_paths
from verbatim.server import create_app
from verbatim.server.state import FOLLOW_EVERY, State


def _wait_for(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_follow_reloads_only_when_a_pointer_moved(fake_engine, tiny_corpus, fake_embedder):
    settings = fake_engine.settings
    state = State(settings, {"default": fake_engine})
    assert state.follow() is False  # what is served is current
    (tiny_corpus / "kites.md").write_text("Kites fly best in a steady wind.\n")
    report, _ = ingest_paths([tiny_corpus], settings, fake_embedder)
    assert state.follow() is True
    assert state.engine.answering.generation == report.generation
    assert state.follow() is False


def test_a_broken_pointer_is_tried_once_and_keeps_serving(fake_engine):
    settings = fake_engine.settings
    state = State(settings, {"default": fake_engine})
    served = state.engine.answering.generation
    (settings.data_dir / "CURRENT").write_text("no-such-generation\n")
    assert state.follow() is True  # tried, failed, kept the old one
    assert state.engine.answering.generation == served
    assert state.follow() is False  # not retried until the pointer moves again


@pytest.mark.slow
def test_the_server_serves_an_ingest_without_a_signal(fake_engine, tiny_corpus, fake_embedder):
    settings = fake_engine.settings
    with TestClient(create_app(settings, engine=fake_engine)) as client:
        (tiny_corpus / "kites.md").write_text("Kites fly best in a steady wind.\n")
        report, _ = ingest_paths([tiny_corpus], settings, fake_embedder)
        moved = _wait_for(
            lambda: client.get("/api/health").json()["generation"] == report.generation,
            FOLLOW_EVERY * 5,
        )
        assert moved
        assert client.get("/api/documents/kites").status_code == 200
