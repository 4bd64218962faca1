"""Citations that survive re-ingest: each status on documents edited between two ingests, through
the library, POST /api/verify and `verbatim verify`. Fake embedder: fast."""

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from verbatim.citations import Citation, IndexTexts, StoredText, locate, parse, verify
from verbatim.cli import cli
from verbatim.engine import ingest_paths, open_engine
from verbatim.index import load_index
from verbatim.server import create_app

KITES = """---
title: Flying Kites
url: https://example.org/kites
---

Kites climb when the wind is steady. A long string helps them rise.

The best kites are made of ripstop nylon. Bamboo frames are light and strong.
"""
BREAD = """Baking Bread

Knead the dough for ten minutes. Let it rise until doubled in size. Then shape the loaf.
"""
CARS = "Changing Oil\n\nChange the engine oil every ten thousand kilometres.\n"
STABLE = "Stable Notes\n\nThis document never changes between the two ingests.\n"

# (document, quoted text, status after the edits below)
CITED = [
    ("kites", "The best kites are made of ripstop nylon.", "moved"),  # a paragraph inserted above
    ("bread", "Let it rise until doubled in size.", "changed"),  # the sentence deleted
    ("cars", "Change the engine oil every ten thousand kilometres.", "gone"),  # the file removed
    ("stable", "This document never changes between the two ingests.", "current"),
    ("kites", "Kites climb when the wind is steady.", "current"),  # above the insertion
]


def write(folder, **files):
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.md").write_text(text, encoding="utf-8")


def edit(folder):
    """The edits between the two ingests."""
    kites = KITES.replace(
        "The best kites", "A paragraph inserted above the quote, by the editor.\n\nThe best kites"
    )
    write(folder, kites=kites, bread=BREAD.replace(" Let it rise until doubled in size.", ""))
    (folder / "cars.md").unlink()


@pytest.fixture
def cited(tmp_path, settings, fake_embedder):
    """The corpus ingested, the citations taken from it, then the corpus edited and ingested
    again: (citations, expected statuses)."""
    docs = tmp_path / "docs"
    write(docs, kites=KITES, bread=BREAD, cars=CARS, stable=STABLE)
    ingest_paths([docs], settings, fake_embedder)
    citations = []
    with load_index(settings) as index:
        for doc_id, text, _ in CITED:
            start = index.text(doc_id).index(text)
            content_hash = index.documents[doc_id].content_hash
            citations.append(Citation(doc_id, start, start + len(text), text, content_hash))
    edit(docs)
    ingest_paths([docs], settings, fake_embedder)
    return citations, [status for *_, status in CITED]


def test_each_status_after_edits_between_two_ingests(cited, settings):
    citations, expected = cited
    with load_index(settings) as index:
        texts = IndexTexts(index)
        results = [verify(texts, c) for c in citations]
        assert [r.status for r in results] == expected
        for c, r in zip(citations, results, strict=True):
            assert r.generation == index.generation
            if r.status in ("current", "moved"):
                text = index.text(c.doc_id)
                assert text[r.start : r.end] == c.text == r.text  # new offsets slice to it
                assert r.content_hash == index.documents[c.doc_id].content_hash
            if r.status == "gone":
                assert r.content_hash is None and r.start is None
            if r.status == "changed":
                assert r.start is None and r.content_hash == index.documents["bread"].content_hash
    moved = results[0]
    assert moved.start > citations[0].start and moved.link.startswith("https://example.org/kites#")
    assert results[2].link is None


@pytest.mark.parametrize(
    ("document", "end", "cited", "status"),
    [
        ("one two  three", 14, "one two three", "current"),  # white space only
        ("one two\nthree four", 13, "one two three", "current"),
        ("one two\n\nthree", 14, " one  two three ", "current"),
        ("xx one two three", 13, "one two three", "moved"),
        ("xx one\ntwo three", 13, "one two three", "moved"),
        ("one two four", 12, "one two three", "changed"),
        ("onetwo three", 12, "one two three", "changed"),  # a lost space is more than white space
    ],
)
def test_white_space_differences_are_the_same_text(document, end, cited, status):
    class Texts:
        generation = "g"

        def lookup(self, doc_id):
            return StoredText(document, "hash", None)

    result = verify(Texts(), Citation("d", 0, end, cited))
    assert result.status == status
    if status != "changed":
        assert result.text == document[result.start : result.end]
        assert result.text.split() == cited.split()


