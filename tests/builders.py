"""What the format tests build and compare with: PDF, DOCX and EPUB files written in code (so
no office or PDF tool is needed), a folder of every format, and each source's own visible text.

Every paragraph and sentence a reader makes (so every quote) is checked against the source's
visible text, white space aside: for HTML lxml's `text_content()` of the page, for PDF the
page's text as PDFium extracts it, for DOCX the text runs of the document's XML, for EPUB its
chapters' `text_content()`.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
from pathlib import Path

import lxml.html

from verbatim.ingest import split_passages
from verbatim.ingest.pdf import clean_line
from verbatim.records import Document

FIXTURES = Path(__file__).parent / "fixtures" / "formats"  # real HTML pages, one a site generator
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


def fake_settings(tmp_path: Path, **extra):
    """Settings over `tmp_path`/data for the fake embedder, with `extra` fields."""
    from verbatim.settings import Settings

    return Settings(data_dir=tmp_path / "data", model="fake", progress=False, **extra)


def pdf_bomb() -> bytes:
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
    document.save(str(path))


def docx_visible(raw: bytes) -> str:
    """The text runs (`<w:t>`) of the document's body, in order, squashed."""
    from lxml import etree

    xml = etree.fromstring(zipfile.ZipFile(io.BytesIO(raw)).read("word/document.xml"))
    return squash("".join(xml.xpath("//*[local-name()='t']/text()")))


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


# --- every format in one folder ----------------------------------------------------------------


def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for page in sorted(FIXTURES.glob("*.html")):  # the pages test_read_html.py reads
        (folder / page.name).write_bytes(page.read_bytes())
    (folder / "tomatoes.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    make_docx(folder / "bread.docx")
    make_epub(folder / "garden.epub")
    return folder


def visible_texts(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".pdf":
        return pdf_page_texts(raw)
    if path.suffix == ".docx":
        return [docx_visible(raw)]
    if path.suffix == ".epub":
        zf = zipfile.ZipFile(path)
        return ["".join(html_visible(zf.read(n)) for n in zf.namelist() if n.endswith("xhtml"))]
    return [html_visible(raw)]


def edge_shard(points, dim: int, path: Path):
    """Passage points (as `qdrant.publish` writes them) in a Qdrant Edge shard: Qdrant's own
    engine, in process, for the oracle tests."""
    import qdrant_edge as qe

    config = qe.EdgeConfig(
        vectors={"dense": qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)},
        sparse_vectors={"bm25": qe.EdgeSparseVectorParams()},
    )
    shard = qe.EdgeShard.create(str(path), config)
    made = []
    for p in points:
        vector = {"dense": p.vector["dense"]}
        if "bm25" in p.vector:
            sparse = p.vector["bm25"]
            vector["bm25"] = qe.SparseVector(indices=sparse.indices, values=sparse.values)
        made.append(qe.Point(id=p.id, vector=vector, payload=p.payload))
    shard.update(qe.UpdateOperation.upsert_points(made))
    return shard


def edge_store(shard, client, collection: str):
    """A `QdrantStore` of `collection` whose candidates come from `shard` by the store's own
    query plan: a dense and a sparse prefetch, their union by RRF."""
    import qdrant_edge as qe

    from verbatim.index import qdrant

    class EdgeStore(qdrant.QdrantStore):
        def candidates(self, vector, terms, n, allowed=None, exclude=None):
            assert allowed is None and exclude is None  # the oracle runs the plain plan
            ids = self._terms.ids(terms)
            dense = qe.Query.Nearest(vector.tolist(), using="dense")
            prefetch = [qe.Prefetch(limit=n, query=dense)]
            if ids:
                sparse = qe.SparseVector(indices=ids, values=[1.0] * len(ids))
                prefetch.append(qe.Prefetch(limit=n, query=qe.Query.Nearest(sparse, using="bm25")))
            request = qe.QueryRequest(
                limit=2 * n,
                prefetches=prefetch,
                query=qe.Fusion.Rrf(k=60),
                with_vector=True,
                with_payload=True,
            )
            return self._gather(shard.query(request), vector, terms, n)

    return EdgeStore(client, collection)
