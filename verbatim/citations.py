"""Citations that survive re-ingest: check a quote (document, offsets, content hash, text)
against an index generation, and re-check the stored feedback citations after each ingest.

A citation is
- `current`: the same text at the same offsets;
- `moved`: the text found elsewhere in the document (the occurrence nearest the old offsets);
  the new offsets slice to it;
- `changed`: the document is there, the text is not;
- `gone`: no such document.

White space counts only as white space: text that differs from the cited one only in where
and how much white space it has (a line re-flowed, a double space) is the same text.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

from verbatim.answer import text_fragment_link
from verbatim.errors import VerbatimError
from verbatim.feedback import Feedback, FeedbackStore, Recheck
from verbatim.index import Store, generations, tables
from verbatim.settings import DEFAULT_COLLECTION, collection_name

FOUND = ("current", "moved")
BROKEN = ("changed", "gone")


@dataclass(frozen=True)
class Citation:
    """A quote as cited: `text` was `document.text[start:end]` when it was quoted."""

    doc_id: str
    start: int
    end: int
    text: str
    content_hash: str = ""
    collection: str = DEFAULT_COLLECTION


@dataclass(frozen=True)
class Verification:
    """Where a citation stands in a generation. `start`, `end` and `text` (the exact text there
    now) are set when it was found (current, moved); `link` too when the document has a web
    URL; `content_hash` is the document's hash now, None when it is gone."""

    status: str
    generation: str
    content_hash: str | None
    start: int | None = None
    end: int | None = None
    text: str | None = None
    link: str | None = None


class StoredText(NamedTuple):
    """What a citation check reads of a document."""

    text: str  # the clean text every offset points into
    content_hash: str
    url: str | None


class Texts(Protocol):
    """The documents of one generation, as a citation check reads them."""

    generation: str

    def lookup(self, doc_id: str) -> StoredText | None:
        """The document `doc_id`, or None when it has no such document."""
        ...


class IndexTexts:
    """A loaded generation's documents, from either store."""

    def __init__(self, index: Store) -> None:
        self.index = index
        self.generation = index.generation

    def lookup(self, doc_id: str) -> StoredText | None:
        meta = self.index.documents.get(doc_id)
        if meta is None:
            return None
        return StoredText(self.index.text(doc_id), meta.content_hash, meta.url)


class StoredTexts:
    """A generation's documents read from its `store.sqlite` alone (for a delta, and from its
    base's those it does not mask): a re-check after ingest needs no search files, vectors or
    model."""

    def __init__(self, path: Path) -> None:
        self.generation = path.name
        self._dbs = [tables.open_db(path / "store.sqlite")]
        self._masked: frozenset[str] = frozenset()
        delta = generations.delta_of(path)
        if delta is not None:
            self._dbs.append(tables.open_db(path.parent / delta.base / "store.sqlite"))
            self._masked = delta.masked
        self._last: tuple[str, StoredText | None] | None = None  # the document read last

    def lookup(self, doc_id: str) -> StoredText | None:
        if self._last is None or self._last[0] != doc_id:  # citations come sorted by document
            text = self._text(doc_id)
            # Ingest's content hash (ingest/read.py): the clean text's SHA-256.
            found = None
            if text is not None:
                found = StoredText(text, hashlib.sha256(text.encode()).hexdigest(), None)
            self._last = (doc_id, found)
        return self._last[1]

    def _text(self, doc_id: str) -> str | None:
        for at, db in enumerate(self._dbs):
            if at and doc_id in self._masked:
                return None  # replaced or removed by the delta
            try:
                return tables.read_text(db, doc_id)
            except KeyError:
                continue
        return None

    def close(self) -> None:
        for db in self._dbs:
            db.close()


def _pattern(text: str) -> re.Pattern[str] | None:
    """The cited text with any run of white space matching any other (None if it is blank)."""
    words = text.split()
    return re.compile(r"\s+".join(map(re.escape, words))) if words else None


