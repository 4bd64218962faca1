"""The feedback store: readers' verdicts on quotes, kept beside the index generations, and
exported as eval data.

    data_dir/feedback.sqlite    SQLite in WAL mode, one row a verdict; never inside a generation,
                                so re-ingest, restart and reload leave it alone

Each row keeps the quote as a citation (document, offsets, content hash, text) and the index
generation it was given on; after each ingest `verbatim.citations.recheck` verifies it against
the new generation, updating moved quotes in place and marking changed and gone ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from verbatim.errors import FolderMissing, VerbatimError, storage_full
from verbatim.settings import DEFAULT_COLLECTION, collection_name

FILE = "feedback.sqlite"
VERDICTS = ("helpful", "unhelpful")
STATUSES = ("current", "moved", "changed", "gone")
MAX_NOTE = 1000  # characters
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    collection TEXT NOT NULL,
    question TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('helpful', 'unhelpful')),
    note TEXT,
    generation TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'current'
        CHECK (status IN ('current', 'moved', 'changed', 'gone')),
    checked TEXT
);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback(created);
CREATE INDEX IF NOT EXISTS feedback_collection ON feedback(collection, id);
CREATE TABLE IF NOT EXISTS checks (
    generation TEXT NOT NULL, collection TEXT NOT NULL, checked_at TEXT NOT NULL,
    current INTEGER NOT NULL, moved INTEGER NOT NULL, changed INTEGER NOT NULL,
    gone INTEGER NOT NULL,
    PRIMARY KEY (generation, collection)
);
"""
# In the order of `Feedback`'s fields.
COLUMNS = (
    'question, collection, doc_id, start, "end", content_hash, text, verdict, note, generation, '
    "id, created, status, checked"
)


class FeedbackFull(VerbatimError):
    """The day's cap on stored feedback is reached; `retry_after` seconds until it resets."""

    status = 429
    code = "feedback_limit"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class NewFeedback:
    """A verdict to store: the quote as a citation, and what the reader said about it."""

    question: str
    collection: str
    doc_id: str
    start: int
    end: int
    content_hash: str
    text: str
    verdict: str
    note: str | None
    generation: str


@dataclass(frozen=True)
class Feedback(NewFeedback):
    """A stored verdict. `status` is the citation's state at the last re-check (`checked`, the
    generation it was checked against; None until the first ingest after it was given)."""

    id: int = 0
    created: str = ""
    status: str = "current"
    checked: str | None = None


@dataclass(frozen=True)
class Recheck:
    """A stored citation verified against a new generation: what to write back."""

    id: int
    status: str
    start: int
    end: int
    content_hash: str
    text: str


