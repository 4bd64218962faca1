"""Real folders read faithfully: HTML as the page reads, PDF with pages, DOCX and EPUB; ids that
never collide; reading in parallel with progress.

Every paragraph and sentence (so every quote, which is made of them) is checked against the
source's own visible text, white space aside: for HTML lxml's `text_content()` of the page, for
PDF the page's text as PDFium extracts it, for DOCX the text runs of the document's XML, for
EPUB its chapters' `text_content()`. PDFs are written by hand here, so no PDF tool is needed.
"""

from __future__ import annotations

import io
import re
import time
import unicodedata
import zipfile
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner

from verbatim.answer import answer, text_fragment_link
from verbatim.cli import cli
from verbatim.engine import Engine
from verbatim.errors import NoDocuments
from verbatim.index import build_index, load_index
from verbatim.ingest import read as read_module
from verbatim.ingest import read_documents, split_passages
from verbatim.ingest.files import root_labels
from verbatim.ingest.pdf import clean_line
from verbatim.ingest.read import UnreadableFile, read_file
from verbatim.ingest.workers import Progress
from verbatim.records import Corpus, Document, Section

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
MARKDOWN = ("**", "`", "¶", "\\_", "```", "\n- ", "\n* ", "](")


def squash(text: str) -> str:
    """The text with white space (and invisible characters) aside, as the checks compare it."""
    return "".join(unicodedata.normalize("NFC", text).translate(INVISIBLE).split())


def pieces(doc: Document) -> list[str]:
    """Every paragraph and every sentence of a document: what quotes are made of."""
    out = [doc.text[a:b] for s in doc.sections for a, b in s.paragraphs]
    for p in split_passages(doc):
        out += [doc.text[s.start : s.end] for s in p.sentences]
    return out


def html_visible(raw: bytes) -> str:
    """lxml's `text_content()` of the page, squashed (UTF-8 unless the page says otherwise)."""
    try:
        raw.decode("utf-8")
        parser = lxml.html.HTMLParser(huge_tree=True, encoding="utf-8")
    except UnicodeDecodeError:
        parser = lxml.html.HTMLParser(huge_tree=True)
    return squash(lxml.html.document_fromstring(raw, parser=parser).text_content())


# --- HTML -----------------------------------------------------------------------------------

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
    corpus = read_documents([tmp_path], _settings(tmp_path))
    assert "Café au lait." in corpus.documents[0].text
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "binary" in reasons["binary.html"]
    assert "no main text" in reasons["empty.html"]


# --- PDF, written by hand ---------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252").replace(b"\\", b"\\\\")
    return b"(" + raw.replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def page_stream(lines: list) -> bytes:
    """A page's content: Helvetica 11 on 14-point lines; a ("h", text) line is a 20-point
    heading, ("lig", bytes) is drawn in F2, whose code 1 is the "fi" glyph, "" is a blank line."""
    out = [b"BT /F1 11 Tf 14 TL 72 740 Td"]
    for line in lines:
        if isinstance(line, tuple) and line[0] == "h":
            out += [b"/F1 20 Tf", _pdf_string(line[1]) + b" Tj", b"/F1 11 Tf 0 -30 Td"]
        elif isinstance(line, tuple):
            out += [b"/F2 11 Tf", b"(" + line[1] + b") Tj T*", b"/F1 11 Tf"]
        else:
            out += [_pdf_string(line) + b" Tj T*" if line else b"T*"]
    return b"\n".join([*out, b"ET"])


