"""Quotes that respect document structure (issue #30, items 1 and 3): block kinds kept through
reading and stored, code never split into sentences, a code block quoted whole with its kind,
a lead-in quoted and scored with what it introduces, navigation pages never leading."""

from __future__ import annotations

import json

import pytest

from verbatim.answer import _shown_order, _structure
from verbatim.ingest.markup import read_html
from verbatim.ingest.read import Block, Blocks, assemble, make_document
from verbatim.ingest.split import split_code, split_passages
from verbatim.records import CODE, DEFINITION, ITEM, LEAD_IN, ROW, TERM, DocumentMeta

GZIP_PAGE = """<html><head><title>gzip</title></head><body><main>
<h1>gzip — Support for gzip files</h1>
<p>This module provides a simple interface to compress and decompress files.</p>
<h2>Examples of usage</h2>
<p>Example of how to GZIP compress an existing file:</p>
<pre>import gzip
import shutil
with open('/home/joe/file.txt', 'rb') as f_in:
    with gzip.open('/home/joe/file.txt.gz', 'wb') as f_out:
        shutil.copyfileobj(f_in, f_out)</pre>
<p>Create a virtual environment first. Then run the tool.</p>
<pre>$ python -m venv env
created virtual environment. Activate it
&gt;&gt;&gt; if x &lt; 1: print("small")</pre>
</main></body></html>"""

KINDS_PAGE = b"""<html><body><main><h1>Kinds</h1>
<p>Install these packages:</p>
<ul><li><a href="a.html">alpha</a> - the first</li><li><p>beta, the second</p></li></ul>
<table><tr><td>Flour</td><td>500 g</td></tr></table>
<dl><dt>utcnow()</dt><dd><p>Return the current UTC date and time.</p></dd></dl>
<p>Plain prose at the end.</p></main></body></html>"""


def _contents_page(n: int = 12) -> str:
    items = "".join(
        f'<li><a href="m{i}.html">mod{i}</a> — Module {i} for files, gzip and compression</li>'
        for i in range(n)
    )
    return (
        "<html><head><title>Library</title></head><body><main><h1>The Library</h1>"
        f"<ul>{items}<li><a href=gzip.html>gzip</a> — compress an existing file with GZIP</li>"
        "</ul></main></body></html>"
    )


def _document(html: str | bytes, doc_id: str = "page"):
    raw = html.encode() if isinstance(html, str) else html
    found = assemble(read_html(raw))
    structure = (found.blocks, found.navigation)
    return make_document(doc_id, doc_id, found.text, found.sections, found.meta, (), structure)


def test_html_blocks_keep_their_kind_with_exact_offsets():
    doc = _document(KINDS_PAGE)
    shown = [(kind, doc.text[a:b]) for a, b, kind in doc.blocks]
    assert shown == [
        (LEAD_IN, "Install these packages:"),
        (ITEM, "alpha - the first"),
        (ITEM, "beta, the second"),
        (ROW, "Flour 500 g"),
        (TERM, "utcnow()"),
        (DEFINITION, "Return the current UTC date and time."),
    ]  # the last paragraph is prose: not listed
    assert not doc.navigation


def test_a_code_block_is_one_unit_never_sentences():
    doc = _document(GZIP_PAGE)
    code = [(a, b) for a, b, kind in doc.blocks if kind == CODE]
    assert len(code) == 2
    units = [(s.start, s.end) for p in split_passages(doc) for s in p.sentences]
    assert set(code) <= set(units)  # each block whole, although it holds ". " and "\n"
    inside = [u for u in units if any(a <= u[0] < b for a, b in code)]
    assert inside == code
    assert "created virtual environment." in doc.text[code[1][0] : code[1][1]]


def test_a_long_code_block_is_split_at_line_ends_only():
    text = "\n".join(f"line_{i} = compute({i})  # step {i}" for i in range(40))
    units = split_code(text, 0, len(text), 200)
    assert len(units) > 1
    assert all(u.end - u.start <= 200 for u in units)
    assert all(u.end == len(text) or text[u.end] == "\n" for u in units)
    assert "\n".join(text[u.start : u.end] for u in units) == text  # every line, once


def test_a_lead_in_stays_in_one_passage_with_what_it_introduces():
    doc = _document(GZIP_PAGE)
    lead = next((a, b) for a, b, kind in doc.blocks if kind == LEAD_IN)
    code = next((a, b) for a, b, kind in doc.blocks if kind == CODE)
    assert doc.text[lead[0] : lead[1]] == "Example of how to GZIP compress an existing file:"
    [passage] = [p for p in split_passages(doc) if p.start <= lead[0] < p.end]
    assert passage.end >= code[1]


