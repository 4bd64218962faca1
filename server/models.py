"""What the JSON API accepts and returns, as pydantic models (and so the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from verbatim.records import Filters as FilterRecord
from verbatim.settings import MAX_K

JSON = "application/json"
EXAMPLE = "What if my husband refuses couples therapy?"
NOT_BLANK = r"[^\s\x00-\x1f\x7f-\x9f]"  # one character that is neither space nor control


def _whole(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so do we (but not "2" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


QuoteCount = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_whole)]


COLLECTION = Field(
    default=None,
    description="The collection to answer from (GET /api/collections); default: default.",
    examples=["default"],
)


class Filters(BaseModel):
    """Restrict the answer to some documents: each filter given narrows, all together hold."""

    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[str] | None = Field(
        default=None, description="Document ids to search (all must exist)."
    )
    author: str | None = Field(default=None, description="The author, whole, ignoring case.")
    site: str | None = Field(default=None, description="The site, whole, ignoring case.")
    date_from: str | None = Field(
        default=None,
        description="Documents dated on or after this ISO 8601 date (YYYY-MM-DD); "
        "undated documents are left out.",
        examples=["2024-01-01"],
        json_schema_extra={"format": "date"},
    )
    date_to: str | None = Field(
        default=None,
        description="Documents dated on or before this ISO 8601 date (YYYY-MM-DD); "
        "undated documents are left out.",
        examples=["2024-12-31"],
        json_schema_extra={"format": "date"},
    )
    path: str | None = Field(
        default=None, description="A prefix of the document id or of its source path."
    )

    def record(self) -> FilterRecord | None:
        """The filters as the library takes them; None when none is set."""
        found = FilterRecord(
            documents=tuple(self.documents or ()),
            author=self.author,
            site=self.site,
            date_from=self.date_from,
            date_to=self.date_to,
            path=self.path,
        )
        return found or None


class AskRequest(BaseModel):
    """A question, and how many quotes to return."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str  # limited per server: see `ask_request`
    k: QuoteCount | None = Field(default=None, description=f"Quotes to return (1-{MAX_K}).")
    filters: Filters | None = None
    collection: str | None = COLLECTION


ISO_DATE: dict[str, Any] = {"examples": ["2024-03-01"], "json_schema_extra": {"format": "date"}}


def filter_query(
    documents: Annotated[
        list[str] | None, Query(description="A document id to search (repeatable).")
    ] = None,
    author: Annotated[str | None, Query(description="The author, whole, ignoring case.")] = None,
    site: Annotated[str | None, Query(description="The site, whole, ignoring case.")] = None,
    date_from: Annotated[str | None, Query(description="Dated on or after.", **ISO_DATE)] = None,
    date_to: Annotated[str | None, Query(description="Dated on or before.", **ISO_DATE)] = None,
    path: Annotated[str | None, Query(description="A prefix of the id or source path.")] = None,
) -> FilterRecord | None:
    """The filters of a GET request (the API's and the form's), by the names POST uses in
    `filters`; an empty value (a form's blank field) is no filter."""
    found = FilterRecord(
        documents=tuple(d for d in documents or () if d),
        author=author or None,
        site=site or None,
        date_from=date_from or None,
        date_to=date_to or None,
        path=path or None,
    )
    return found or None


CollectionQuery = Annotated[
    str | None,
    Query(description="The collection (GET /api/collections); default: default."),
]


def ask_request(max_question_chars: int) -> type[AskRequest]:
    """`AskRequest` for a server taking questions of up to `max_question_chars` characters
    (`Settings.max_question_chars`): longer ones are refused, and the schema says so."""
    question = Field(
        description=f"The question, 1 to {max_question_chars:,} characters, not only white space.",
        examples=[EXAMPLE],
        min_length=1,
        max_length=max_question_chars,
        pattern=NOT_BLANK,
    )
    return create_model(
        "AskRequest", __base__=AskRequest, __doc__=AskRequest.__doc__, question=(str, question)
    )


class ErrorBody(BaseModel):
    code: str
    message: str
    status: int


class ErrorResponse(BaseModel):
    error: ErrorBody


# The error statuses documented on the endpoints that can answer them.
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (403, 404, 413, 415, 422, 503)
}


class DocumentSummary(BaseModel):
    id: str
    title: str
    author: str | None
    date: str | None
    url: str | None
    site: str | None


class DocumentPage(BaseModel):
    total: int
    offset: int
    limit: int
    documents: list[DocumentSummary]


class DocumentOut(DocumentSummary):
    content_hash: str
    text: str
    metadata: dict[str, Any]
    sections: list[dict[str, Any]]


class Collection(BaseModel):
    name: str
    documents: int
    passages: int
    generation: str


class CollectionList(BaseModel):
    collections: list[Collection]


class WatchStatus(BaseModel):
    """A collection's live folders (`verbatim watch`, `serve --watch`), as its watcher last
    wrote them: `active` whether that watcher still runs, `last_update` when it last published
    (epoch seconds), `paused` why updates wait (a missing folder), `error` why the last
    update failed, the files the last update skipped with the reasons, and `merging` whether
    a merge of the served delta into one generation is being written."""

    folders: list[str]
    active: bool
    last_update: float | None = None
    last_batch: str | None = None
    pending: int = 0
    paused: str | None = None
    error: str | None = None
    skipped: list[dict[str, str]] = []
    merging: bool = False


class Health(BaseModel):
    """The default collection's index (or the first, without one), and every collection."""

    status: str
    store: str  # where the index is served from: "local" or "qdrant"
    generation: str
    model: str
    documents: int
    passages: int
    sentences: int
    thresholds: dict[str, float] | None
    uptime_s: float
    collections: list[Collection]
    watching: dict[str, WatchStatus] = {}  # by collection: those a watcher ever kept in step
