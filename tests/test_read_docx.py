"""DOCX: headings as sections, tables, core properties; broken files and zip bombs skipped."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.builders import (
    docx_visible,
    fake_settings,
    make_docx,
    pieces,
    squash,
)
from verbatim.errors import NoDocuments
from verbatim.ingest import read as read_module
from verbatim.ingest import read_documents
from verbatim.ingest.read import UnreadableFile, read_file


def test_docx_headings_sections_tables_and_core_properties(tmp_path):
    make_docx(tmp_path / "bread.docx")
    [doc] = read_documents([tmp_path], fake_settings(tmp_path)).documents
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
        read_documents([tmp_path], fake_settings(tmp_path))
    assert "garbage.docx: not a valid DOCX" in str(caught.value)
    assert "empty.docx: not a valid DOCX" in str(caught.value)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", b"\0" * 2_000_000)
    monkeypatch.setattr(read_module, "MAX_UNZIPPED", 1_000_000)
    with pytest.raises(UnreadableFile, match="zip bomb"):
        read_file(Path("bomb.docx"), "bomb", bomb.getvalue())