@pytest.mark.parametrize(
    ("paragraph", "following", "expected"),
    [
        ("Example of how to read a file:", CODE, True),
        ("The options are:", ITEM, True),
        ("It ends here:", "prose", False),  # ":" introduces code, lists, tables only
        ("Here's how.", "prose", True),
        ("Sometimes naming a goal helps, for example", "prose", True),
        ("Start with the goals.", CODE, False),
        ("you can download any source package by running", CODE, True),  # goes on in code
        ("you can download any source package by running", "prose", False),
    ],
)
def test_what_makes_a_lead_in(paragraph, following, expected):
    blocks = [Block(paragraph), Block("x = 1", code=True) if following == CODE else Block("y")]
    if following == ITEM:
        blocks[1] = Block("an item", kind=ITEM)
    found = assemble(Blocks(blocks, {}))
    assert any(kind == LEAD_IN for _, _, kind in found.blocks) is expected


def test_a_contents_page_is_navigation_and_a_content_page_is_not():
    assert _document(_contents_page()).navigation
    assert not _document(_contents_page(3)).navigation  # a short list of links is not one
    assert not _document(GZIP_PAGE).navigation


def test_shown_order_puts_navigation_pages_after_content_documents():
    docs = ["nav", "a", "nav", "b", "a"]
    order = list(_shown_order(docs, None, lambda doc: doc == "nav"))
    assert order == [1, 3, 4, 0, 2]
    assert list(_shown_order(["nav"], None, lambda doc: True)) == [0]  # still quoted alone


def test_quote_structure_marks_code_and_measures_the_lead_in():
    blocks = ((10, 30, LEAD_IN), (32, 60, CODE), (62, 70, ITEM))
    assert _structure(blocks, (32, 60), 100) == (32, 60, CODE, 0)
    assert _structure(blocks, (10, 60), 100) == (10, 60, CODE, 22)
    assert _structure(blocks, (0, 8), 100) == (0, 8, "prose", 0)
    assert _structure(blocks, (10, 30), 50) == (10, 30, "prose", 0)  # its code is past the passage
    assert _structure(blocks, (10, 20), 100) == (10, 60, CODE, 22)  # on to the code it leads to
    assert _structure(((10, 30, LEAD_IN), (40, 60, CODE)), (10, 20), 100)[2] == "prose"
    items = ((0, 10, LEAD_IN), (12, 20, ITEM), (22, 30, ITEM), (32, 40, ITEM))
    assert _structure(items, (0, 20), 35) == (0, 30, ITEM, 12)  # the list, to the passage end


def _ingest(tmp_path, settings, fake_embedder, pages: dict[str, str]):
    from verbatim.engine import Engine, ingest_paths
    from verbatim.index import load_index

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, html in pages.items():
        (folder / name).write_text(html, encoding="utf-8")
    ingest_paths([folder], settings, fake_embedder)
    return Engine(settings, load_index(settings), fake_embedder)


def test_a_code_block_is_quoted_whole_with_its_lead_in(tmp_path, settings, fake_embedder):
    engine = _ingest(tmp_path, settings, fake_embedder, {"gzip.html": GZIP_PAGE})
    try:
        answer = engine.ask("How do I GZIP compress an existing file?")
        first = answer.quotes[0]
        text = engine.index.text(first.doc_id)
        assert text[first.start : first.end] == first.text
        assert first.kind == CODE
        assert first.text[: first.lead_in].strip() == (
            "Example of how to GZIP compress an existing file:"
        )
        assert first.text.endswith("shutil.copyfileobj(f_in, f_out)")
        for quote in answer.quotes:  # no quote ends on a lead-in or splits a code block
            assert quote.text != "Example of how to GZIP compress an existing file:"
            assert text[quote.start : quote.end] == quote.text
        code = engine.ask("python venv created virtual environment activate")
        assert all(
            q.kind == CODE or "created virtual" not in q.text for q in code.quotes
        )  # program output is quoted only as part of its code block
    finally:
        engine.close()


def test_a_navigation_page_does_not_lead(tmp_path, settings, fake_embedder):
    pages = {"gzip.html": GZIP_PAGE, "contents.html": _contents_page()}
    engine = _ingest(tmp_path, settings, fake_embedder, pages)
    try:
        assert engine.index.documents["contents"].navigation()
        assert not engine.index.documents["gzip"].navigation()
        answer = engine.ask("compress an existing file with GZIP")
        docs = [q.doc_id for q in answer.quotes]
        assert docs[0] == "gzip" and "contents" in docs  # still quoted, after the content
        assert docs.index("contents") > max(i for i, d in enumerate(docs) if d == "gzip")
    finally:
        engine.close()


def test_kinds_are_stored_and_an_old_index_reads_as_prose(tmp_path, settings, fake_embedder):
    engine = _ingest(tmp_path, settings, fake_embedder, {"gzip.html": GZIP_PAGE})
    try:
        meta = engine.index.documents["gzip"]
        assert meta.blocks() == engine.index.document("gzip").blocks
        assert [k for _, _, k in meta.blocks()] == [LEAD_IN, CODE, CODE]
    finally:
        engine.close()
    extra = json.dumps({"metadata": {}, "sections": []})  # as written before kinds existed
    old = DocumentMeta("d", "t", None, None, None, None, "s", "h", extra)
    assert old.blocks() == () and not old.navigation()


