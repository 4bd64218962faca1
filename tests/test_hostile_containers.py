"""Hostile EPUB, DOCX and HTML (issue #32): a DTD's entities, nesting past the parser's limit
and a zip bomb are never dropped silently: the text is kept, or the file is skipped and the
skip report says why."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.builders import make_docx
from verbatim.ingest import markup, read_documents
from verbatim.ingest.read import UnreadableFile, read_file

CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:'
    'container"><rootfiles><rootfile full-path="content.opf" media-type="application/oebps-'
    'package+xml"/></rootfiles></container>'
)
OPF = (
    '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
    '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Book</dc:title></metadata>'
    '<manifest><item id="c1" href="c1.xhtml" media-type="application/xhtml+xml"/></manifest>'
    '<spine><itemref idref="c1"/></spine></package>'
)
DTD_CHAPTER = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
  <!ENTITY word "INJECTED">
]>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>One</title></head>
<body><p>Before the entity &xxe; and after it &word;&amp; the end.</p></body></html>"""


def epub(chapter: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mimetype", "application/epub+zip")
        zf.writestr("META-INF/container.xml", CONTAINER)
        zf.writestr("content.opf", OPF)
        zf.writestr("c1.xhtml", chapter)
    return out.getvalue()


def test_an_epub_chapter_with_an_internal_dtd_keeps_no_dtd_text():
    [doc] = read_file(Path("dtd.epub"), "dtd", epub(DTD_CHAPTER))
    assert "Before the entity" in doc.text and "and after it & the end." in doc.text
    for leaked in ("]>", "&xxe;", "&word;", "ENTITY", "INJECTED", "root:"):
        assert leaked not in doc.text


def test_a_docx_declaring_a_dtd_is_refused_with_the_reason(tmp_path):
    """python-docx leaves an entity unexpanded and drops the text of the run after it."""
    make_docx(tmp_path / "plain.docx")
    with zipfile.ZipFile(tmp_path / "plain.docx") as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    head, _, body = parts["word/document.xml"].partition(b"?>")
    xml = head + b'?><!DOCTYPE w:document [<!ENTITY e "x">]>' + body
    parts["word/document.xml"] = xml.replace(b"Let it rise", b"Let &e; it rise", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    with pytest.raises(UnreadableFile, match="word/document.xml declares an XML DTD"):
        read_file(Path("dtd.docx"), "dtd", out.getvalue())


def test_text_nested_past_the_parsers_limit_is_reported_not_dropped(tmp_path, settings):
    deep = "<div>" * 3000 + "<p>Deep text.</p>" + "</div>" * 3000
    page = f"<html><body><p>Before the nest.</p>{deep}<p>After the nest.</p></body></html>"
    (tmp_path / "deep.html").write_text(page)
    (tmp_path / "good.txt").write_text("Good\n\nA good file beside it.\n")
    corpus = read_documents([tmp_path], settings)
    assert [d.id for d in corpus.documents] == ["good"]
    [skipped] = corpus.skipped
    assert "Excessive depth" in skipped.reason and "would be lost" in skipped.reason


def test_an_epub_chapter_that_unpacks_too_large_is_a_zip_bomb(monkeypatch):
    monkeypatch.setattr(markup, "MAX_CHAPTER", 2**20, raising=False)
    with pytest.raises(UnreadableFile, match=r"c1.xhtml unpacks to 2,097,152 bytes.*zip bomb"):
        read_file(Path("bomb.epub"), "bomb", epub(b"\0" * 2**21))
