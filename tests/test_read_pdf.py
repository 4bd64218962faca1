"""PDF, written by hand: pages, de-hyphenation and ligatures, broken PDFs skipped with a reason,
a hostile one skipped within its time limit."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.builders import (
    INFO,
    TWO_PAGES,
    fake_settings,
    make_pdf,
    pdf_bomb,
    pdf_page_texts,
    squash,
)
from verbatim.ingest import read_documents, split_passages
from verbatim.ingest.pdf import clean_line


def test_a_two_page_pdf_reads_with_pages(tmp_path):
    raw = make_pdf(TWO_PAGES, INFO)
    (tmp_path / "tomatoes.pdf").write_bytes(raw)
    [doc] = read_documents([tmp_path], fake_settings(tmp_path)).documents
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
    corpus = read_documents([tmp_path], fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "truncated" in reasons["truncated.pdf"] and "again" in reasons["truncated.pdf"]
    assert "not a PDF" in reasons["not-a-pdf.pdf"]
    assert "damaged" in reasons["malformed.pdf"] or "unreadable" in reasons["malformed.pdf"]
    assert "password" in reasons["encrypted.pdf"] and "unencrypted copy" in reasons["encrypted.pdf"]
    assert "no text layer" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]


@pytest.mark.stress  # waits out the whole limit; under a heavy load the good PDF may miss it
def test_a_hostile_pdf_is_skipped_within_its_time_limit(tmp_path):
    (tmp_path / "bomb.pdf").write_bytes(pdf_bomb())
    (tmp_path / "good.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    (tmp_path / "notes.md").write_text("Notes read while the bomb ticks.")
    began = time.monotonic()
    corpus = read_documents(
        [tmp_path], fake_settings(tmp_path, read_timeout_s=2, read_memory_mb=2048)
    )
    assert time.monotonic() - began < 2 + 10  # the limit, plus starting the readers
    assert [d.id for d in corpus.documents] == ["good", "notes"]
    [skip] = corpus.skipped
    assert skip.path.endswith("bomb.pdf")
    assert "longer than 2 s" in skip.reason and "VERBATIM_READ_TIMEOUT_S" in skip.reason
