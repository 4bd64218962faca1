"""Every format through the whole product: each quote from each format is in its source, pages
survive the store and show in the CLI and the source view."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from tests.builders import (
    FIXTURES,
    INFO,
    TWO_PAGES,
    fake_settings,
    make_pdf,
    mixed_folder,
    squash,
    visible_texts,
)
from verbatim.answer import answer, text_fragment_link
from verbatim.cli import cli
from verbatim.engine import Engine
from verbatim.index import build_index, load_index
from verbatim.ingest import read_documents, split_passages
from verbatim.records import Corpus, Document, Section

QUESTIONS = [
    "How do I water tomatoes?",
    "What do aphids love?",
    "How long should I knead the dough?",
    "When do I prune roses?",
    "How do I install the package?",
    "What does randint return?",
    "How often is the sourdough starter fed?",
    "When should peas be sown?",
]


def test_every_quote_from_every_format_is_in_its_source(tmp_path, fake_embedder):
    folder = mixed_folder(tmp_path)
    settings = fake_settings(tmp_path)
    build_index(read_documents([folder], settings), settings, fake_embedder)
    index = load_index(settings)
    seen_formats, pdf_pages = set(), set()
    for question in QUESTIONS:
        result = answer(question, index, fake_embedder, settings, 5, None)
        for quote in result.quotes + result.near_misses:
            source = folder / Path(index.documents[quote.doc_id].source).name
            visible = visible_texts(source)
            seen_formats.add(source.suffix)
            if source.suffix == ".pdf":
                assert quote.page in (1, 2)
                pdf_pages.add(quote.page)
                visible = [visible[quote.page - 1]]  # on the page it says
            else:
                assert quote.page is None
            for piece in quote.text.split("\n\n"):
                assert any(squash(piece) in v for v in visible), (quote.doc_id, piece)
    assert seen_formats == {".html", ".pdf", ".docx", ".epub"}
    assert pdf_pages == {1, 2}


def test_pages_survive_the_store_and_old_rows_have_none(tmp_path, fake_embedder):
    settings = fake_settings(tmp_path)
    text = "First page text here.\n\nSecond page text here."
    paged = Document(
        "guide",
        "Guide",
        text,
        "h1",
        "guide.pdf",
        (Section(0, 21, "", "article", ((0, 21),)), Section(23, 45, "", "article", ((23, 45),))),
        url="https://example.org/guide.pdf#old",
        pages=(0, 23),
    )
    flat = Document(
        "note",
        "Note",
        "A plain note.",
        "h2",
        "note.md",
        (Section(0, 13, "", "article", ((0, 13),)),),
    )
    docs = [paged, flat]
    passages = [p for d in docs for p in split_passages(d)]
    build_index(Corpus(docs, passages, []), settings, fake_embedder)
    index = load_index(settings)
    assert index.documents["guide"].pages() == (0, 23) and index.document("guide").pages == (0, 23)
    assert index.documents["note"].pages() == () and index.document("note").pages == ()
    result = answer("second page text", index, fake_embedder, settings, 3, None)
    quote = next(q for q in result.quotes + result.near_misses if q.start >= 23)
    assert quote.page == 2 and quote.link == "https://example.org/guide.pdf#page=2"
    assert text_fragment_link("https://example.org/a.pdf", "x y", page=3).endswith("a.pdf#page=3")
    assert "#:~:text=" in text_fragment_link("https://example.org/a.html", "x y")


def test_cli_shows_the_page_and_the_reading_summary(tmp_path, fake_model, monkeypatch):
    folder = tmp_path / "guides"
    folder.mkdir()
    (folder / "tomatoes.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    (folder / "photo.jpg").write_bytes(b"\xff\xd8")
    monkeypatch.setenv("VERBATIM_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", str(folder)])
    assert result.exit_code == 0, result.output
    assert "unsupported file type '.jpg'" in result.output
    assert re.search(r"reading [\d.]+s, embedding and indexing [\d.]+s", result.output)
    result = runner.invoke(cli, ["ask", "What do aphids love to eat on tomato plants?", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"— Tomato Guide, Ada Gardener, 2024-03-01 · (Pests|Growing Tomatoes) · p\. [12]",
        result.output,
    )


def test_the_source_view_shows_pages_and_the_quotes_page(tmp_path, fake_embedder):
    from fastapi.testclient import TestClient

    from verbatim.server import create_app

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tomatoes.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    settings = fake_settings(tmp_path)
    build_index(read_documents([tmp_path / "docs"], settings), settings, fake_embedder)
    engine = Engine(settings, load_index(settings), fake_embedder)
    doc = engine.index.document("tomatoes")
    start = doc.text.index("Aphids love")
    with TestClient(create_app(settings, engine=engine)) as client:
        page = client.get(f"/documents/tomatoes?start={start}&end={start + 11}").text
    assert 'id="page-1"' in page and 'id="page-2"' in page
    assert "The quote is on page 2" in page
    assert page.count("<h2>Growing Tomatoes</h2>") == 1  # not again where the section goes on
    assert '<mark id="quote">Aphids love</mark>' in page


def test_the_source_view_keeps_the_lines_of_code(tmp_path, fake_embedder):
    from fastapi.testclient import TestClient

    from verbatim.server import create_app

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "sphinx.html").write_bytes((FIXTURES / "sphinx.html").read_bytes())
    settings = fake_settings(tmp_path)
    build_index(read_documents([tmp_path / "docs"], settings), settings, fake_embedder)
    engine = Engine(settings, load_index(settings), fake_embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        page = client.get("/documents/sphinx").text
        css = client.get("/static/style.css").text
    code = (
        '<p class="role-article lines">&gt;&gt;&gt; random()                             '
        "# Random float:  0.0 &lt;= x &lt; 1.0\n0.37444887175646646\n\n&gt;&gt;&gt; randrange(10)"
    )
    assert code in page  # the stored line breaks and indentation, in a paragraph that shows them
    assert re.search(r"\.document p\.lines \{ white-space: pre-wrap;", css)
    assert '<p class="role-article">Return a random integer N such that' in page  # prose: no class
