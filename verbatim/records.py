"""Plain records passed between the stages (ingest -> index -> answer), and the one interface
they meet: `Embedder`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple, Protocol

from verbatim.settings import DEFAULT_COLLECTION

if TYPE_CHECKING:
    import numpy as np


# The kinds of block a reader tells apart. A document stores the spans of the blocks that are
# not plain prose (`Document.blocks`); a paragraph not listed there is prose.
PROSE = "prose"
CODE = "code"  # a code block or program output (HTML <pre>, DOCX code style): lines kept
ITEM = "item"  # a list item
ROW = "row"  # a table row (its cells between spaces)
TERM = "term"  # a definition list's term (<dt>)
DEFINITION = "definition"  # and its description (<dd>)
LEAD_IN = "lead-in"  # a paragraph that introduces the block after it ("Example ...:")
KINDS = (PROSE, CODE, ITEM, ROW, TERM, DEFINITION, LEAD_IN)


@dataclass(frozen=True)
class Section:
    """A run of a document under one heading, spoken by one voice (`role`)."""

    start: int
    end: int
    heading: str
    role: str
    paragraphs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Document:
    """One source document. Every offset in Verbatim points into `text`, its clean text."""

    id: str
    title: str
    text: str
    content_hash: str
    source: str
    sections: tuple[Section, ...]
    author: str | None = None
    date: str | None = None
    url: str | None = None
    site: str | None = None
    metadata: dict = field(default_factory=dict)
    pages: tuple[int, ...] = ()  # paged formats (PDF): the offset in `text` where each page starts
    # [start, end, kind] of every paragraph that is not prose (see KINDS), in order.
    blocks: tuple[tuple[int, int, str], ...] = ()
    navigation: bool = False  # a contents, index or navigation page (`ingest.read.is_navigation`)


def web_url(url: str | None) -> str | None:
    """`url` if a reader's browser may open it as a source link (http or https), else None."""
    return url if url and url.lower().startswith(("http://", "https://")) else None


PAGES_PREFIX = '{"pages": ['  # how `DocumentMeta.extra` starts when the document has pages


class DocumentMeta(NamedTuple):
    """A document without its text: what a loaded index keeps in memory for every document.

    A NamedTuple, so a million of them cost no more than the rows they were read from.
    """

    id: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None
    source: str
    content_hash: str
    extra: str  # JSON {"metadata": {...}, "sections": [...]}, parsed only when asked for

    def metadata(self) -> dict:
        return json.loads(self.extra)["metadata"]

    def pages(self) -> tuple[int, ...]:
        """Where each page starts in the text (PDF), or () for a document without pages.

        The store writes the pages first in `extra`, so they are read without parsing the
        sections, which for a long document are most of it.
        """
        if not self.extra.startswith(PAGES_PREFIX):
            return ()
        listed = self.extra[len(PAGES_PREFIX) : self.extra.index("]")]
        return tuple(int(x) for x in listed.split(",") if x.strip())

    def navigation(self) -> bool:
        """Whether the document is a contents, index or navigation page. The store writes the
        flag last in `extra`, so it is read without parsing the rest."""
        return self.extra.endswith(NAVIGATION_SUFFIX)

    def blocks(self) -> tuple[tuple[int, int, str], ...]:
        """[start, end, kind] of the document's paragraphs that are not prose (see KINDS); ()
        for an index written before kinds were stored, whose paragraphs all read as prose."""
        return _blocks(self.extra)


NAVIGATION_SUFFIX = '"navigation": true}'  # how `DocumentMeta.extra` ends for a navigation page


@lru_cache(maxsize=256)
def _blocks(extra: str) -> tuple[tuple[int, int, str], ...]:
    # Cached: quoting asks for the same documents' blocks question after question, and a str
    # keeps its hash, so a hit costs no parsing.
    return tuple((int(a), int(b), str(k)) for a, b, k in json.loads(extra).get("blocks", ()))


