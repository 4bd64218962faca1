"""What the JSON API accepts and returns, as pydantic models (and so the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from verbatim.settings import MAX_K

JSON = "application/json"
EXAMPLE = "What if my husband refuses couples therapy?"
NOT_BLANK = r"[^\s\x00-\x1f\x7f-\x9f]"  # one character that is neither space nor control


def _whole(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer; so do we (but not "2" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


QuoteCount = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_whole)]


class Filters(BaseModel):
    """Restrict the answer to some documents."""

    model_config = ConfigDict(extra="forbid", strict=True)

    documents: list[str] | None = Field(default=None, description="Document ids to search.")
    author: str | None = None
    site: str | None = None


class AskRequest(BaseModel):
    """A question, and how many quotes to return."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str  # limited per server: see `ask_request`
    k: QuoteCount | None = Field(default=None, description=f"Quotes to return (1-{MAX_K}).")
    filters: Filters | None = None


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


class Health(BaseModel):
    status: str
    generation: str
    model: str
    documents: int
    passages: int
    sentences: int
    thresholds: dict[str, float] | None
    uptime_s: float
