"""DOCX with python-docx: paragraphs and tables in document order, headings as sections, and
the title, author and date of the core properties."""

from __future__ import annotations

import io

from verbatim.ingest.read import Block, Blocks, UnreadableFile, open_zip, read_member
from verbatim.records import ITEM, ROW

# Paragraph styles that set code, and fonts that set it when a paragraph's every run uses one.
CODE_STYLES = ("code", "source", "preformatted", "verbatim", "html", "macro", "plain text")
MONOSPACE = ("courier", "consolas", "mono", "menlo", "monaco", "lucida console", "fixedsys")


def _kind(paragraph) -> str:
    """A paragraph's block kind: "code" (a code style, or monospace throughout), a list item
    (a list style or numbering), or prose ("")."""
    from docx.oxml.ns import qn

    try:
        name = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    except (KeyError, ValueError):  # a style the document names but does not define
        name = ""
    fonts = [(run.font.name or "").lower() for run in paragraph.runs if run.text.strip()]
    if any(s in name for s in CODE_STYLES) or (
        fonts and all(f.startswith(MONOSPACE) or " mono" in f for f in fonts)
    ):
        return "code"
    ppr = paragraph._p.pPr
    numbered = ppr is not None and ppr.find(qn("w:numPr")) is not None
    return ITEM if numbered or name.startswith("list") else ""


def _add_paragraph(blocks: list[Block], paragraph) -> None:
    """Append `paragraph` to `blocks`; consecutive code paragraphs make one code block, whose
    lines they are."""
    if _is_heading(paragraph):
        blocks.append(Block(paragraph.text, heading=True))
        return
    kind = _kind(paragraph)
    if kind == "code" and blocks and blocks[-1].code:
        blocks[-1] = Block(f"{blocks[-1].text}\n{paragraph.text}", code=True)
    elif kind == "code":
        blocks.append(Block(paragraph.text, code=True))
    else:
        blocks.append(Block(paragraph.text, kind=kind))


def _is_heading(paragraph) -> bool:
    """Word's heading and title styles, or any paragraph with an outline level."""
    try:
        name = (paragraph.style.name or "").lower() if paragraph.style is not None else ""
    except (KeyError, ValueError):  # a style the document names but does not define
        name = ""
    from docx.oxml.ns import qn

    ppr = paragraph._p.pPr
    outline = ppr is not None and ppr.find(qn("w:outlineLvl")) is not None
    return name.startswith(("heading", "title")) or outline


def _row_text(row) -> str:
    """A table row's cells, each once (python-docx repeats a merged cell), between spaces."""
    cells: list = []
    for cell in row.cells:
        if not cells or cell._tc is not cells[-1]._tc:
            cells.append(cell)
    return " ".join(" ".join(c.text.split()) for c in cells)


def _refuse_dtd(zf) -> None:
    """Refuse a DOCX whose XML declares a DTD. Word never writes one; python-docx leaves its
    entities unexpanded, and the text of a run after an entity reference would be lost."""
    for name in zf.namelist():
        if name.endswith((".xml", ".rels")) and b"<!DOCTYPE" in read_member(zf, name):
            raise UnreadableFile(
                f"{name} declares an XML DTD, which Word never writes; its entities would lose "
                "text, so the file is not read; open it in Word or LibreOffice and save it again"
            )


def read_docx(raw: bytes) -> Blocks:
    """A Word document's blocks and core properties."""
    import docx
    from docx.table import Table

    # A broken zip, a zip bomb or a DTD is refused before python-docx unpacks it.
    _refuse_dtd(open_zip(raw, "DOCX"))
    try:
        document = docx.Document(io.BytesIO(raw))
    except Exception as exc:  # python-docx raises KeyError, ValueError, its own errors ...
        raise UnreadableFile(
            f"not a valid DOCX ({type(exc).__name__}: {exc}); open it in Word or LibreOffice "
            "and save it again"
        ) from None
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks += [Block(_row_text(row), kind=ROW) for row in item.rows]
        else:
            _add_paragraph(blocks, item)
    props = document.core_properties
    created = props.created or props.modified
    title = props.title or next((b.text for b in blocks if b.heading), None)
    meta = {
        "title": title,
        "author": props.author or None,
        "date": created.date().isoformat() if created else None,
        "subject": props.subject or None,
        "keywords": props.keywords or None,
    }
    return Blocks(blocks, meta)