def make_pdf(pages: list, info: dict | None = None, extra: dict | None = None) -> bytes:
    """A small valid PDF: catalog, pages, two fonts, one content stream a page, an xref."""
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding << /Type /Encoding "
        b"/BaseEncoding /WinAnsiEncoding /Differences [1 /fi] >> >>",
    }
    kids = " ".join(f"{10 + 2 * i} 0 R" for i in range(len(pages)))
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    resources = b"<< /Font << /F1 3 0 R /F2 4 0 R >> /XObject << /X0 20 0 R >> >>"
    for i, page in enumerate(pages):
        stream = page if isinstance(page, bytes) else page_stream(page)
        objs[10 + 2 * i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
            + resources
            + f" /Contents {11 + 2 * i} 0 R >>".encode()
        )
        objs[11 + 2 * i] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    if info:
        objs[5] = (
            b"<< "
            + b" ".join(b"/%s %s" % (k.encode(), _pdf_string(v)) for k, v in info.items())
            + b" >>"
        )
    objs.update(extra or {})
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in sorted(objs):
        offsets[num] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (num, objs[num])
    size = max(objs) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for num in range(1, size):
        out += b"%010d 00000 n \n" % offsets[num] if num in offsets else b"0000000000 65535 f \n"
    trailer = b"<< /Size %d /Root 1 0 R%s" % (size, b" /Info 5 0 R" if info else b"")
    if 6 in objs:  # an /Encrypt dictionary
        trailer += b" /Encrypt 6 0 R /ID [<%s> <%s>]" % (b"ab" * 16, b"ab" * 16)
    return bytes(out + b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref)


TWO_PAGES = [
    [
        ("h", "Growing Tomatoes"),
        "Tomatoes need full sun and regular watering through the whole of the summer,",
        "and they thank you for it with a long harvest. Water the soil, not the leaves, exam-",
        "ple given: a soaker hose laid along the row in the early morning hours.",
        "",
        "Stake the plants when they are small. A stake driven in later can damage the",
        "roots, which spread wider than the plant above ground in its first weeks.",
        (b"lig", b"\x01nd the sturdiest stakes you can, and tie the stems loosely."),
        "",
        "",
        "1",
    ],
    [
        ("h", "Pests"),
        "Aphids love tomato plants. Spray them off with water every morning, or bring in",
        "ladybirds, which eat aphids by the hundred and ask for nothing in return.",
        "",
        "2",
    ],
]
INFO = {"Title": "Tomato Guide", "Author": "Ada Gardener", "CreationDate": "D:20240301120000Z"}


