"""Plain records passed between the stages: ingest -> index -> answer."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int


@dataclass(frozen=True)
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
class Skipped:
    """A file ingest could not use, and why."""

    path: str
    reason: str


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
