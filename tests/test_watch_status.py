"""What a watcher shows (#33): /api/health and `verbatim collections` list the watched folders,
the last update, the changes pending and the files skipped with their reasons."""

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from verbatim.cli import cli
from verbatim.server import create_app
from verbatim.watch import Watcher


@pytest.mark.slow  # over 1 s: an ingest, an update and an app
def test_health_and_collections_show_the_watch(fake_engine, tiny_corpus, fake_embedder):
    settings = fake_engine.settings
    (tiny_corpus / "broken.pdf").write_bytes(b"not a pdf")
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    batch = Watcher(settings, [tiny_corpus], fake_embedder).apply()
    assert batch is not None and batch.line().endswith(", 1 skipped")
    assert " default: +1 ~0 -0 files, 2 texts embedded, " in batch.line()  # 1 passage, 1 sentence
    with TestClient(create_app(settings, engine=fake_engine)) as client:
        watching = client.get("/api/health").json()["watching"]
    assert watching["default"]["folders"] == [str(tiny_corpus)]
    assert watching["default"]["active"] is True  # this process wrote it and runs
    assert watching["default"]["last_update"] == batch.at
    assert [s["path"] for s in watching["default"]["skipped"]] == [str(tiny_corpus / "broken.pdf")]
    shown = CliRunner().invoke(cli, ["collections", "--data-dir", str(settings.data_dir)])
    assert f"watching {tiny_corpus}: last update " in shown.output
    assert f"skipped {tiny_corpus / 'broken.pdf'}: " in shown.output
    listed = CliRunner().invoke(
        cli, ["collections", "--json", "--data-dir", str(settings.data_dir)]
    )
    assert json.loads(listed.output)["collections"][0]["watch"]["pending"] == 0


def test_a_collection_never_watched_shows_none(fake_engine):
    with TestClient(create_app(fake_engine.settings, engine=fake_engine)) as client:
        assert client.get("/api/health").json()["watching"] == {}