def locate(text: str, citation: Citation) -> tuple[int, int] | None:
    """The cited text's offsets in `text`: the cited ones if it is still there, else those of
    the occurrence nearest to them, else None."""
    pattern = _pattern(citation.text)
    if pattern is None:
        return None
    if 0 <= citation.start <= citation.end <= len(text) and pattern.fullmatch(
        text, citation.start, citation.end
    ):
        return citation.start, citation.end
    spans = [m.span() for m in pattern.finditer(text)]
    if not spans:
        return None
    return min(spans, key=lambda s: (abs(s[0] - citation.start), s[0]))


def verify(texts: Texts, citation: Citation) -> Verification:
    """Where `citation` stands in the generation `texts` reads."""
    found = texts.lookup(citation.doc_id)
    if found is None:
        return Verification("gone", texts.generation, None)
    span = locate(found.text, citation)
    if span is None:
        return Verification("changed", texts.generation, found.content_hash)
    start, end = span
    status = "current" if span == (citation.start, citation.end) else "moved"
    now = found.text[start:end]
    link = text_fragment_link(found.url, now)
    return Verification(status, texts.generation, found.content_hash, start, end, now, link)


def verify_in(index: Store, citations: list[Citation]) -> list[Verification]:
    """Each citation checked against a loaded index."""
    texts = IndexTexts(index)
    return [verify(texts, c) for c in citations]


def parse(row: object) -> Citation:
    """A citation from a JSON object: `doc_id`, `start`, `end`, `text`, and optionally
    `content_hash` and `collection`; other fields (a whole quote from /api/ask) are ignored.

    Raises:
        ValueError: naming the field that is missing or wrong.
        InvalidCollectionName: the collection is not a collection name.
    """
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    for name in ("doc_id", "text"):
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise ValueError(f"{name}: a non-empty string is required")
    for name in ("start", "end"):
        value = row.get(name)
        if isinstance(value, float) and value.is_integer():  # JSON Schema's integers
            row = {**row, name: (value := int(value))}
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: an integer of at least 0 is required")
    content_hash = row.get("content_hash", "")
    if not isinstance(content_hash, str):
        raise ValueError("content_hash: must be a string")
    collection = row.get("collection")
    if collection is not None and not isinstance(collection, str):
        raise ValueError("collection: must be a string")
    return Citation(
        row["doc_id"], row["start"], row["end"], row["text"], content_hash,
        collection_name(collection or DEFAULT_COLLECTION),
    )  # fmt: skip


def read_citations(path: Path) -> list[Citation]:
    """Citations from a JSONL file, one object a line (blank lines skipped).

    Raises:
        VerbatimError: naming the line that is not a citation, and why.
    """
    citations = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            citations.append(parse(json.loads(line)))
        except ValueError as exc:
            raise VerbatimError(f"{path}:{lineno} is not a citation ({exc})") from None
        except VerbatimError as exc:
            raise VerbatimError(f"{path}:{lineno}: {exc.message}") from None
    return citations


def _recheck(texts: Texts, row: Feedback) -> Recheck:
    citation = Citation(row.doc_id, row.start, row.end, row.text, row.content_hash)
    v = verify(texts, citation)
    if v.status in BROKEN or v.start is None or v.end is None or v.text is None:
        return Recheck(row.id, v.status, row.start, row.end, row.content_hash, row.text)
    return Recheck(row.id, v.status, v.start, v.end, v.content_hash or "", v.text)


def recheck(
    data_dir: Path, generation: str, collection: str = DEFAULT_COLLECTION
) -> dict[str, int] | None:
    """Verify every stored feedback citation of `collection` against `generation` (of
    `data_dir`): moved ones are updated in place, changed and gone ones kept and marked.

    Returns:
        The counts by status, or None when no feedback was ever stored there.
    """
    feedback = FeedbackStore(data_dir)
    rows = sorted(feedback.rows(collection), key=lambda r: r.doc_id)
    if not rows:
        return None
    texts = StoredTexts(
        generations.generations_dir(generations.collection_dir(data_dir, collection)) / generation
    )
    try:
        results = [_recheck(texts, r) for r in rows]
    finally:
        texts.close()
    return feedback.record_check(generation, collection, results)
