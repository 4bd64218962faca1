"""Read one file into clean text with sections and paragraph offsets."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import importlib
import json
import os
import re
import stat
import textwrap
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verbatim.ingest.files import printable
from verbatim.ingest.formats import FORMATS, Format
from verbatim.records import CODE, ITEM, LEAD_IN, PROSE, ROW, TERM, Document, Section

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\t"), " ")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_BULLET = re.compile(r"^\s*[-*+]\s+")


# Bytes looked at for a NUL: text has none, and a binary file has one well within them.
SNIFF_BYTES = 8192
# The longest first line taken as a title (of a text file, or a PDF's first line): longer,
# it is the first sentence of the text.
TITLE_CHARS = 120


class UnreadableFile(Exception):
    """Raised for a file that cannot become a document; the message is the reason."""


def normalize(text: str) -> str:
    """NFC, one kind of line break and space, no invisible characters, no trailing blanks."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_INVISIBLE).translate(_SPACES)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _strip_inline(line: str) -> str:
    line = _IMAGE.sub("", line)
    line = _LINK.sub(r"\1", line)
    line = _EMPHASIS.sub(r"\2", line)
    return _BULLET.sub("", line).strip()


def build_text(
    body: str, *, markdown: bool, roles: dict[str, str] | None = None, role: str = "article"
) -> Text:
    """Turn a body of blank-line-separated blocks into clean text and sections (no metadata).

    With `markdown`, `#` lines open a new section (its `role` looked up in `roles`), inline
    markup is dropped and soft-wrapped lines are joined. Headings stay in the clean text, so a
    document reads whole, but belong to no paragraph and so are never quoted.
    """
    roles = roles or {}
    parts: list[str] = []
    pos = 0
    sections: list[Section] = []
    heading, sec_role, sec_start = "", role, 0
    paragraphs: list[tuple[int, int]] = []

    def close(end: int) -> None:
        if paragraphs:
            sections.append(Section(sec_start, end, heading, sec_role, tuple(paragraphs)))

    found: list[tuple[int, int, Block]] = []  # every block placed, for its kind
    for block, code in _md_blocks(normalize(body)) if markdown else _plain_blocks(body):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        match = _HEADING.match(lines[0]) if markdown and len(lines) == 1 and not code else None
        listy = False
        if code:
            chunk = "\n".join(ln.rstrip() for ln in block.split("\n")).strip("\n")
        elif markdown and not match:
            listy = all(_BULLET.match(ln) or re.match(r"^\d+[.)]\s", ln) for ln in lines)
            lines = [_strip_inline(ln) for ln in lines]
            lines = [ln for ln in lines if ln]
            if not lines:
                continue
            chunk = "\n".join(lines) if listy else " ".join(lines)
        else:
            chunk = "\n".join(lines)
        if parts:
            pos += 2
        start = pos
        if match:
            close(start)
            heading = _strip_inline(match.group(2))
            sec_role = roles.get(heading, role)
            chunk = heading
            paragraphs = []
            sec_start = start
        else:
            paragraphs.append((start, start + len(chunk)))
        found.append((start, start + len(chunk), _md_block(chunk, match, code, listy)))
        parts.append(chunk)
        pos = start + len(chunk)
    close(pos)
    text = "\n\n".join(parts)
    return Text(text, tuple(sections), {}, blocks=block_kinds(text, found) if markdown else ())


_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_LINE = re.compile(r"^\s*([-*+]|\d+[.)])\s")


def _plain_blocks(body: str) -> Iterator[tuple[str, bool]]:
    return ((block, False) for block in re.split(r"\n\s*\n", normalize(body)))


def _md_blocks(body: str) -> Iterator[tuple[str, bool]]:
    """Markdown's blocks, each with whether it is code: a fenced code block whole (its lines,
    without the fences, which a page does not print), an indented one (not under a list)
    without its indent; the rest split at blank lines."""
    lines, rest, i = body.split("\n"), [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            rest.append(lines[i])
            i += 1
            continue
        yield from _indented(rest)
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence[1])),
            len(lines),
        )
        yield "\n".join(lines[i + 1 : end]), True
        rest, i = [], end + 1
    yield from _indented(rest)


