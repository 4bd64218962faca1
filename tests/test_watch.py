"""Live folders with real file-system events (#33): `Watcher` keeps a collection in step with
its folder as files are created, edited, renamed and deleted, coalesces bursts and half-written
files, pauses while the folder is missing, and catches up after a kill."""

import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from verbatim.engine import ingest_paths, update_paths
from verbatim.index import generations, load_index, where
from verbatim.watch import STATUS, Watcher, watch_status

from .test_update import _fresh, _same, _snapshot

pytestmark = pytest.mark.slow  # each waits for real events and debounces (seconds)

ROOT = Path(__file__).resolve().parent.parent


def _wait_for(check, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def _documents(settings) -> dict[str, str]:
    index = load_index(settings)
    try:
        return {i: index.text(i) for i in index.documents}
    finally:
        index.close()


@contextmanager
def watching(settings, folder, embedder):
    batches = []
    watcher = Watcher(settings, [folder], embedder, batches.append)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert _wait_for(
            lambda: watcher.status["heartbeat"] and (where(settings) / STATUS).exists()
        )
        time.sleep(0.5)  # the watch is set up after the first look
        yield watcher, batches
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def test_create_edit_rename_delete_follow_the_folder(
    tmp_path, settings, tiny_corpus, fake_embedder
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    with watching(settings, tiny_corpus, fake_embedder) as (watcher, batches):
        (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
        assert _wait_for(lambda: "kites" in _documents(settings))
        (tiny_corpus / "kites.md").write_text("Fly a kite on a windy hill, never near wires.\n")
        assert _wait_for(lambda: "hill" in _documents(settings).get("kites", ""))
        os.rename(tiny_corpus / "kites.md", tiny_corpus / "flying.md")
        assert _wait_for(lambda: set(_documents(settings)) >= {"flying"})
        assert "kites" not in _documents(settings)
        (tiny_corpus / "bread.txt").unlink()
        assert _wait_for(lambda: "bread" not in _documents(settings))
        assert all(b.line().count(" files, ") == 1 for b in batches)
        assert _wait_for(lambda: watch_status(settings)["pending"] == 0)  # written after publishing
        status = watch_status(settings)
        assert status["active"] and status["folders"] == [str(tiny_corpus)]
        assert status["last_update"] and status["skipped"] == []
    _same(
        _snapshot(settings, fake_embedder), _fresh(tmp_path, settings, tiny_corpus, fake_embedder)
    )


def test_an_editors_save_and_a_burst_are_coalesced(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    with watching(settings, tiny_corpus, fake_embedder) as (_, batches):
        tmp = tiny_corpus / ".bread.txt.swp"  # an editor writes a hidden file, then renames it
        tmp.write_text("Baking Bread\n\nKnead the dough for twelve minutes.\n")
        os.replace(tmp, tiny_corpus / "bread.txt")
        burst = tiny_corpus / "burst"
        burst.mkdir()
        for n in range(1_000):  # a `git checkout`
            (burst / f"note{n:04d}.md").write_text(
                f"Note {n} says the tide turns at {n} o'clock.\n"
            )
        assert _wait_for(lambda: len(_documents(settings)) == 1_003, 120)
        assert "twelve" in _documents(settings)["bread"]
        assert len(batches) <= 3, [b.line() for b in batches]


def test_a_half_written_file_is_read_once_complete(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    seen = []
    with watching(settings, tiny_corpus, fake_embedder) as (watcher, _):
        watcher.on_batch = lambda b: seen.append(_documents(settings).get("long"))
        with open(tiny_corpus / "long.md", "w") as fh:
            for n in range(8):  # a slow writer: a line every 0.2 s
                fh.write(f"Line {n} of a long note about sailing boats.\n\n")
                fh.flush()
                time.sleep(0.2)
        assert _wait_for(lambda: "Line 7" in _documents(settings).get("long", ""))
    assert [text.count("Line") for text in seen if text] == [8]


def test_a_missing_folder_pauses_and_resumes(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    with watching(settings, tiny_corpus, fake_embedder) as (watcher, _):
        away = tiny_corpus.with_name("unmounted")
        os.rename(tiny_corpus, away)
        assert _wait_for(lambda: watcher.status["paused"] is not None)
        assert "paused" in watch_status(settings)["paused"]
        assert len(_documents(settings)) == 3  # still served as it was
        (away / "kites.md").write_text("Fly a kite with the wind at your back.\n")
        os.rename(away, tiny_corpus)
        assert _wait_for(lambda: "kites" in _documents(settings), 30)
        assert watcher.status["paused"] is None


KILLED = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from tests.conftest import FakeEmbedder
from verbatim.engine import update_paths
from verbatim.settings import Settings

class Slow(FakeEmbedder):
    def encode(self, texts, progress=None):
        print("embedding", flush=True)
        time.sleep(60)

update_paths([Path({folder!r})], Settings(data_dir={data!r}, model="fake", progress=False), Slow())
"""


def test_a_kill_during_an_update_keeps_the_last_good_state(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    before = generations.current_name(where(settings))
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    script = KILLED.format(root=str(ROOT), folder=str(tiny_corpus), data=str(settings.data_dir))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "embedding"  # mid-update: the workspace is open
    proc.kill()
    proc.wait()
    assert generations.current_name(where(settings)) == before
    assert "kites" not in _documents(settings)  # the last good state is served
    update = update_paths([tiny_corpus], settings, fake_embedder)  # the watcher's first look
    assert update.added == 1 and "kites" in _documents(settings)