def pdf_page_texts(raw: bytes) -> list[str]:
    """Each page's text as PDFium extracts it (hyphen marks and ligatures as `read_pdf` maps
    them), squashed."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(raw)
    try:
        return [squash(clean_line(pdf[i].get_textpage().get_text_range())) for i in range(len(pdf))]
    finally:
        pdf.close()


def _settings(tmp_path: Path, **extra):
    from verbatim.settings import Settings

    return Settings(data_dir=tmp_path / "data", model="fake", progress=False, **extra)


def test_a_two_page_pdf_reads_with_pages(tmp_path):
    raw = make_pdf(TWO_PAGES, INFO)
    (tmp_path / "tomatoes.pdf").write_bytes(raw)
    [doc] = read_documents([tmp_path], _settings(tmp_path)).documents
    assert (doc.id, doc.title, doc.author, doc.date) == (
        "tomatoes",
        "Tomato Guide",
        "Ada Gardener",
        "2024-03-01",
    )
    assert len(doc.pages) == 2 and doc.pages[0] == 0
    first, second = doc.text[: doc.pages[1]], doc.text[doc.pages[1] :]
    assert "the leaves, example given: a soaker hose" in first  # de-hyphenated
    assert "find the sturdiest stakes" in first  # the ligature spelled out
    assert "Aphids love tomato plants." in second and "Aphids" not in first
    assert re.search(r"\b[12]\b", doc.text) is None  # page numbers dropped
    assert [s.heading for s in doc.sections] == ["Growing Tomatoes", "Pests"]
    paragraphs = [doc.text[a:b] for s in doc.sections for a, b in s.paragraphs]
    assert len(paragraphs) == 3  # two on page 1 (a blank line between them), one on page 2
    pages = pdf_page_texts(raw)
    for passage in split_passages(doc):  # no passage spans a page break
        page = [i for i, start in enumerate(doc.pages) if start <= passage.start][-1]
        assert passage.end <= (doc.pages[page + 1] if page + 1 < len(doc.pages) else len(doc.text))
        for s in passage.sentences:
            assert squash(doc.text[s.start : s.end]) in pages[page]


def test_clean_line_de_hyphenates_and_spells_out_ligatures():
    assert (
        clean_line("exam\ufffeple of a ﬁne ﬂow, ﬀ ﬃ ﬄ\x07") == "example of a fine flow, ff ffi ffl"
    )


def test_broken_pdfs_are_skipped_with_a_reason_each(tmp_path):
    good = make_pdf(TWO_PAGES, INFO)
    (tmp_path / "good.pdf").write_bytes(good)
    (tmp_path / "truncated.pdf").write_bytes(good[: len(good) // 2])
    (tmp_path / "not-a-pdf.pdf").write_bytes(b"<html>saved by mistake</html>")
    (tmp_path / "malformed.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF\n")
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -44 >>" % (b"11" * 32, b"22" * 32)
    (tmp_path / "encrypted.pdf").write_bytes(make_pdf([["Secret text."]], extra={6: encrypt}))
    scan = b"0.5 g 72 72 468 648 re f"  # only a grey rectangle: no text layer
    (tmp_path / "scan.pdf").write_bytes(make_pdf([scan, scan]))
    corpus = read_documents([tmp_path], _settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "truncated" in reasons["truncated.pdf"] and "again" in reasons["truncated.pdf"]
    assert "not a PDF" in reasons["not-a-pdf.pdf"]
    assert "damaged" in reasons["malformed.pdf"] or "unreadable" in reasons["malformed.pdf"]
    assert "password" in reasons["encrypted.pdf"] and "unencrypted copy" in reasons["encrypted.pdf"]
    assert "no text layer" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]


def _bomb() -> bytes:
    """Form XObjects drawing each other ten times, nine deep: 10^9 text draws for one page."""
    extra = {}
    for level in range(10):
        if level < 9:
            body = b"/X%d Do\n" % (level + 1) * 10
            res = b"<< /XObject << /X%d %d 0 R >> /Font << /F1 3 0 R >> >>" % (
                level + 1,
                21 + level,
            )
        else:
            body, res = b"BT /F1 12 Tf 72 700 Td (boom) Tj ET", b"<< /Font << /F1 3 0 R >> >>"
        extra[20 + level] = (
            b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources %s /Length %d >>\n"
            b"stream\n%s\nendstream" % (res, len(body), body)
        )
    return make_pdf([b"/X0 Do"], extra=extra)


def test_a_hostile_pdf_is_skipped_within_its_time_limit(tmp_path):
    (tmp_path / "bomb.pdf").write_bytes(_bomb())
    (tmp_path / "good.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    (tmp_path / "notes.md").write_text("Notes read while the bomb ticks.")
    began = time.monotonic()
    corpus = read_documents([tmp_path], _settings(tmp_path, read_timeout_s=2, read_memory_mb=2048))
    assert time.monotonic() - began < 2 + 10  # the limit, plus starting the readers
    assert [d.id for d in corpus.documents] == ["good", "notes"]
    [skip] = corpus.skipped
    assert skip.path.endswith("bomb.pdf")
    assert "longer than 2 s" in skip.reason and "VERBATIM_READ_TIMEOUT_S" in skip.reason


# --- DOCX -------------------------------------------------------------------------------------


def make_docx(path: Path) -> None:
    import datetime as dt

    import docx

    document = docx.Document()
    document.core_properties.title = "Bread Handbook"
    document.core_properties.author = "Bob Baker"
    document.core_properties.created = dt.datetime(2022, 5, 6, 10, 0)
    document.add_heading("Kneading", level=1)
    document.add_paragraph("Knead the dough for ten minutes. ").add_run("Really").italic = True
    document.add_paragraph("Let it rise until doubled in size.")
    table = document.add_table(rows=2, cols=2)
    for (r, c), text in {
        (0, 0): "Flour",
        (0, 1): "500 g",
        (1, 0): "Water",
        (1, 1): "350 g",
    }.items():
        table.cell(r, c).text = text
    document.add_heading("Baking", level=2)
    document.add_paragraph("Bake the loaf at 230 degrees for forty minutes.")
    document.save(path)


def docx_visible(raw: bytes) -> str:
    """The text runs (`<w:t>`) of the document's body, in order, squashed."""
    from lxml import etree

    xml = etree.fromstring(zipfile.ZipFile(io.BytesIO(raw)).read("word/document.xml"))
    return squash("".join(xml.xpath("//*[local-name()='t']/text()")))