def _indented(lines: list[str]) -> Iterator[tuple[str, bool]]:
    after_list = False
    for block in re.split(r"\n\s*\n", "\n".join(lines)):
        rows = [ln for ln in block.split("\n") if ln.strip()]
        indented = bool(rows) and all(ln.startswith("    ") for ln in rows)
        code = indented and not after_list  # indented under a list item: the item goes on
        yield (textwrap.dedent("\n".join(rows)), True) if code else (block, False)
        if rows:
            after_list = bool(_LIST_LINE.match(rows[0])) or (indented and after_list)


def _md_block(chunk: str, heading: object, code: bool, listy: bool) -> Block:
    if heading:
        return Block(chunk, heading=True)
    return Block(chunk, code=code, kind=ITEM if listy else "")


@dataclass(frozen=True)
class Block:
    """One block of a document as its reader found it: a heading, a paragraph or a code block.

    `page` is the 1-based page of paged formats (PDF), 0 otherwise. `kind` is what the block
    is (`verbatim.records.KINDS`: a list item, a table row ...; empty: prose, or code when
    `code`); `links` how many links it holds (HTML).
    """

    text: str
    heading: bool = False
    code: bool = False
    page: int = 0
    kind: str = ""
    links: int = 0

    @property
    def what(self) -> str:
        """The block's kind: `kind`, else code or prose."""
        return self.kind or (CODE if self.code else PROSE)


@dataclass(frozen=True)
class Blocks:
    """What a block reader (HTML, EPUB, PDF, DOCX) found: the blocks in order, the metadata,
    and the number of pages of a paged format (0 otherwise)."""

    blocks: list[Block]
    meta: dict
    n_pages: int = 0


@dataclass(frozen=True)
class Text:
    """A document's clean text, its sections, its metadata and, for a paged format, the offset
    where each page starts."""

    text: str
    sections: tuple[Section, ...]
    meta: dict
    pages: tuple[int, ...] = ()
    blocks: tuple[tuple[int, int, str], ...] = ()  # `Document.blocks`
    navigation: bool = False  # `Document.navigation`


def _clean_block(block: Block) -> str:
    text = normalize(block.text)
    if block.what == CODE:  # keep the lines and their indentation, drop blank lines around them
        return text.strip("\n")
    return re.sub(r"[ ]*\n[ ]*", "\n", re.sub(r" {2,}", " ", text)).strip()


def assemble(read: Blocks, role: str = "article") -> Text:
    """Clean text, sections and page starts from a reader's blocks, in order.

    Headings open sections and stay in the text, in no paragraph (never quoted). In a paged
    document a section also ends at each page break and goes on, under the same heading, on
    the next page, so that no passage spans two pages. `pages[i]` is the offset where page
    i + 1 starts; a page without text starts where the next text does.
    """
    parts: list[str] = []
    pos, page = 0, 0
    sections: list[Section] = []
    heading, sec_start = "", 0
    paragraphs: list[tuple[int, int]] = []
    pages: list[int] = []
    found: list[tuple[int, int, Block]] = []  # every paragraph, with the block it came from
    for block in read.blocks:
        chunk = _clean_block(block)
        if not chunk:
            continue
        start = pos + 2 if parts else 0
        if block.page > page:
            if paragraphs:
                sections.append(Section(sec_start, pos, heading, role, tuple(paragraphs)))
            paragraphs, sec_start = [], start
            pages += [start] * (block.page - page)
            page = block.page
        if block.heading:
            if paragraphs:
                sections.append(Section(sec_start, pos, heading, role, tuple(paragraphs)))
            heading, paragraphs, sec_start = chunk.replace("\n", " "), [], start
            chunk = heading
        else:
            paragraphs.append((start, start + len(chunk)))
        found.append((start, start + len(chunk), block))
        parts.append(chunk)
        pos = start + len(chunk)
    if paragraphs:
        sections.append(Section(sec_start, pos, heading, role, tuple(paragraphs)))
    pages += [pos] * (read.n_pages - page)
    text = "\n\n".join(parts)
    kinds = block_kinds(text, found)
    nav = is_navigation(found)
    return Text(text, tuple(sections), read.meta, tuple(pages), kinds, nav)


