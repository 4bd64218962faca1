"""One settings object, read from `VERBATIM_*` environment variables and passed explicitly."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from verbatim.errors import InvalidCollectionName

MAX_K = 20  # the most quotes one answer may ask for (CLI, API and form)
DEFAULT_COLLECTION = "default"
COLLECTION_RULE = "[a-z0-9][a-z0-9_-]{0,63}"


def collection_name(name: str) -> str:
    """`name`, if it is a valid collection name.

    Raises:
        InvalidCollectionName: it is not; the message gives the rule.
    """
    if not isinstance(name, str) or not re.fullmatch(COLLECTION_RULE, name):
        raise InvalidCollectionName(
            f"invalid collection name {name!r}: a name is 1 to 64 lower-case letters, digits, "
            f"'-' or '_', starting with a letter or digit ({COLLECTION_RULE})"
        )
    return name


def bundled_corpus() -> Path:
    """The default corpus: package data in an installed Verbatim (`verbatim/corpus/`), the
    top-level `corpus/` folder in a source checkout (an editable install maps no data folder)."""
    package = Path(__file__).resolve().parent
    installed = package / "corpus"
    return installed if installed.is_dir() else package.parent / "corpus"


class Settings(BaseSettings):
    """Everything Verbatim can be told. Each field is also `VERBATIM_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VERBATIM_", frozen=True)

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("verbatim")),
        description="Where indexes, feedback and the exported model live; never inside the "
        "source tree (`--data-dir` overrides it).",
        json_schema_extra={"shown_default": "user data dir (`~/.local/share/verbatim` on Linux)"},
    )
    corpus_dir: Path = Field(
        default_factory=bundled_corpus,
        description="What `verbatim ingest` without paths, and `serve` on first run, index.",
        json_schema_extra={"shown_default": "the bundled corpus"},
    )
    collection: str = Field(
        default=DEFAULT_COLLECTION,
        description="The collection (document set) that `ingest` writes and `ask` reads (same as "
        "`--collection`); `serve` serves them all.",
    )
    model: str = Field(
        default="all-MiniLM-L6-v2",
        description="Sentence-transformers model: a local folder, or all-MiniLM-L6-v2 (bundled).",
    )
    backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        default="onnx",
        description="How the model runs: `onnx` (same vectors as torch, without importing it), "
        "`onnx-int8` (int8 weights, faster, slightly different vectors; needs a re-ingest) or "
        "`torch`.",
    )
    batch_size: int = Field(default=64, ge=1, description="Texts per embedding batch at ingest.")
    passage_chars: int = Field(
        default=900,
        ge=200,
        description="Longest passage, in characters (at least 200); applies at the next ingest.",
    )
    calibration_probes: int = Field(
        default=300,
        ge=10,
        description="Corpus sentences asked at ingest to set the abstention threshold "
        "(at least 10).",
    )
    max_file_bytes: int = Field(default=20_000_000, ge=1, description="Larger files are skipped.")
    read_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        ge=1,
        description="Processes reading files at ingest.",
        json_schema_extra={"shown_default": "CPU cores"},
    )
    read_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A file (PDF, DOCX, EPUB, or any file of a large folder) still being read "
        "after this many seconds is skipped.",
    )
    read_memory_mb: int = Field(
        default=2048,
        ge=256,
        description="Memory a reading process may use (at least 256); a file needing more is "
        "skipped.",
    )
    max_question_chars: int = Field(
        default=10_000,
        ge=1,
        description="Longer questions are refused (422 over HTTP). The model reads about 190 "
        "words: a longer question is embedded in pieces, every word counting.",
    )
    default_k: int = Field(
        default=5, ge=1, le=MAX_K, description="Quotes returned when `k` is not given (1 to 20)."
    )
    min_score: float | None = Field(
        default=None,
        description="Abstain when the question's blended similarity to its best passage and best "
        "sentence is below this; unset uses the index's calibrated value.",
    )
    examples: list[str] = Field(
        default_factory=list,
        description="Example questions on the web form, as a JSON list; unset: an example and "
        "the document titles that are questions.",
        json_schema_extra={"shown_default": "unset"},
    )
    admin_token: str | None = Field(
        default=None,
        description="Enables `POST /api/admin/reload` and `GET /api/feedback` with this bearer "
        "token (unset, both are disabled: 403 and 401); without `VERBATIM_MCP_TOKEN`, also the "
        "token of `/mcp` beyond localhost.",
    )
    mcp_token: str | None = Field(
        default=None,
        description="The bearer token MCP clients send to `/mcp` (`verbatim serve`); without it, "
        "the admin token serves beyond localhost, and on localhost none is needed.",
    )
    host: str = Field(
        default="127.0.0.1", description="Where `serve` listens (`--host` overrides it)."
    )
    port: int = Field(
        default=8000, description="The port `serve` listens on (`--port` overrides it)."
    )
    max_concurrent: int = Field(
        default_factory=lambda: os.cpu_count() or 2,
        ge=1,
        description="Answers computed at once (more than one per CPU core only thrash).",
        json_schema_extra={"shown_default": "CPU cores"},
    )
    max_waiting: int = Field(
        default=32,
        ge=0,
        description="Questions that wait (up to 1 s) beyond those; the rest get 503 with "
        "`Retry-After` at once.",
    )
    feedback_per_minute: int = Field(
        default=20,
        ge=1,
        description="Feedback posts accepted per client address per minute; more get 429 with "
        "`Retry-After`.",
    )
    feedback_per_day: int = Field(
        default=10_000,
        ge=1,
        description="Feedback rows stored per day (UTC), all clients together; more get 429 with "
        "`Retry-After`.",
    )
    progress: bool = Field(default=True, description="Show progress bars on the terminal.")
    store: Literal["local", "qdrant"] = Field(
        default="local",
        description="Where the index is served from: `local` (FAISS, bm25s and SQLite files in "
        'the data directory) or `qdrant` (needs `pip install ".[qdrant]"`; ingest writes both).',
    )
    qdrant_url: str | None = Field(
        default=None,
        description="With `VERBATIM_STORE=qdrant`: an `http(s)://` address of a Qdrant server or "
        "cluster, a folder (qdrant-client's local mode) or `:memory:`; unset: the folder "
        "`qdrant` in the data directory.",
    )
    qdrant_api_key: str | None = Field(
        default=None, description="Qdrant's API key, if the server needs one."
    )
    qdrant_shards: int = Field(
        default=1,
        ge=1,
        description="With a Qdrant cluster: shards of each collection `verbatim ingest` publishes "
        "(2 × the nodes lets a node be added by moving shards).",
    )
    qdrant_replicas: int = Field(
        default=1,
        ge=1,
        description="With a Qdrant cluster: copies of each shard (2 keeps answering through the "
        "loss of a node).",
    )

    @field_validator("collection")
    @classmethod
    def _collection(cls, name: str) -> str:
        return collection_name(name)
