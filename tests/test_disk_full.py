"""A full disk, wherever it is met: a JSON error naming the disk (507), nothing left behind,
and the index answering on. The disk is made full by SQLite itself (`max_page_count`) or by
writes that raise ENOSPC. Fake embedder: fast."""

import errno
import sqlite3

import pytest
from fastapi.testclient import TestClient

from verbatim.errors import StorageFull, storage_full
from verbatim.feedback import FeedbackStore, NewFeedback
from verbatim.server import create_app
from verbatim.server.middleware import SECURITY_HEADERS

TOKEN = "s3cret"  # noqa: S105
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUESTION = "How often should I change the engine oil?"
ENTRY = NewFeedback(QUESTION, "default", "cars", 0, 6, "h", "Change", "helpful", "n" * 900, "g")


def sqlite_full() -> sqlite3.OperationalError:
    """The error SQLite raises when the disk is full (SQLITE_FULL), made by SQLite itself."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (x)")
    db.execute("PRAGMA max_page_count=2")
    try:
        db.execute("INSERT INTO t VALUES (randomblob(100000))")
    except sqlite3.OperationalError as exc:
        return exc
    raise AssertionError("SQLite wrote past max_page_count")


def connect_with(monkeypatch, factory: type[sqlite3.Connection]) -> None:
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real(*a, factory=factory, **k))


class NoRoomForTheWal(sqlite3.Connection):
    """A connection on a full disk: the WAL's files cannot be made."""

    def execute(self, sql, *args):
        if sql == "PRAGMA journal_mode=WAL":
            raise sqlite_full()
        return super().execute(sql, *args)


