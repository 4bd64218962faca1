"""Hostile folders (issue #32): files that are not regular files, names that are not UTF-8 or
hold control characters. Each ingest finishes, reads the good file beside the bad one and lists
the bad one with its reason; every id links and verifies."""

from __future__ import annotations

import faulthandler
import os
import socket
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import httpx
import pytest

from verbatim.engine import ingest_paths, open_engine
from verbatim.ingest import read_documents
from verbatim.ingest.files import printable
from verbatim.records import Corpus
from verbatim.server import create_app

GOOD = "Good Notes\n\nThe good file beside the bad one is read all the same.\n"


def read_within(folder: Path, settings, seconds: float = 30.0) -> Corpus:
    """`read_documents` of `folder`; a read that hangs ends the test run with every thread's
    traceback after `seconds` instead of hanging it (faulthandler's watchdog, not a SIGALRM
    timer, which would send the reads to the workers)."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        return read_documents([folder], settings)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.mark.parametrize("name", ["pipe.txt", "pipe.md", "pipe.html"])
def test_a_fifo_is_listed_as_skipped_and_never_opened(tmp_path, settings, name):
    (tmp_path / "good.txt").write_text(GOOD)
    os.mkfifo(tmp_path / name)
    corpus = read_within(tmp_path, settings)
    assert [d.id for d in corpus.documents] == ["good"]
    [skipped] = corpus.skipped
    assert skipped.path.endswith(name) and "named pipe (FIFO)" in skipped.reason


def test_a_fifo_given_as_the_path_is_refused_with_its_reason(tmp_path, settings):
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(Exception, match="named pipe"):
        read_within(tmp_path / "pipe.txt", settings)


def test_a_socket_is_listed_as_skipped(tmp_path, settings):
    (tmp_path / "good.txt").write_text(GOOD)
    where = tmp_path / "s.txt"
    if len(os.fsencode(where)) > 100:  # AF_UNIX paths are short
        pytest.skip("temporary folder path too long for a socket")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(where))
        corpus = read_within(tmp_path, settings)
    assert [d.id for d in corpus.documents] == ["good"]
    assert "socket" in corpus.skipped[0].reason


def test_a_name_that_is_not_utf8_is_read_under_a_reversible_id(tmp_path, settings):
    (tmp_path / "good.txt").write_text(GOOD)
    bad = os.path.join(os.fsencode(tmp_path), b"bad\xe9name.txt")
    with open(bad, "wb") as file:
        file.write(b"A Latin-1 Name\n\nA file from an old disk whose name is not UTF-8.\n")
    corpus = read_within(tmp_path, settings)
    by_id = {d.id: d for d in corpus.documents}
    assert set(by_id) == {"good", "bad%E9name"}
    assert unquote_to_bytes("bad%E9name") == b"bad\xe9name"
    assert by_id["bad%E9name"].source.endswith("bad%E9name.txt")
    assert {p.doc_id for p in corpus.passages} == {"good", "bad%E9name"}
    for doc in corpus.documents:  # what SQLite and JSON will store
        for value in (doc.id, doc.source, doc.title, doc.text):
            value.encode("utf-8")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("plain name", "plain name"),
        ("näme", "näme"),
        ("new\nline", "new%0Aline"),
        ("tab\there", "tab%09here"),
        ("c1\x85", "c1%C2%85"),
        ("100%AB", "100%25AB"),  # a "%" that would read as an escape
        ("100% sure", "100% sure"),  # one that would not is left alone
        (os.fsdecode(b"bad\xe9\xffname"), "bad%E9%FFname"),
    ],
)
def test_printable_names_are_reversible(name, shown):
    assert printable(name) == shown
    assert unquote_to_bytes(shown) == os.fsencode(name)


@pytest.mark.stress  # an ingest and a uvicorn server: several seconds
def test_odd_ids_link_and_verify(tmp_path, settings, fake_embedder, serve):
    """Through uvicorn, not TestClient: TestClient decodes a path twice (`%250A` reaches the
    app as a newline), a server once."""
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "new\nline.md").write_text("Kites climb when the wind is steady and strong.\n")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as file:
        file.write(b"Cafe Notes\n\nThe espresso machine needs descaling every month.\n")
    ingest_paths([folder], settings, fake_embedder)
    engine = open_engine(settings, fake_embedder)
    try:
        with serve(create_app(settings, engine=engine)) as url, httpx.Client(base_url=url) as web:
            for doc_id in ("new%0Aline", "caf%E9"):
                path = quote(doc_id, safe="")  # as the page's links (Jinja's urlencode) write it
                assert web.get(f"/documents/{path}").status_code == 200
                got = web.get(f"/api/documents/{path}")
                assert got.status_code == 200, got.text
                text = got.json()["text"]
                start = text.rindex("\n\n") + 2 if "\n\n" in text else 0
                citation = {
                    "doc_id": doc_id,
                    "start": start,
                    "end": len(text),
                    "content_hash": engine.index.documents[doc_id].content_hash,
                    "text": text[start:],
                }
                verified = web.post("/api/verify", json=citation)
                assert verified.json()["status"] == "current", verified.text
    finally:
        engine.close()
