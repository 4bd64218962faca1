"""PDF: the text of each page in reading order, as paragraphs, with pypdfium2 (PDFium).

Runs inside the sandboxed reader process (`verbatim.ingest.sandbox`), which bounds its time and
memory: PDFium is C++ reading untrusted input.

PDFium gives each page's characters in content order with line breaks between lines; it marks
a word hyphenated across a line end with U+FFFE and joins the two lines, so de-hyphenation is
dropping that mark. Lines become paragraphs by their geometry: a paragraph ends where the gap
to the next line is clearly wider than the page's usual line spacing, or where a short line is
followed by an indented one; lines set in a clearly larger font than the body are headings.
Running heads and page numbers (the same first or last line on many pages) are dropped.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass

from verbatim.ingest.read import TITLE_CHARS, Block, Blocks, UnreadableFile
from verbatim.records import ITEM

# Ligatures that fonts map to one code point; spelled out, so quotes and search see "find".
LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)
HYPHEN_MARK = "\ufffe"  # PDFium: a hyphen at a line end, the word joined across it
PARAGRAPH_GAP = 1.4  # a line gap this many times the page's usual one ends a paragraph
HEADING_SIZE = 1.15  # a line in a font this many times the body's is a heading
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ODD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ue000-\uf8ff\ufffd\U000f0000-\U0010ffff]")
_PAGE_NUMBER = re.compile(r"^(page\s+)?(\d{1,4}|[ivxlcdm]{1,7})(\s*(/|of)\s*\d{1,4})?$", re.I)
_PDFIUM_ERRORS = {
    2: "the file is missing or cannot be opened",
    3: "it is not a PDF, or it is damaged beyond repair; open it in a PDF viewer and save it again",
    4: "it is encrypted with a password; save an unencrypted copy (or print it to PDF) and "
    "ingest that",
    6: "it uses an unsupported security handler; save an unencrypted copy and ingest that",
}


@dataclass
class Line:
    """A line as PDFium gives it; one joined across a hyphen spans two lines on the page."""

    text: str
    left: float  # of its first character
    bottom: float  # of its first character
    right: float  # of its last character
    end_bottom: float  # of its last character
    size: float
    mono: bool = False  # set in a fixed-pitch font throughout: a line of code or its output


def clean_line(text: str) -> str:
    """De-hyphenated, ligatures spelled out, no control characters."""
    text = text.replace(HYPHEN_MARK, "").translate(LIGATURES)
    return _CONTROL.sub("", text)


def _garbled(text: str) -> bool:
    """Text from fonts without a Unicode map: mostly control, private-use or replacement
    characters."""
    visible = len(text) - text.count(" ") - text.count("\r") - 2 * text.count("\n")
    return len(_ODD.findall(text)) > 0.3 * max(visible, 1)


def _page_lines(textpage) -> list[Line]:
    """The page's lines with their boxes (left, baseline, right) and font size, in PDFium's
    (content) order."""
    import pypdfium2.raw as pdfium_c

    text = textpage.get_text_range()
    if _garbled(text):
        return []
    lines = []
    pos = 0
    for raw in re.split(r"\r\n|\n|\r", text):
        first = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, pos)
        last = pdfium_c.FPDFText_GetCharIndexFromTextIndex(textpage, pos + max(len(raw) - 1, 0))
        pos += len(raw) + (2 if text.startswith("\r\n", pos + len(raw)) else 1)
        line = clean_line(raw).strip()
        if not line or first < 0:
            continue
        left, bottom, _, _ = textpage.get_charbox(first)
        _, end_bottom, right, _ = textpage.get_charbox(max(last, first))
        size = pdfium_c.FPDFText_GetFontSize(textpage, first)
        mono = _fixed_pitch(textpage, first, max(last, first))
        lines.append(Line(line, left, bottom, right, end_bottom, size, mono))
    return lines


FIXED_PITCH = 1  # the FixedPitch flag of a PDF font descriptor


def _fixed_pitch(textpage, first: int, last: int) -> bool:
    """Whether a line's first, middle and last characters are set in a fixed-pitch font (three
    PDFium calls a line; a prose line with a word of code inside starts or ends in the body
    font)."""
    import ctypes

    import pypdfium2.raw as pdfium_c

    flags = ctypes.c_int(0)
    for at in {first, (first + last) // 2, last}:
        pdfium_c.FPDFText_GetFontInfo(textpage, at, None, 0, ctypes.byref(flags))
        if not flags.value & FIXED_PITCH:
            return False
    return True


def _running(pages: list[list[Line]]) -> set[tuple[int, int]]:
    """(page, line) of running heads and footers: page numbers, and first or last lines that
    recur (digits aside) on at least 3 pages and 30% of them."""

    def key(line: Line) -> str:
        return re.sub(r"\d+", "0", line.text.lower())

    ends = [
        (i, j)
        for i, lines in enumerate(pages)
        for j in {0, 1, len(lines) - 2, len(lines) - 1}
        if 0 <= j < len(lines)
    ]
    counts = Counter((j if j < 2 else j - len(pages[i]), key(pages[i][j])) for i, j in ends)
    floor = max(3, 0.3 * len(pages))
    found = set()
    for i, j in ends:
        line = pages[i][j]
        place = j if j < 2 else j - len(pages[i])
        if _PAGE_NUMBER.match(line.text) or counts[place, key(line)] >= floor:
            found.add((i, j))
    return found


def _page_blocks(lines: list[Line], page: int, body_size: float) -> list[Block]:
    """One page's lines joined into headings and paragraphs."""
    if not lines:
        return []
    gaps = [a.end_bottom - b.bottom for a, b in zip(lines, lines[1:], strict=False)]
    positive = sorted(g for g in gaps if g > 0) or [0.0]
    spacing = positive[int(0.3 * (len(positive) - 1))]  # the leading inside paragraphs
    rights = sorted(line.right for line in lines)
    margin = rights[int(0.8 * (len(rights) - 1))]  # where most lines end: the text's right edge
    blocks: list[Block] = []
    current: list[str] = []
    heading = code = False
    for n, line in enumerate(lines):
        is_heading = line.size >= HEADING_SIZE * body_size and len(line.text) <= 150
        prev = lines[n - 1] if n else None
        gap = prev.end_bottom - line.bottom if prev else 0
        short = prev is not None and _fits(prev, line, margin)
        new = (
            prev is None
            or is_heading != heading
            or line.mono != code  # code begins or ends
            or gap <= 0  # the next column or a line above: a new block
            or (spacing > 0 and gap > PARAGRAPH_GAP * spacing)
            or (short and line.left > prev.left + max(line.size, 1) and not code)
        )
        if new and current:
            blocks.append(_block(current, heading, code, page))
            current = []
        if current and (short or code):  # code keeps every line break
            current[-1] += "\n"  # a short line (verse, code, an address) keeps its break
        current.append(line.text)
        heading, code = is_heading, line.mono
    blocks.append(_block(current, heading, code, page))
    return blocks