def test_the_nearest_occurrence_is_taken():
    text = "alpha beta. " * 3 + "gamma. " + "alpha beta. " * 3
    near = text.index("gamma") + len("gamma. ")
    assert locate(text, Citation("d", near + 5, near + 15, "alpha beta")) == (near, near + 10)
    assert locate(text, Citation("d", 0, 10, "alpha beta")) == (0, 10)


def test_verify_endpoint(cited, settings, fake_embedder):
    citations, expected = cited
    engine = open_engine(settings, fake_embedder)
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            statuses = []
            for c in citations:
                body = {
                    k: getattr(c, k) for k in ("doc_id", "start", "end", "content_hash", "text")
                }
                response = client.post("/api/verify", json=body)
                assert response.status_code == 200, response.text
                got = response.json()
                statuses.append(got["status"])
                assert got["generation"] == engine.index.generation
                if got["status"] in ("current", "moved"):
                    text = client.get(f"/api/documents/{c.doc_id}").json()["text"]
                    assert text[got["start"] : got["end"]] == c.text
                else:
                    assert "start" not in got and "link" not in got
            assert statuses == expected
            # A whole quote from /api/ask is a citation; unknown fields are ignored.
            quote = client.get("/api/ask", params={"q": "ripstop nylon kites"}).json()
            first = (quote["quotes"] or quote["near_misses"])[0]
            assert client.post("/api/verify", json=first).json()["status"] == "current"
            unknown = client.post("/api/verify", json={**body, "collection": "archive"})
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "unknown_collection"
            assert "default" in unknown.json()["error"]["message"]
            bad = client.post("/api/verify", json={**body, "end": -1})
            assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("end:")
            # Offsets that cannot hold the text only say where to look first.
            nowhere = client.post("/api/verify", json={**body, "start": 10**6, "end": 3})
            assert nowhere.json()["status"] == "moved"
            blank = client.post("/api/verify", json={**body, "text": "   "})
            assert blank.status_code == 422 and blank.json()["error"]["message"].startswith("text:")
    finally:
        engine.close()


def test_verify_command_prints_a_table_writes_json_and_fails_on_broken(
    cited, settings, tmp_path, monkeypatch
):
    monkeypatch.setenv("VERBATIM_MODEL", "fake")
    citations, expected = cited
    lines = [
        json.dumps({k: getattr(c, k) for k in ("doc_id", "start", "end", "content_hash", "text")})
        for c in citations
    ]
    path, out = tmp_path / "report-citations.jsonl", tmp_path / "out" / "verified.json"
    path.write_text("\n".join(lines) + "\n\n")
    runner = CliRunner()
    args = ["verify", str(path), "--json", str(out), "--data-dir", str(settings.data_dir)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output  # one changed, one gone
    assert "2 current, 1 moved, 1 changed, 1 gone" in result.output
    for (doc_id, _, status), row in zip(CITED, result.output.splitlines()[1:], strict=False):
        assert status in row and doc_id in row
    report = json.loads(out.read_text())
    assert [r["status"] for r in report["citations"]] == expected
    assert report["counts"] == {"current": 2, "moved": 1, "changed": 1, "gone": 1}
    assert report["citations"][0]["citation"]["start"] == citations[0].start
    assert report["citations"][0]["start"] > citations[0].start

    path.write_text("\n".join(lines[3:]) + "\n")  # current ones only: a passing CI check
    result = runner.invoke(cli, ["verify", str(path), "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output and "2 current" in result.output


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "is not a citation"),
        ('{"doc_id": "a", "start": 0, "end": 3}', "text"),
        ('{"doc_id": "a", "start": -1, "end": 3, "text": "abc"}', "start"),
        ('{"doc_id": "a", "start": 3, "end": 1.5, "text": "abc"}', "end"),
        ('{"doc_id": "a", "start": 0, "end": 3, "text": "abc", "collection": "X Y"}', "name"),
    ],
)
def test_verify_command_names_the_bad_line(tmp_path, monkeypatch, line, message):
    monkeypatch.setenv("VERBATIM_MODEL", "fake")
    path = tmp_path / "c.jsonl"
    path.write_text('{"doc_id": "cars", "start": 0, "end": 3, "text": "abc"}\n' + line + "\n")
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path}:2" in result.output and message in result.output


def test_parse_takes_a_quote_as_returned():
    quote = {"doc_id": "a", "start": 1, "end": 4, "text": "abc", "title": "T", "score": 0.5}
    assert parse(quote) == Citation("a", 1, 4, "abc")
    with pytest.raises(ValueError, match="start"):
        parse({**quote, "start": True})