class NoRoomToGrow(sqlite3.Connection):
    """A database that can use the pages it has, but not one more (a full disk, to SQLite)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute("PRAGMA max_page_count=1")  # raised to the pages in use


@pytest.fixture
def client(fake_engine):
    settings = fake_engine.settings.model_copy(
        update={"admin_token": TOKEN, "feedback_per_minute": 1000}
    )
    app = create_app(settings, engine=fake_engine)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def cite(client) -> dict:
    quote = client.post("/api/ask", json={"question": QUESTION}).json()["quotes"][0]
    keys = ("doc_id", "start", "end", "content_hash")
    return {"question": QUESTION, "verdict": "helpful", **{k: quote[k] for k in keys}}


def assert_disk_full(response, data_dir) -> None:
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "storage_full" and error["status"] == 507
    assert str(data_dir) in error["message"] and "Free some space" in error["message"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_feedback_on_a_full_disk_is_a_json_507_and_answering_goes_on(client, monkeypatch):
    body = cite(client)
    data_dir = client.app.state.verbatim.settings.data_dir
    connect_with(monkeypatch, NoRoomForTheWal)
    assert_disk_full(client.post("/api/feedback", json=body), data_dir)
    assert_disk_full(client.get("/api/feedback", headers=AUTH), data_dir)
    form = client.post("/feedback", data=body, follow_redirects=False)
    assert form.status_code == 507 and "text/html" in form.headers["content-type"]
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200
    monkeypatch.undo()
    assert client.post("/api/feedback", json=body).status_code == 201  # room again: stored


def test_a_disk_filling_up_mid_write_stores_nothing_and_names_the_disk(client, monkeypatch):
    body = cite(client)
    assert client.post("/api/feedback", json=body).status_code == 201
    connect_with(monkeypatch, NoRoomToGrow)
    for _ in range(20):  # until the pages in use are full
        response = client.post("/api/feedback", json={**body, "note": "x" * 1000})
        if response.status_code != 201:
            break
    assert_disk_full(response, client.app.state.verbatim.settings.data_dir)
    monkeypatch.undo()
    stored = client.get("/api/feedback", headers=AUTH).json()
    assert all(row["note"] in (None, "x" * 1000) for row in stored["feedback"])
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200


def test_the_store_turns_a_full_disk_into_storage_full(tmp_path, monkeypatch):
    store = FeedbackStore(tmp_path)
    store.add(ENTRY, 100)
    connect_with(monkeypatch, NoRoomToGrow)
    with pytest.raises(StorageFull, match=str(tmp_path)):
        for _ in range(20):
            store.add(ENTRY, 100)
    monkeypatch.undo()
    assert store.rows()  # what was stored before is readable, nothing half-written


@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (OSError(errno.EACCES, "Permission denied"), False),
        (sqlite_full(), True),
        (sqlite3.OperationalError("database or disk is full"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (ValueError("disk is full"), False),
    ],
)
def test_one_function_recognises_a_full_disk(exc, full):
    found = storage_full(exc, "/data")
    assert (found is not None) == full
    if found:
        assert found.status == 507 and "/data" in found.message


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "all-MiniLM-L6-v2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def leftovers(cache) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def half_written(path, size: int = 1 << 20) -> None:
    with open(path, "wb") as fh:
        fh.write(b"\0" * size)


class Graph:
    """A fused graph whose saving fills the disk half way."""

    def save_model_to_file(self, path: str) -> None:
        half_written(path)
        no_space()


def exporting(monkeypatch, *, export=None, optimized=None, quantize=None) -> None:
    """Stand-ins for the torch export, the fusion and the quantiser (none loads a model)."""
    from verbatim.index import embed

    def export_ok(folder, out):
        half_written(out, 1000)
        return "config"

    monkeypatch.setattr(embed, "_export", export or export_ok)
    monkeypatch.setattr(embed, "_optimized", optimized or (lambda path, config: None))
    monkeypatch.setattr(embed, "_quantize", quantize or (lambda fp32, out: half_written(out)))


@pytest.mark.parametrize("failing", ["export", "fuse", "quantize"])
def test_a_model_export_on_a_full_disk_leaves_nothing_behind(
    failing, model_folder, tmp_path, monkeypatch
):
    from verbatim.errors import IndexWriteFailed
    from verbatim.index import embed

    def export_fails(folder, out):
        half_written(out)
        no_space()

    changes = {
        "export": {"export": export_fails},
        "fuse": {"optimized": lambda path, config: Graph()},
        "quantize": {"quantize": lambda fp32, out: (half_written(out), no_space())},
    }[failing]
    exporting(monkeypatch, **changes)
    cache = tmp_path / "models"
    for _ in range(3):  # each retry fails the same way, and adds nothing
        with pytest.raises(IndexWriteFailed, match="No space left on device"):
            embed._exported(model_folder, cache, quantized=True)
        assert leftovers(cache) == ([] if failing != "quantize" else ["model.onnx"])


def test_the_next_export_removes_what_dead_exports_left(model_folder, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from verbatim.index import embed

    exporting(monkeypatch)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = tmp_path / "models"
    old = cache / "all-MiniLM-L6-v2-0123456789ab"  # an export of an older version of the model
    old.mkdir(parents=True)
    for name in (f"model.{dead.pid}.tmp", f"model.{dead.pid}.fused", f"model.{os.getpid()}.tmp"):
        half_written(old / name, 10)
    embed._exported(model_folder, cache, quantized=True)
    # A live process's file may be an export under way beside this one: it stays.
    assert leftovers(cache) == sorted([f"model.{os.getpid()}.tmp", "model-int8.onnx", "model.onnx"])


def test_a_reload_meeting_a_full_disk_is_a_507_and_the_old_index_answers_on(
    client, tiny_corpus, fake_embedder, monkeypatch
):
    from verbatim.engine import ingest_paths

    state = client.app.state.verbatim
    before = client.get("/api/health").json()["generation"]
    (tiny_corpus / "kites.md").write_text("Fly a kite in a steady wind.\n")
    ingest_paths([tiny_corpus], state.settings, fake_embedder)
    monkeypatch.setattr("verbatim.engine.load_engine", no_space)
    reloaded = client.post("/api/admin/reload", headers=AUTH)
    assert_disk_full(reloaded, state.settings.data_dir)
    assert client.get("/api/health").json()["generation"] == before
    assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200


def test_an_ingest_whose_feedback_recheck_meets_a_full_disk_still_succeeds(
    fake_engine, tiny_corpus, fake_embedder, monkeypatch, caplog
):
    from verbatim.engine import current_generation, ingest_paths

    settings = fake_engine.settings
    FeedbackStore(settings.data_dir).add(ENTRY, 10)  # a citation to re-check
    (tiny_corpus / "kites.md").write_text("Fly a kite in a steady wind.\n")
    connect_with(monkeypatch, NoRoomForTheWal)
    report, _ = ingest_paths([tiny_corpus], settings, fake_embedder)
    assert current_generation(settings) == report.generation  # published all the same
    assert "feedback citations not re-checked" in caplog.text and "is full" in caplog.text