BULLETS = ("•", "◦", "▪", "‣", "– ", "- ", "* ")  # a list item's mark at the start of its line


def _block(lines: list[str], heading: bool, code: bool, page: int) -> Block:
    """A block of `lines`: code, or a list when every line starts with a bullet."""
    text = _join(lines)  # a line of the text is a line the page broke on purpose
    listed = not (heading or code) and all(
        ln.lstrip().startswith(BULLETS) for ln in text.split("\n")
    )
    return Block(
        text, heading=heading, code=code and not heading, page=page, kind=ITEM if listed else ""
    )


def _fits(prev: Line, line: Line, margin: float) -> bool:
    """Whether the line's first word would have fitted at the end of the previous line (at
    about half an em a character): then that line was broken on purpose."""
    word = line.text.split(" ", 1)[0]
    return margin - prev.right > (len(word) + 1) * 0.5 * max(line.size, 1)


def _join(lines: list[str]) -> str:
    return " ".join(lines).replace("\n ", "\n")


def _meta(pdf) -> dict:
    info = pdf.get_metadata_dict(skip_empty=True)
    title = (info.get("Title") or "").strip()
    title = re.sub(r"^Microsoft (Word|PowerPoint) - |\.(docx?|pptx?)$", "", title).strip()
    if title.lower() in ("untitled", "untitled document", "title"):
        title = ""
    date = re.match(r"D:(\d{4})(\d{2})(\d{2})", info.get("CreationDate") or "")
    return {
        "title": title or None,
        "author": (info.get("Author") or "").strip() or None,
        "date": "-".join(date.groups()) if date else None,
        "subject": (info.get("Subject") or "").strip() or None,
        "keywords": (info.get("Keywords") or "").strip() or None,
    }


def _open(raw: bytes):
    import pypdfium2 as pdfium

    if not raw.lstrip()[:1024].count(b"%PDF-"):
        raise UnreadableFile("not a PDF (no %PDF- header); check what the file really is")
    if b"%%EOF" not in raw[-2048:]:
        raise UnreadableFile(
            "truncated PDF (no %%EOF end marker): the download or copy is incomplete; "
            "get the file again"
        )
    try:
        return pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None) or 0
        reason = _PDFIUM_ERRORS.get(code, f"PDFium could not open it ({exc})")
        raise UnreadableFile(f"unreadable PDF: {reason}") from None


def read_pdf(raw: bytes) -> Blocks:
    """A PDF's pages as blocks (each knows its page) and its metadata."""
    pdf = _open(raw)
    try:
        meta = _meta(pdf)
        pages: list[list[Line]] = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            pages.append(_page_lines(textpage))
            textpage.close()
            page.close()
    finally:
        pdf.close()
    if not any(pages):
        raise UnreadableFile(
            "no text layer (a scan, or text drawn as images): run OCR on it first, "
            "e.g. `ocrmypdf in.pdf out.pdf`, and ingest the result"
        )
    running = _running(pages)
    pages = [
        [ln for j, ln in enumerate(lines) if (i, j) not in running] for i, lines in enumerate(pages)
    ]
    sizes = [ln.size for lines in pages for ln in lines for _ in range(len(ln.text) // 20 + 1)]
    body = statistics.median(sizes) if sizes else 0.0
    blocks = [b for i, lines in enumerate(pages) for b in _page_blocks(lines, i + 1, body)]
    if not meta["title"]:
        first = next((b for b in blocks if b.heading and b.page == 1), None)
        meta["title"] = first.text if first is not None and len(first.text) <= TITLE_CHARS else None
    return Blocks(blocks, meta, len(pages))
