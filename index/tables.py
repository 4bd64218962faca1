"""A generation's SQLite file (store.sqlite): documents with their text, passages and
sentences, by row; the same row order as the vector files'."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from verbatim.records import Document, DocumentMeta, Passage, Section

SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, author TEXT, date TEXT, url TEXT, site TEXT,
    source TEXT NOT NULL, content_hash TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT NOT NULL
);
CREATE TABLE passages (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL REFERENCES documents,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, heading TEXT NOT NULL, role TEXT NOT NULL,
    sent_lo INTEGER NOT NULL, sent_hi INTEGER NOT NULL
);
CREATE TABLE sentences (
    row INTEGER PRIMARY KEY, passage_row INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL
);
CREATE INDEX passages_doc ON passages(doc_id);
"""


def write_rows(path: Path, documents: list[Document], passages: list[Passage]) -> None:
    """Create the generation's SQLite file: documents with their text, passages, sentences.

    Passage rows number `passages` in order and sentence rows run on across them, the same
    order as the vector files' rows.
    """
    writer = RowWriter(path)
    try:
        writer.add(documents, passages)
    finally:
        writer.close()


class RowWriter:
    """The generation's SQLite file written a batch at a time (`add`: one transaction each),
    passage and sentence rows running on across batches. Opened on a file that holds more
    rows than `documents`, `passages` and `sentences` (a build killed after a batch it had not
    recorded yet), it deletes the rows past them first."""

    def __init__(self, path: Path, documents: int = 0, passages: int = 0, sentences: int = 0):
        fresh = not path.exists()
        self.db = sqlite3.connect(path)
        self.documents, self.passages, self.sentences = documents, passages, sentences
        if fresh:
            self.db.executescript(SCHEMA)
            return
        with self.db:  # documents have no row column: their rowid counts them in order
            self.db.execute("DELETE FROM documents WHERE rowid > ?", (documents,))
            self.db.execute("DELETE FROM passages WHERE row >= ?", (passages,))
            self.db.execute("DELETE FROM sentences WHERE row >= ?", (sentences,))

    def add(self, documents: list[Document], passages: list[Passage]) -> None:
        """Write `documents` and `passages` (the next passage rows) in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?,?)", map(_document_row, documents)
            )
            self.db.executemany(
                "INSERT INTO passages VALUES (?,?,?,?,?,?,?,?,?)",
                _passage_rows(passages, self.passages, self.sentences),
            )
            self.db.executemany(
                "INSERT INTO sentences VALUES (?,?,?,?)",
                _sentence_rows(passages, self.passages, self.sentences),
            )
        self.documents += len(documents)
        self.passages += len(passages)
        self.sentences += sum(len(p.sentences) for p in passages)

    def close(self) -> None:
        self.db.close()


def documents_by_id(db: sqlite3.Connection, chars: int) -> Iterator[tuple[str, str, str, str]]:
    """(id, title, the first `chars` characters of the text, content_hash) of every document,
    by id; with `describe_documents`' fields, the same order `read_documents` gives."""
    return db.execute(
        "SELECT id, title, substr(text, 1, ?), content_hash FROM documents ORDER BY id", (chars,)
    )


def describe_documents(db: sqlite3.Connection) -> Iterator[tuple]:
    """(id, content_hash, title, author, url) of every document, by id."""
    return db.execute("SELECT id, content_hash, title, author, url FROM documents ORDER BY id")


def _document_row(d: Document) -> tuple:
    # Pages go first, where `DocumentMeta.pages` reads them without parsing the rest; a
    # document without pages stores no key, as before pages existed.
    pages = {"pages": list(d.pages)} if d.pages else {}
    # Block kinds only where a reader found some, and the navigation flag last, where
    # `DocumentMeta.navigation` reads it without parsing; an index written before either
    # existed reads as all prose, no navigation.
    kinds = {"blocks": [list(b) for b in d.blocks]} if d.blocks else {}
    navigation = {"navigation": True} if d.navigation else {}
    extra = {
        **pages,
        "metadata": d.metadata,
        "sections": [asdict(s) for s in d.sections],
        **kinds,
        **navigation,
    }
    return (
        *(d.id, d.title, d.author, d.date, d.url, d.site, d.source, d.content_hash),
        json.dumps(extra),
        d.text,
    )


def _passage_rows(passages: list[Passage], row: int, first: int) -> Iterator[tuple]:
    """Rows of `passages` numbered from `row`, their sentences' from `first`."""
    for at, p in enumerate(passages, row):
        last = first + len(p.sentences)
        yield at, p.id, p.doc_id, p.start, p.end, p.heading, p.role, first, last
        first = last


def _sentence_rows(
    passages: list[Passage], row: int, at: int
) -> Iterator[tuple[int, int, int, int]]:
    for passage_row, p in enumerate(passages, row):
        for s in p.sentences:
            yield at, passage_row, s.start, s.end
            at += 1


def open_db(path: Path) -> sqlite3.Connection:
    """A generation's SQLite file, read-only, shareable between threads."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)


class StoredPassage(NamedTuple):
    """A passage's row of the passages table."""

    id: str
    doc_id: str
    heading: str
    role: str
    start: int  # [start, end) in its document's text
    end: int
    sent_lo: int  # its sentence rows [sent_lo, sent_hi)
    sent_hi: int


def read_passages(db: sqlite3.Connection) -> Iterator[StoredPassage]:
    """Each passage, by row."""
    rows = db.execute(
        'SELECT id, doc_id, heading, role, start, "end", sent_lo, sent_hi FROM passages '
        "ORDER BY row"
    )
    return map(StoredPassage._make, rows)


def read_sentence_column(db: sqlite3.Connection, column: str) -> Iterator[int]:
    """One column of the sentences table (`start` or `end`), by row."""
    if column not in ("start", "end"):
        raise ValueError(column)
    return (r[0] for r in db.execute(f'SELECT "{column}" FROM sentences ORDER BY row'))  # noqa: S608


def read_documents(db: sqlite3.Connection) -> dict[str, DocumentMeta]:
    """Every document without its text, by id."""
    query = (
        "SELECT id, title, author, date, url, site, source, content_hash, metadata "
        "FROM documents ORDER BY id"
    )
    return {row[0]: DocumentMeta._make(row) for row in db.execute(query)}


def read_text(db: sqlite3.Connection, doc_id: str) -> str:
    row = db.execute("SELECT text FROM documents WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        raise KeyError(doc_id)
    return row[0]


def document(meta: DocumentMeta, text: str) -> Document:
    """The whole document: its stored metadata and sections, with its text."""
    extra = json.loads(meta.extra)
    sections = tuple(
        Section(s["start"], s["end"], s["heading"], s["role"], tuple(map(tuple, s["paragraphs"])))
        for s in extra["sections"]
    )
    return Document(
        id=meta.id,
        title=meta.title,
        text=text,
        content_hash=meta.content_hash,
        source=meta.source,
        sections=sections,
        author=meta.author,
        date=meta.date,
        url=meta.url,
        site=meta.site,
        metadata=extra["metadata"],
        pages=tuple(extra.get("pages", ())),
        blocks=tuple((int(a), int(b), str(k)) for a, b, k in extra.get("blocks", ())),
        navigation=bool(extra.get("navigation", False)),
    )