# What a lead-in introduces when it ends in ":": code, a list, a table or a definition list.
INTRODUCED = frozenset({CODE, ITEM, ROW, TERM})
# Words that end a paragraph which introduces whatever block follows it.
LEAD_IN_PHRASES = (
    "for example",
    "for instance",
    "such as",
    "here's how",
    "here is how",
    "as follows",
    "e.g",
    "the following",
)
# A navigation page (a contents page, a module index, a "see the list below" page) is one where
# at least NAV_SHARE of the text is in one-line entries that hold a link (at most
# NAV_ENTRY_CHARS: "timeit — Measure execution time of small code snippets"), and there are at
# least NAV_MIN_ENTRIES of them (a short "See also" list on a short page is not one).
NAV_SHARE = 0.6
NAV_ENTRY_CHARS = 160
NAV_MIN_ENTRIES = 8


def _introduces(paragraph: str, following: str) -> bool:
    """Whether `paragraph` introduces the block after it, whose kind is `following`."""
    tail = paragraph.rstrip()
    if tail.endswith(":") and following in INTRODUCED:
        return True
    if following == CODE and not tail.endswith((".", "!", "?", "…", ")", '"', "”")):
        return True  # a sentence that goes on in the code: "... by running" + the command
    return tail.rstrip(".,;:").lower().endswith(LEAD_IN_PHRASES)


def block_kinds(text: str, found: list[tuple[int, int, Block]]) -> tuple[tuple[int, int, str], ...]:
    """[start, end, kind] of the paragraphs that are not prose, in order (`found`: every
    block placed in `text`, headings too). A prose paragraph or list item that introduces the
    block right after it (`_introduces`) is a lead-in."""
    kinds = []
    for i, (start, end, block) in enumerate(found):
        if block.heading:
            continue
        kind = block.what
        after = found[i + 1][2] if i + 1 < len(found) else None
        if (
            kind in (PROSE, ITEM)
            and after is not None
            and not after.heading
            and _introduces(text[start:end], after.what)
        ):
            kind = LEAD_IN
        if kind != PROSE:
            kinds.append((start, end, kind))
    return tuple(kinds)


def is_navigation(found: list[tuple[int, int, Block]]) -> bool:
    """Whether the blocks make a contents, index or navigation page (see NAV_SHARE)."""
    sizes = [(end - start, b) for start, end, b in found if not b.heading]
    total = sum(size for size, _ in sizes)
    entries = [
        size
        for size, b in sizes
        if b.links and size <= NAV_ENTRY_CHARS and "\n" not in b.text.strip()
    ]
    return len(entries) >= NAV_MIN_ENTRIES and sum(entries) >= NAV_SHARE * max(total, 1)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value).strip() or None


def make_document(
    doc_id: str,
    source: str,
    text: str,
    sections: tuple[Section, ...],
    meta: dict,
    pages: tuple[int, ...] = (),
    structure: tuple[tuple[tuple[int, int, str], ...], bool] = ((), False),
) -> Document:
    """The document, `structure` being its block kinds and navigation flag (`Text`)."""
    known = {"title", "author", "date", "url", "site", "roles", "role", "id", "text"}
    return Document(
        id=doc_id,
        title=_text(meta.get("title")) or doc_id,
        text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        source=source,
        sections=sections,
        author=_text(meta.get("author")),
        date=_text(meta.get("date")),
        url=_text(meta.get("url")),
        site=_text(meta.get("site")),
        metadata={k: _text(v) for k, v in meta.items() if k not in known and _text(v)},
        pages=pages,
        blocks=structure[0],
        navigation=structure[1],
    )


def decode(raw: bytes) -> str:
    """Decode UTF-8 (with or without BOM); anything else is refused rather than guessed."""
    if b"\x00" in raw[:SNIFF_BYTES]:
        raise UnreadableFile("binary file (contains NUL bytes)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text (byte {exc.start}); convert it to UTF-8") from None