def test_the_form_shows_code_as_code_escaped(tmp_path, settings, fake_embedder):
    from fastapi.testclient import TestClient

    from verbatim.server import create_app

    engine = _ingest(tmp_path, settings, fake_embedder, {"gzip.html": GZIP_PAGE})
    with TestClient(create_app(settings, engine=engine)) as client:
        page = client.get("/", params={"q": "python venv created virtual environment"}).text
        assert '<pre class="code"><code><mark>$ python -m venv env\n' in page
        assert "&gt;&gt;&gt; if x &lt; 1:" in page  # escaped, lines kept
        asked = client.post("/api/ask", json={"question": "GZIP compress an existing file"})
        assert asked.json()["quotes"][0]["kind"] == CODE


def test_docx_keeps_lists_tables_and_code(tmp_path):
    import docx
    from docx.shared import Pt

    from verbatim.ingest.office import read_docx

    document = docx.Document()
    document.add_heading("Setup", level=1)
    document.add_paragraph("Run these commands:")
    for line in ("$ make", "$ make install"):
        run = document.add_paragraph().add_run(line)
        run.font.name, run.font.size = "Courier New", Pt(10)
    document.add_paragraph("First item", style="List Bullet")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Flour", "500 g"
    path = tmp_path / "setup.docx"
    document.save(str(path))
    found = assemble(read_docx(path.read_bytes()))
    shown = [(kind, found.text[a:b]) for a, b, kind in found.blocks]
    assert shown == [
        (LEAD_IN, "Run these commands:"),
        (CODE, "$ make\n$ make install"),
        (ITEM, "First item"),
        (ROW, "Flour 500 g"),
    ]


def test_markdown_keeps_fenced_and_indented_code_and_lists():
    from verbatim.ingest.read import build_text

    body = (
        "# Setup\n\nInstall it like this:\n\n```\n$ pip install foo\n  --flag. Then\n```\n\n"
        "- one item\n- two item\n\n    continuation of the item\n\n"
        "Indented code follows:\n\n    x = 1\n        y = 2\n\nPlain text. More text.\n"
    )
    found = build_text(body, markdown=True)
    shown = [(kind, found.text[a:b]) for a, b, kind in found.blocks]
    assert shown == [
        (LEAD_IN, "Install it like this:"),
        (CODE, "$ pip install foo\n  --flag. Then"),  # no fences, indent kept, not a sentence
        (ITEM, "one item\ntwo item"),
        (LEAD_IN, "Indented code follows:"),
        (CODE, "x = 1\n    y = 2"),
    ]
    assert "continuation of the item" in found.text  # under a list: text, not code
    assert not build_text(body, markdown=False).blocks  # plain text keeps no kinds


def test_pdf_lines_in_a_fixed_pitch_font_are_code(tmp_path):
    from verbatim.ingest.pdf import Line, _page_blocks

    lines = [
        Line("To build it run the command:", 72, 700, 300, 700, 10),
        Line("$ make", 72, 688, 110, 688, 10, mono=True),
        Line("    --jobs 4", 96, 676, 160, 676, 10, mono=True),
        Line("Then install it.", 72, 664, 160, 664, 10),
    ]
    blocks = _page_blocks(lines, 1, 10)
    assert [(b.text, b.code) for b in blocks] == [
        ("To build it run the command:", False),
        ("$ make\n    --jobs 4", True),
        ("Then install it.", False),
    ]


def test_the_cli_prints_code_with_its_lines(capsys):
    from types import SimpleNamespace

    from verbatim.cli import _print_quote

    text = "Example of how to read it:\n\nwith open(p) as f:\n    data = f.read()"
    quote = SimpleNamespace(
        text=text, kind=CODE, lead_in=28, author=None, site=None, date=None, title="t",
        section="", page=None, role="article", link=None, doc_id="d", start=0, end=len(text),
        score=1.0, also_in=[],
    )  # fmt: skip
    _print_quote(quote)
    out = capsys.readouterr().out
    assert "  “Example of how to read it:\n" in out
    assert "    with open(p) as f:\n        data = f.read()\n" in out  # indentation kept


def test_pdf_bullet_lines_are_a_list_its_lead_in_introduces():
    from verbatim.ingest.pdf import _block

    flags = _block(["The output uses the following flags:"], False, False, 1)
    items = _block(["• E: for error;\n", "• W: for warning;"], False, False, 1)
    assert items.kind == ITEM and flags.kind == ""
    found = assemble(Blocks([flags, items], {}))
    assert [k for _, _, k in found.blocks] == [LEAD_IN, ITEM]
