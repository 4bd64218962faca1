"""HTML read as the page reads: titles, metadata, the text without navigation, every paragraph
and sentence on the page; other encodings and broken HTML."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import (
    FIXTURES,
    MARKDOWN,
    fake_settings,
    html_visible,
    pieces,
    squash,
)
from verbatim.ingest import read_documents
from verbatim.ingest.read import read_file

EXPECTED = {
    "sphinx.html": {
        "title": "random — Generate pseudo-random numbers",
        "site": "Python 3.12 documentation",
        "url": "https://docs.python.org/3/library/random.html",
        "headings": [
            "random — Generate pseudo-random numbers",
            "Functions for integers",
            "Examples",
        ],
        "has": [
            "random.randint(a, b)",
            "Return a random integer N such that a <= N <= b.",
            "The __init__ method of Random calls seed() with *args.",
            ">>> random()                             # Random float:  0.0 <= x < 1.0\n"
            "0.37444887175646646\n\n>>> randrange(10)",
        ],
        "chrome": [
            "Navigation",
            "Previous topic",
            "Next topic",
            "Report a Bug",
            "Show Source",
            "Quick search",
            "Copyright",
            "modules",
            "Found a bug",
        ],
    },
    "mkdocs.html": {
        "title": "Installation",
        "author": "Jane Doe",
        "site": "MkDocs Demo",
        "url": "https://demo.example.org/install/",
        "headings": ["Installation", "Requirements"],
        "has": [
            "Install the package with pip. You need Python 3.9 or newer, and the venv module.",
            "A working virtual environment.",
            "$ python -m venv .venv\n$ .venv/bin/pip install mkdocs-demo",
        ],
        "chrome": [
            "Skip to content",
            "Table of contents",
            "Previous",
            "Next",
            "Home",
            "Usage",
            "Made with",
            "Logo",
            "Edit this page",
        ],
    },
    "wordpress.html": {
        "title": "How to Prune Roses",
        "author": "Rosa Gallica",
        "date": "2023-04-12",
        "site": "The Garden Blog",
        "url": "https://gardenblog.example/how-to-prune-roses/",
        "headings": ["How to Prune Roses"],
        "has": [
            "Prune roses in late winter, just as the buds begin to swell.",
            "Never leave stubs: they invite disease.",
        ],
        "chrome": [
            "Skip to content",
            "cookies",
            "Home",
            "About",
            "Posted on",
            "Share this",
            "Twitter",
            "Posted in",
            "Previous post",
            "Next post",
            "Great tips",
            "Leave a Reply",
            "Recent Posts",
            "Proudly powered",
        ],
    },
    "tables.html": {  # a table layout: a sidebar cell of menus beside the page's text
        "title": "Module templates from libgarden",  # not the banner's <h1>
        "headings": [
            "Module templates from libgarden",
            "Table of Contents",
            "Function: gardenEvalTemplate",
        ],
        "has": [
            "This set of routines evaluates the templates of a planting plan.",
            "xmlChar * gardenEvalTemplate (gardenContextPtr ctxt,\n      const xmlChar * str)",
            'Evaluate a template string, e.g. "{$x}yyy" and return the result.',
            "ctxt: the garden context",
        ],
        "chrome": [
            "API Menu",
            "Main Menu",
            "ChangeLog",
            "Related links",
            "Mail archive",
            "Bug Tracker",
            "Search",
            "security",
            "transform",
        ],
    },
    "plain.html": {
        "title": "Notes on sourdough",
        "headings": ["Notes on sourdough"],
        "has": [
            "My starter is fed twice a day with equal weights of flour and water.",
            "Recipe, as my grandmother wrote it:\n500 g flour\n350 g water\n10 g salt",
            "day 1: mix, rest 30 min\n    fold every half hour\nday 2: bake at 250 °C",
            "Use a Dutch oven with its lid on.",
            "Monday 50 g",
        ],
        "chrome": [],
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_html_reads_as_the_page(name):
    path = FIXTURES / name
    [doc] = read_file(path, path.stem, path.read_bytes())
    want = EXPECTED[name]
    for field in ("title", "author", "date", "url", "site"):
        assert getattr(doc, field) == want.get(field), field
    assert [s.heading for s in doc.sections] == want["headings"]
    for text in want["has"]:
        assert text in doc.text
    for chrome in want["chrome"]:
        assert chrome not in doc.text, chrome
    for mark in MARKDOWN:
        assert mark not in doc.text, mark


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_html_paragraph_and_sentence_is_on_the_page(name):
    raw = (FIXTURES / name).read_bytes()
    [doc] = read_file(FIXTURES / name, "x", raw)
    page = html_visible(raw)
    assert all(squash(piece) in page for piece in pieces(doc))


def test_html_in_another_encoding_and_broken_html(tmp_path):
    latin = "<html><head><meta charset='iso-8859-1'></head><body><p>Caf\xe9 au lait.</p></body>"
    (tmp_path / "latin.html").write_bytes(latin.encode("latin-1"))
    (tmp_path / "binary.html").write_bytes(b"\x00\x01PNG\x00")
    (tmp_path / "empty.html").write_text("<html><body><nav>Home</nav></body></html>")
    corpus = read_documents([tmp_path], fake_settings(tmp_path))
    assert "Café au lait." in corpus.documents[0].text
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "binary" in reasons["binary.html"]
    assert "no main text" in reasons["empty.html"]