# The most a zip container (DOCX, EPUB) may unpack to. zipfile never reads past a member's
# declared size, so checking the declared sizes is enough to refuse a zip bomb.
MAX_UNZIPPED = 512 * 2**20


def open_zip(raw: bytes, kind: str):
    """A DOCX's or EPUB's zip container, refused when broken or when it would unpack to more
    than `MAX_UNZIPPED` bytes."""
    import io
    import zipfile

    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        unpacked = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnreadableFile(
            f"not a valid {kind} (not a readable zip file: {exc}); open it and save it again"
        ) from None
    if unpacked > MAX_UNZIPPED:
        raise UnreadableFile(
            f"unpacks to {unpacked:,} bytes, over {MAX_UNZIPPED:,} (a zip bomb?); not read"
        )
    return zf


def read_member(zf, name: str) -> bytes:
    """One file of a zip container; KeyError if it is missing, UnreadableFile if damaged."""
    import zipfile
    import zlib

    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise UnreadableFile(f"damaged zip member {name} ({exc}); save the file again") from None


def read_markdown(raw: bytes) -> Text:
    import frontmatter

    try:
        post = frontmatter.loads(decode(raw))
    except UnreadableFile:
        raise
    except Exception as exc:  # yaml errors come in many classes
        raise UnreadableFile(f"front matter is not valid YAML: {exc}") from None
    meta = dict(post.metadata)
    given = meta.get("roles")
    roles = given if isinstance(given, dict) else {}
    found = build_text(
        post.content, markdown=True, roles=roles, role=str(meta.get("role", "article"))
    )
    return Text(found.text, found.sections, meta, blocks=found.blocks)


def read_text(raw: bytes) -> Text:
    body = normalize(decode(raw)).strip()
    meta: dict = {}
    first, _, rest = body.partition("\n")
    if (
        rest.strip()
        and len(first) <= TITLE_CHARS
        and not first.rstrip().endswith((".", ",", ";", ":"))
    ):
        meta["title"] = first.strip()
        body = rest
    found = build_text(body, markdown=False)
    return Text(found.text, found.sections, meta)


def read_jsonl(raw: bytes, source: str) -> list[Document]:
    """One document per line: `{"id", "title", "text", "author"?, "url"?, "metadata"?}`."""
    docs = []
    for lineno, line in enumerate(decode(raw).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc_id = printable(str(row["id"] if "id" in row else row["_id"]))  # "_id": BEIR
            body = str(row["text"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UnreadableFile(f"line {lineno} is not a corpus record ({exc})") from None
        meta = {k: v for k, v in row.items() if k not in ("metadata", "text", "_id")}
        if isinstance(row.get("metadata"), dict):
            meta = {**row["metadata"], **meta}
        found = build_text(body, markdown=False)
        if found.text:
            source_line = f"{source}#{lineno}"
            docs.append(make_document(doc_id, source_line, found.text, found.sections, meta))
    return docs


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file. Anything else (a FIFO, a device, a socket, a link put in
    its place since the folder was listed) is refused without blocking on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO or socket with no writer
            raise UnreadableFile("not a regular file; not opened") from None
        raise
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFile("not a regular file; not read")
        return file.read()


def _reader(fmt: Format) -> Callable[..., Any]:
    """The function that parses `fmt`, imported when first needed."""
    module, _, name = fmt.reader.rpartition(".")
    return getattr(importlib.import_module(f"verbatim.ingest.{module}"), name)


def read_file(path: Path, doc_id: str, raw: bytes) -> list[Document]:
    """Documents in one file (a `.jsonl` may hold many)."""
    fmt = FORMATS[path.suffix.lower()]
    read = _reader(fmt)
    source = printable(str(path))
    if fmt.shape == "rows":
        return read(raw, source)
    found: Text = assemble(read(raw)) if fmt.shape == "blocks" else read(raw)
    if not found.text.strip() or not found.sections:
        raise UnreadableFile("no text to index")
    meta = found.meta
    if not _text(meta.get("title")):
        meta["title"] = printable(path.stem).replace("-", " ").replace("_", " ").strip()
    structure = (found.blocks, found.navigation)
    return [make_document(doc_id, source, found.text, found.sections, meta, found.pages, structure)]