# Slotted: an ingest holds every passage and sentence at once (8 million sentences at a million
# passages), and a sentence without a `__dict__` takes 120 bytes instead of 160.
@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Passage:
    """A bounded run of paragraphs inside one section, with its sentences."""

    id: str
    doc_id: str
    start: int
    end: int
    text: str
    heading: str
    role: str
    sentences: tuple[Sentence, ...]


@dataclass(frozen=True)
class Filters:
    """Which documents may answer a question. Each field given narrows; together they all hold.

    `author` and `site` match whole values, ignoring case. `date_from` and `date_to` are ISO
    8601 dates, inclusive, on the document's date: when either is set, undated documents are
    out. `path` is a prefix of the document id or of its source path.
    """

    documents: tuple[str, ...] = ()
    author: str | None = None
    site: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    path: str | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class Skipped:
    """A file ingest could not use, and why."""

    path: str
    reason: str


@dataclass
class Corpus:
    """What ingest read: the documents, their passages in order, and the files it skipped."""

    documents: list[Document]
    passages: list[Passage]
    skipped: list[Skipped]
    formats: dict[str, int] = field(default_factory=dict)  # files read per format ("pdf": 3)
    read_seconds: float = 0.0

    def stream(self) -> CorpusStream:
        """This corpus as a stream, passages in their order here (a document whose passages
        are not all together comes again, `first` False), documents without passages last."""
        return CorpusStream(self._items(), "", self.skipped, self.formats, self.read_seconds)

    def _items(self) -> Iterator[DocumentPassages]:
        docs = {d.id: d for d in self.documents}
        given: set[str] = set()
        run: list[Passage] = []
        for p in self.passages:
            if run and p.doc_id != run[0].doc_id:
                yield DocumentPassages(docs[run[0].doc_id], run, run[0].doc_id not in given)
                given.add(run[0].doc_id)
                run = []
            run.append(p)
        if run:
            yield DocumentPassages(docs[run[0].doc_id], run, run[0].doc_id not in given)
            given.add(run[0].doc_id)
        for d in self.documents:
            if d.id not in given:
                yield DocumentPassages(d, [], True)


class DocumentPassages(NamedTuple):
    """A document and (some of) its passages, as a stream of a corpus gives them."""

    document: Document
    passages: list[Passage]
    first: bool = True  # False when the document was given before (with earlier passages)


@dataclass
class CorpusStream:
    """A corpus read as it is indexed: `items` gives each document with its passages, once, in
    order, so that nothing holds the whole corpus. `skipped`, `formats` and `read_seconds` are
    complete once `items` is exhausted. `key` names what is read (the files and their
    fingerprints): an ingest killed and started again with the same key goes on from what it
    wrote ("": one that is never resumed)."""

    items: Iterator[DocumentPassages]
    key: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    read_seconds: float = 0.0


@dataclass
class Quote:
    """A verbatim quote: `text == document.text[start:end]`."""

    text: str
    doc_id: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None
    section: str
    role: str
    passage_id: str
    passage_start: int
    passage_end: int
    start: int
    end: int
    content_hash: str
    score: float
    link: str | None
    also_in: list[str] = field(default_factory=list)
    page: int | None = None  # 1-based page of the quote's start, for paged documents (PDF)
    # What the quote is (see KINDS): "code" for a code block; for a lead-in quoted with what
    # it introduces, the kind of that block, which starts `lead_in` characters into `text`.
    kind: str = PROSE
    lead_in: int = 0
    collection: str = DEFAULT_COLLECTION  # the collection the document is in


@dataclass
class Answer:
    question: str
    quotes: list[Quote]
    abstained: bool
    reason: str | None
    near_misses: list[Quote]
    threshold: float
    timing_ms: float
    generation: str
    collection: str = DEFAULT_COLLECTION  # the collection that answered


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row a text (cosine = inner product).

    The real model is `verbatim.index.ModelEmbedder`; tests pass deterministic fakes.
    """

    @property
    def dim(self) -> int: ...

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray: ...