def test_docx_headings_sections_tables_and_core_properties(tmp_path):
    make_docx(tmp_path / "bread.docx")
    [doc] = read_documents([tmp_path], _settings(tmp_path)).documents
    assert (doc.title, doc.author, doc.date) == ("Bread Handbook", "Bob Baker", "2022-05-06")
    assert [s.heading for s in doc.sections] == ["Kneading", "Baking"]
    assert doc.text == (
        "Kneading\n\nKnead the dough for ten minutes. Really\n\nLet it rise until doubled in "
        "size.\n\nFlour 500 g\n\nWater 350 g\n\nBaking\n\nBake the loaf at 230 degrees for "
        "forty minutes."
    )
    visible = docx_visible((tmp_path / "bread.docx").read_bytes())
    assert all(squash(piece) in visible for piece in pieces(doc))


def test_broken_docx_and_a_zip_bomb_are_skipped(tmp_path, monkeypatch):
    (tmp_path / "garbage.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with zipfile.ZipFile(tmp_path / "empty.docx", "w") as zf:
        zf.writestr("hello.txt", "no word/document.xml here")
    with pytest.raises(NoDocuments, match="no readable documents") as caught:
        read_documents([tmp_path], _settings(tmp_path))
    assert "garbage.docx: not a valid DOCX" in str(caught.value)
    assert "empty.docx: not a valid DOCX" in str(caught.value)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", b"\0" * 2_000_000)
    monkeypatch.setattr(read_module, "MAX_UNZIPPED", 1_000_000)
    with pytest.raises(UnreadableFile, match="zip bomb"):
        read_file(Path("bomb.docx"), "bomb", bomb.getvalue())


# --- EPUB -------------------------------------------------------------------------------------

OPF = """<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:identifier id="id">urn:uuid:1234</dc:identifier><dc:title>The Garden Year</dc:title>
<dc:creator>Ada Gardener</dc:creator><dc:creator>Bob Digger</dc:creator>
<dc:date>2021-09-30T00:00:00Z</dc:date><dc:publisher>Green Press</dc:publisher>
<dc:language>en</dc:language></metadata>
<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
<item id="c1" href="text/spring.xhtml" media-type="application/xhtml+xml"/>
<item id="c2" href="text/summer%20days.xhtml" media-type="application/xhtml+xml"/></manifest>
<spine><itemref idref="nav"/><itemref idref="c2"/><itemref idref="c1"/></spine>
</package>"""
CHAPTER = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>
<body><section><h1>{title}</h1>{body}</section></body></html>"""
NAV = """<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"
xmlns:epub="http://www.idpf.org/2007/ops"><body><nav epub:type="toc"><ol><li>
<a href="text/spring.xhtml">Spring</a></li></ol></nav></body></html>"""


def make_epub(path: Path) -> dict[str, bytes]:
    chapters = {
        "OEBPS/text/summer days.xhtml": CHAPTER.format(
            title="Summer",
            body="<p>Water <em>deeply</em> and rarely; shallow watering makes shallow roots.</p>"
            "<pre>07:00  water\n19:00  check the beds</pre>",
        ).encode(),
        "OEBPS/text/spring.xhtml": CHAPTER.format(
            title="Spring", body="<p>Sow peas as soon as the soil can be worked.</p>"
        ).encode(),
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument'
            ':xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type='
            '"application/oebps-package+xml"/></rootfiles></container>',
        )
        zf.writestr("OEBPS/content.opf", OPF)
        zf.writestr("OEBPS/nav.xhtml", NAV)
        for name, data in chapters.items():
            zf.writestr(name, data)
    return chapters


def test_epub_chapters_in_spine_order_with_opf_metadata(tmp_path):
    chapters = make_epub(tmp_path / "garden.epub")
    [doc] = read_documents([tmp_path], _settings(tmp_path)).documents
    assert (doc.title, doc.author, doc.date, doc.site) == (
        "The Garden Year",
        "Ada Gardener, Bob Digger",
        "2021-09-30",
        "Green Press",
    )
    assert doc.metadata["language"] == "en"
    assert [s.heading for s in doc.sections] == ["Summer", "Spring"]  # the spine's order
    assert "Water deeply and rarely" in doc.text and "07:00  water\n19:00  check" in doc.text
    assert "Spring\n\nSow peas" in doc.text and doc.text.count("Spring") == 1  # no nav document
    visible = "".join(html_visible(c) for c in chapters.values())
    assert all(squash(piece) in visible for piece in pieces(doc))


def test_broken_epubs_are_skipped_with_a_reason(tmp_path):
    make_epub(tmp_path / "good.epub")
    (tmp_path / "not-a-zip.epub").write_text("just text")
    with zipfile.ZipFile(tmp_path / "no-container.epub", "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
    corpus = read_documents([tmp_path], _settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "not a valid EPUB" in reasons["not-a-zip.epub"]
    assert "not a valid EPUB" in reasons["no-container.epub"]


# --- ids --------------------------------------------------------------------------------------


def test_ids_stay_distinct_across_folders_with_the_same_names(tmp_path):
    for folder, suffix in (("notes", ".md"), ("saved-articles", ".html")):
        (tmp_path / folder / "tutorial").mkdir(parents=True)
        body = (
            "<html><body><p>Text of {0}.</p></body></html>" if suffix == ".html" else "Text of {0}."
        )
        (tmp_path / folder / f"index{suffix}").write_text(body.format(folder))
        (tmp_path / folder / "tutorial" / f"venv{suffix}").write_text(body.format(folder + " venv"))
    roots = [tmp_path / "notes", tmp_path / "saved-articles"]
    corpus = read_documents(roots, _settings(tmp_path))
    assert [d.id for d in corpus.documents] == [
        "notes/index",
        "notes/tutorial/venv",
        "saved-articles/index",
        "saved-articles/tutorial/venv",
    ]
    assert not corpus.skipped
    again = read_documents(roots, _settings(tmp_path))  # stable across re-ingest
    assert [d.id for d in again.documents] == [d.id for d in corpus.documents]
    alone = read_documents([tmp_path / "notes"], _settings(tmp_path))  # one folder: as before
    assert [d.id for d in alone.documents] == ["index", "tutorial/venv"]


def test_the_same_file_given_twice_is_read_once_and_reported_once(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("Alpha text.")
    (tmp_path / "notes" / "b.md").write_text("Beta text.")
    roots = [tmp_path / "notes", tmp_path / "notes", tmp_path / "notes" / "a.md"]
    corpus = read_documents(roots, _settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["a", "b"]
    assert [(Path(s.path).name, s.reason) for s in corpus.skipped] == [
        ("notes", "given twice; read once"),
        ("a.md", f"inside {tmp_path / 'notes'}, which is read whole; read once"),
    ]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b-again.md").hardlink_to(tmp_path / "notes" / "b.md")
    corpus = read_documents([tmp_path / "notes", tmp_path / "elsewhere"], _settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["notes/a", "notes/b"]
    [skip] = corpus.skipped
    assert skip.reason == f"the same file as {tmp_path / 'notes' / 'b.md'}, given twice; read once"


def test_same_named_folders_take_more_of_their_path(tmp_path):
    for parent in ("work", "home"):
        (tmp_path / parent / "notes").mkdir(parents=True)
        (tmp_path / parent / "notes" / "todo.md").write_text(f"Things to do at {parent}.")
    roots = [tmp_path / "work" / "notes", tmp_path / "home" / "notes"]
    assert root_labels(roots) == {roots[0]: "work/notes", roots[1]: "home/notes"}
    ids = [d.id for d in read_documents(roots, _settings(tmp_path)).documents]
    assert ids == ["work/notes/todo", "home/notes/todo"]


def test_a_file_whose_id_is_taken_keeps_its_suffix(tmp_path):
    (tmp_path / "a.md").write_text("The Markdown one.")
    (tmp_path / "a.txt").write_text("The text one.")
    corpus = read_documents([tmp_path], _settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["a", "a.txt"] and not corpus.skipped


# --- reading in parallel, with progress ---------------------------------------------------------


def test_parallel_reading_is_deterministic(tmp_path):
    for i in range(70):  # more than IN_PROCESS_UP_TO: the workers read HTML too
        body = f"<html><body><article><h1>Page {i}</h1><p>Paragraph {i} text.</p></article>"
        (tmp_path / f"page-{i:02d}.html").write_text(body)
    (tmp_path / "guide.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    one = read_documents([tmp_path], _settings(tmp_path, read_workers=1))
    two = read_documents([tmp_path], _settings(tmp_path, read_workers=2))
    assert one.documents == two.documents and one.passages == two.passages
    assert [d.id for d in one.documents] == ["guide", *(f"page-{i:02d}" for i in range(70))]
    assert one.formats == {"html": 70, "pdf": 1}


def test_progress_prints_a_line_off_a_terminal_and_a_summary(capsys, monkeypatch):
    monkeypatch.setattr("verbatim.ingest.workers.LOG_EVERY_S", 0.0)
    progress = Progress(3, enabled=True)
    for _ in range(3):
        progress.advance()
    progress.close({"pdf": 2, "html": 1}, skipped=1)
    err = capsys.readouterr().err
    assert "Reading: 1/3 files" in err and "files/s, about" in err
    assert re.search(r"Read 3 files in [\d.]+ s \([\d.]+ files/s\): 1 html, 2 pdf; 1 skipped", err)
    silent = Progress(3, enabled=False)
    silent.advance()
    silent.close({}, 0)
    assert capsys.readouterr().err == ""


# --- pages through the index, the answer, the CLI and the source view -------------------------


def _mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in EXPECTED:
        (folder / name).write_bytes((FIXTURES / name).read_bytes())
    (folder / "tomatoes.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    make_docx(folder / "bread.docx")
    make_epub(folder / "garden.epub")
    return folder


def _visible(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".pdf":
        return pdf_page_texts(raw)
    if path.suffix == ".docx":
        return [docx_visible(raw)]
    if path.suffix == ".epub":
        zf = zipfile.ZipFile(path)
        return ["".join(html_visible(zf.read(n)) for n in zf.namelist() if n.endswith("xhtml"))]
    return [html_visible(raw)]


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
    folder = _mixed_folder(tmp_path)
    settings = _settings(tmp_path)
    build_index(read_documents([folder], settings), settings, fake_embedder)
    index = load_index(settings)
    seen_formats, pdf_pages = set(), set()
    for question in QUESTIONS:
        result = answer(question, index, fake_embedder, settings, 5, None)
        for quote in result.quotes + result.near_misses:
            source = folder / Path(index.documents[quote.doc_id].source).name
            visible = _visible(source)
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
    settings = _settings(tmp_path)
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
    settings = _settings(tmp_path)
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
    settings = _settings(tmp_path)
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
