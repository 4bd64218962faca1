"""EPUB: chapters in spine order with the OPF's metadata; broken EPUBs skipped with a reason."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.builders import (
    fake_settings,
    html_visible,
    make_epub,
    pieces,
    squash,
)
from verbatim.ingest import read_documents


def test_epub_chapters_in_spine_order_with_opf_metadata(tmp_path):
    chapters = make_epub(tmp_path / "garden.epub")
    [doc] = read_documents([tmp_path], fake_settings(tmp_path)).documents
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
    corpus = read_documents([tmp_path], fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "not a valid EPUB" in reasons["not-a-zip.epub"]
    assert "not a valid EPUB" in reasons["no-container.epub"]
