"""The document formats, one row per file suffix: which reader parses it, whether it is read in
a sandboxed worker, and, for common formats Verbatim does not read, what to convert them to.

Every place that needs a format reads this table: which files are collected
(`verbatim.ingest.files`), which reader parses a file (`verbatim.ingest.read`), and which files
only a sandboxed worker may read (`verbatim.ingest.workers`). A new format is one row here and
its reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Shape = Literal["text", "blocks", "rows"]


@dataclass(frozen=True)
class Format:
    """How the files with one suffix are read.

    Attributes:
        name: the format's name, as ingest reports it (`md`, `txt`, `html`, `pdf` ...).
        reader: the parsing function, `module.function` within `verbatim.ingest`, imported when
            the first such file is read (the PDF, DOCX and EPUB parsers are heavy imports); ""
            for a format Verbatim does not read.
        shape: what the reader returns: `text` (clean text, sections, metadata), `blocks`
            (`Block`s to assemble, metadata, page count) or `rows` (many documents: JSONL).
        sandboxed: read only in a sandboxed worker: a C or zip parser on untrusted input.
        convert: for a format Verbatim does not read, what to turn it into.
    """

    name: str
    reader: str = ""
    shape: Shape = "text"
    sandboxed: bool = False
    convert: str = ""


_MARKDOWN = Format("md", "read.read_markdown")
_HTML = Format("html", "markup.read_html", "blocks")
_AS_DOCX = "save it as .docx"
_AS_EPUB = "convert it to EPUB (Calibre does)"
_AS_PDF = "export it as PDF"

FORMATS: dict[str, Format] = {
    ".md": _MARKDOWN,
    ".markdown": _MARKDOWN,
    ".txt": Format("txt", "read.read_text"),
    ".html": _HTML,
    ".htm": _HTML,
    ".xhtml": _HTML,
    ".pdf": Format("pdf", "pdf.read_pdf", "blocks", sandboxed=True),
    ".docx": Format("docx", "office.read_docx", "blocks", sandboxed=True),
    ".epub": Format("epub", "markup.read_epub", "blocks", sandboxed=True),
    ".jsonl": Format("jsonl", "read.read_jsonl", "rows"),
    # Common files Verbatim does not read, and what to do with them.
    ".doc": Format("doc", convert=_AS_DOCX),
    ".odt": Format("odt", convert=_AS_DOCX),
    ".rtf": Format("rtf", convert=_AS_DOCX),
    ".pages": Format("pages", convert="export it as .docx or PDF"),
    ".mobi": Format("mobi", convert=_AS_EPUB),
    ".azw": Format("azw", convert=_AS_EPUB),
    ".azw3": Format("azw3", convert=_AS_EPUB),
    ".pptx": Format("pptx", convert=_AS_PDF),
    ".ppt": Format("ppt", convert=_AS_PDF),
    ".djvu": Format("djvu", convert="convert it to PDF with a text layer"),
}

SUFFIXES = frozenset(suffix for suffix, fmt in FORMATS.items() if fmt.reader)
BY_NAME: dict[str, Format] = {fmt.name: fmt for fmt in FORMATS.values() if fmt.reader}


def format_of(path: Path) -> str:
    """The name of the format a file is read as: `md`, `txt`, `html`, `pdf`, `docx`, `epub` or
    `jsonl` (KeyError for a suffix not in `SUFFIXES`)."""
    return FORMATS[path.suffix.lower()].name