def now() -> str:
    """The time as stored: UTC, fixed width, so that text order is time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds_to_midnight() -> int:
    moment = datetime.now(UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - moment).total_seconds()) + 1)


def _utf8(value: object) -> object:
    """Text with lone surrogates (valid JSON escapes, not UTF-8, so not storable) replaced by
    U+FFFD; anything else as it is."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock at once: what is read inside stays true) ... COMMIT."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite has rolled back itself after some errors (a full disk)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class FeedbackStore:
    """The feedback of one data directory. Each call opens its own connection, so one store is
    safe to share between threads and processes (SQLite locks; WAL lets readers go on)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in autocommit mode (transactions are explicit), schema in place.

        Raises:
            StorageFull: the disk is full (while connecting, or in the `with` block).
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before the 201 goes out, power loss included.
                db.execute("PRAGMA synchronous=FULL")
                if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    db.executescript(SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
                yield db
        except (OSError, sqlite3.Error) as exc:
            full = storage_full(exc, self.path.parent)
            if full is None:
                raise
            raise full from None

    def add(self, entry: NewFeedback, per_day: int) -> int:
        """Store `entry`; returns its id.

        Raises:
            FeedbackFull: `per_day` rows were already stored today (UTC).
        """
        with self.connect() as db, _transaction(db):
            (stored,) = db.execute(
                "SELECT count(*) FROM feedback WHERE created >= ?", (now()[:10],)
            ).fetchone()
            if stored >= per_day:
                raise FeedbackFull(
                    f"the day's limit of {per_day:,} feedback entries is reached "
                    "(VERBATIM_FEEDBACK_PER_DAY); try again tomorrow (UTC)",
                    _seconds_to_midnight(),
                )
            cursor = db.execute(
                'INSERT INTO feedback (question, collection, doc_id, start, "end", '
                "content_hash, text, verdict, note, generation, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*map(_utf8, astuple(entry)), now()),  # in the order of NewFeedback's fields
            )
        return int(cursor.lastrowid or 0)

    def page(
        self, offset: int, limit: int, collection: str | None = None
    ) -> tuple[int, list[Feedback]]:
        """(total, rows): the newest first, `limit` rows from `offset`."""
        with self.connect() as db:
            (total,) = db.execute(
                "SELECT count(*) FROM feedback WHERE (? IS NULL OR collection = ?)",
                (collection, collection),
            ).fetchone()
            rows = db.execute(
                f"SELECT {COLUMNS} FROM feedback WHERE (? IS NULL OR collection = ?) "  # noqa: S608
                "ORDER BY id DESC LIMIT ? OFFSET ?",
                (collection, collection, limit, offset),
            ).fetchall()
        return total, [Feedback(*r) for r in rows]

    def collections(self) -> list[str]:
        """The collections feedback was given in (also ones removed since), by name."""
        if not self.exists():
            return []
        with self.connect() as db:
            found = db.execute("SELECT DISTINCT collection FROM feedback ORDER BY 1").fetchall()
        return [name for (name,) in found]

    def rows(self, collection: str | None = None, since: str | None = None) -> list[Feedback]:
        """Every row (oldest first), of one collection and from a time (`since`, UTC) on."""
        if not self.exists():
            return []
        with self.connect() as db:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM feedback WHERE (? IS NULL OR collection = ?) "  # noqa: S608
                "AND (? IS NULL OR created >= ?) ORDER BY id",
                (collection, collection, since, since),
            ).fetchall()
        return [Feedback(*r) for r in rows]

    def record_check(self, generation: str, collection: str, results: list[Recheck]) -> dict:
        """Write back a re-check against `generation`: citations found (current, moved) get
        their offsets, text and hash updated in place; changed and gone ones keep theirs and are
        only marked. Returns the counts by status, which are also kept (`last_check`)."""
        counts = dict.fromkeys(STATUSES, 0)
        with self.connect() as db, _transaction(db):
            for r in results:
                counts[r.status] += 1
                if r.status in ("changed", "gone"):
                    db.execute(
                        "UPDATE feedback SET status = ?, checked = ? WHERE id = ?",
                        (r.status, generation, r.id),
                    )
                else:
                    db.execute(
                        'UPDATE feedback SET status = ?, checked = ?, start = ?, "end" = ?, '
                        "text = ?, content_hash = ? WHERE id = ?",
                        (r.status, generation, r.start, r.end, r.text, r.content_hash, r.id),
                    )
            db.execute(
                "INSERT OR REPLACE INTO checks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (generation, collection, now(), *(counts[s] for s in STATUSES)),
            )
        return counts

    def last_check(self, generation: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        """The counts by status of the re-check against `generation`, if one was made."""
        if not self.exists():
            return None
        with self.connect() as db:
            row = db.execute(
                "SELECT current, moved, changed, gone FROM checks "
                "WHERE generation = ? AND collection = ?",
                (generation, collection),
            ).fetchone()
        return dict(zip(STATUSES, row, strict=True)) if row else None


def _fold(question: str) -> str:
    return " ".join(question.casefold().split())


def eval_lines(rows: Iterable[Feedback]) -> list[dict]:
    """One eval-format question per question asked (case and white space folded), from the
    verdicts on its quotes: `answers` the texts net marked helpful, `relevant` their documents,
    `not_answers` the texts net marked unhelpful. A quote with as many verdicts each way counts
    as neither; citations whose text is no longer in the index (changed, gone) are left out."""
    questions: dict[tuple[str, str], tuple[str, dict[tuple[str, str], int]]] = {}
    for r in rows:
        if r.status in ("changed", "gone"):
            continue
        _, votes = questions.setdefault((r.collection, _fold(r.question)), (r.question, {}))
        key = (r.doc_id, r.text)
        votes[key] = votes.get(key, 0) + (1 if r.verdict == "helpful" else -1)
    lines = []
    for (collection, folded), (question, votes) in questions.items():
        answers = list(dict.fromkeys(text for (_, text), n in votes.items() if n > 0))
        relevant = list(dict.fromkeys(doc for (doc, _), n in votes.items() if n > 0))
        not_answers = list(
            dict.fromkeys(t for (_, t), n in votes.items() if n < 0 and t not in answers)
        )
        if not answers and not not_answers:
            continue
        digest = hashlib.sha256(f"{collection}\0{folded}".encode()).hexdigest()[:12]
        lines.append(
            {
                "id": f"feedback-{digest}",
                "question": question,
                "answers": answers,
                "relevant": relevant,
                "not_answers": not_answers,
            }
        )
    return lines


@dataclass(frozen=True)
class Exported:
    questions: int
    helpful: int  # quotes in `answers`, over all questions
    unhelpful: int  # quotes in `not_answers`
    stale: int  # verdicts left out: their citation changed or is gone


def export(
    data_dir: Path, out: Path, collection: str = DEFAULT_COLLECTION, since: str | None = None
) -> Exported:
    """Write the feedback of `collection` (given from `since` on, UTC) to `out` as eval data.

    Raises:
        InvalidCollectionName: `collection` is not a collection name.
        FolderMissing: `out`'s folder does not exist.
        StorageFull: the disk is full (`out` is then as it was).
    """
    if not out.parent.is_dir():
        raise FolderMissing(
            f"there is no folder {out.parent} to write {out.name} into; create it, or give a "
            "path in an existing folder"
        )
    rows = FeedbackStore(data_dir).rows(collection_name(collection), since)
    lines = eval_lines(rows)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        os.replace(partial, out)
    except OSError as exc:
        raise storage_full(exc, out.parent) or exc from None
    finally:
        partial.unlink(missing_ok=True)
    return Exported(
        questions=len(lines),
        helpful=sum(len(x["answers"]) for x in lines),
        unhelpful=sum(len(x["not_answers"]) for x in lines),
        stale=sum(r.status in ("changed", "gone") for r in rows),
    )
