"""A streamed ingest is resumable: one stopped part way (interrupted here, SIGKILLed in the slow
test) and started again with the same folder and settings continues from the blocks it wrote,
embeds only the rest, and publishes exactly the generation an uninterrupted ingest publishes.
Until it publishes, the current generation stays as it was."""

import json
import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import FakeEmbedder
from verbatim.engine import ingest_paths
from verbatim.index import build as index_build
from verbatim.index import generations, load_index
from verbatim.settings import Settings

BLOCK = 40  # texts per block: the corpus below is a few dozen blocks


def write_corpus(folder: Path, version: int = 0, files: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        rows = [
            {
                "id": f"d{f}-{i}",
                "title": f"Doc {f} {i}",
                "text": " ".join(
                    f"Sentence {j} of document {f}.{i}, version {version}, on kites and wind."
                    for j in range(3 + (i % 5))
                ),
            }
            for i in range(25)
        ]
        (folder / f"part{f}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def settings_for(data: Path) -> Settings:
    return Settings(
        data_dir=data, model="fake", progress=False, batch_size=8, calibration_probes=20
    )


class Stopping(FakeEmbedder):
    """The fake embedder, interrupted (as by Ctrl-C) at its `stop_at`-th call."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at

    def encode(self, texts, progress=None):
        if self.stop_at is not None and self.calls + 1 >= self.stop_at:
            raise KeyboardInterrupt
        return super().encode(texts, progress)


def published(data: Path) -> dict:
    """What a generation holds, file by file: each file's hash (the SQLite file as its rows),
    and the manifest's counts, corpus hash, IVF record and calibration."""
    path = generations.generations_dir(data) / generations.current_name(data)
    manifest = generations.read_manifest(path)
    files = {name: digest for name, digest in manifest["files"].items() if name != "store.sqlite"}
    db = sqlite3.connect(path / "store.sqlite")
    rows = list(db.iterdump())
    db.close()
    keys = ("counts", "corpus_hash", "ivf", "calibration", "dim")
    return {"files": files, "rows": rows, **{k: manifest.get(k) for k in keys}}


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(index_build, "BLOCK_TEXTS", BLOCK)


def test_an_interrupted_ingest_continues_where_it_stopped(tmp_path, small_blocks):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    whole = Stopping()
    ingest_paths([corpus], settings_for(tmp_path / "a"), whole)
    want = published(tmp_path / "a")
    assert want["counts"]["passages"] > 0 and whole.calls > 8

    data = tmp_path / "b"
    for stop_at in (3, 7):  # stopped twice, the second time further on
        with pytest.raises(KeyboardInterrupt):
            ingest_paths([corpus], settings_for(data), Stopping(stop_at))
        assert generations.current_name(data) is None  # nothing published
        (workspace,) = generations.generations_dir(data).glob(".tmp-resume-*")
        progress = json.loads((workspace / index_build.PROGRESS).read_text())
        assert progress["passages"] > 0
    rest = Stopping()
    report, _ = ingest_paths([corpus], settings_for(data), rest)
    assert 0 < rest.texts < whole.texts - progress["passages"]  # only what was left
    assert published(data) == want
    assert not list(generations.generations_dir(data).glob(".tmp-*"))
    assert report.passages == want["counts"]["passages"]


def test_another_corpus_does_not_continue_a_stopped_ingest(tmp_path, small_blocks):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    data = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        ingest_paths([corpus], settings_for(data), Stopping(5))
    write_corpus(corpus, version=1)  # the files changed: their key is another
    fresh = Stopping()
    ingest_paths([corpus], settings_for(data), fresh)
    ingest_paths([corpus], settings_for(tmp_path / "clean"), whole := Stopping())
    assert fresh.texts == whole.texts  # everything embedded again
    assert published(data) == published(tmp_path / "clean")
    with load_index(settings_for(data)) as index:
        assert "version 1" in index.text("d0-0")
    assert not list(generations.generations_dir(data).glob(".tmp-*"))


def _ingest(data: Path, corpus: Path, counts: Path) -> None:
    """A child's ingest, with small blocks; appends the number of texts it embedded to
    `counts` as it goes."""
    index_build.BLOCK_TEXTS = BLOCK

    class Counting(FakeEmbedder):
        def encode(self, texts, progress=None):
            time.sleep(0.02)  # as a model takes time
            out = super().encode(texts, progress)
            with open(counts, "a") as fh:
                fh.write(f"{len(texts)}\n")
            return out

    ingest_paths([corpus], settings_for(data), Counting())


def _run(data: Path, corpus: Path, counts: Path, kill_after: float | None) -> int:
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(
        ["__main__", "verbatim.engine", "bm25s", "Stemmer", "wordfreq", __name__]
    )
    proc = forkserver.Process(target=_ingest, args=(data, corpus, counts))
    proc.start()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.kill()  # SIGKILL
    proc.join(120)
    return proc.exitcode


def _embedded(counts: Path) -> int:
    return sum(int(n) for n in counts.read_text().split()) if counts.exists() else 0


@pytest.mark.slow
def test_an_ingest_killed_at_several_points_continues_and_equals_a_whole_one(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus, files=10)
    began = time.monotonic()
    assert _run(tmp_path / "whole", corpus, tmp_path / "whole.txt", None) == 0
    full = time.monotonic() - began
    total = _embedded(tmp_path / "whole.txt")
    want = published(tmp_path / "whole")
    resumed = 0
    for n, share in enumerate((0.25, 0.45, 0.6, 0.75, 0.9)):
        data, counts = tmp_path / f"d{n}", tmp_path / f"c{n}.txt"
        # Killed twice: the second run continues the first, the third the second.
        for again in (share, 0.5):
            code = _run(data, corpus, counts, full * again)
            assert code != 0 or generations.current_name(data) is not None
            if code != 0:
                assert generations.current_name(data) is None  # CURRENT untouched
        before = _embedded(counts)
        assert _run(data, corpus, counts, None) == 0
        assert published(data) == want
        assert not list(generations.generations_dir(data).glob(".tmp-*"))
        if before:  # the finishing run embedded only what the killed ones had not written
            resumed += _embedded(counts) - before < total
    assert resumed >= 3


class Failing(FakeEmbedder):
    def encode(self, texts, progress=None):
        if self.calls >= 2:
            raise RuntimeError("the model failed")
        return super().encode(texts, progress)


def test_an_error_removes_the_workspace_and_a_second_ingest_does_not_share_it(
    tmp_path, small_blocks
):
    import fcntl
    import os

    corpus, data = tmp_path / "corpus", tmp_path / "data"
    write_corpus(corpus)
    with pytest.raises(RuntimeError, match="model failed"):
        ingest_paths([corpus], settings_for(data), Failing())
    assert not list(generations.generations_dir(data).glob(".tmp-*"))  # an error starts over
    with pytest.raises(KeyboardInterrupt):
        ingest_paths([corpus], settings_for(data), Stopping(4))
    (workspace,) = generations.generations_dir(data).glob(".tmp-resume-*")
    held = os.open(workspace, os.O_RDONLY)  # as an ingest of the same folder running now
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        again = Stopping()
        ingest_paths([corpus], settings_for(data), again)
        assert workspace.exists()  # left to its owner
        ingest_paths([corpus], settings_for(tmp_path / "clean"), whole := Stopping())
        assert again.texts == whole.texts  # embedded afresh, in a workspace of its own
    finally:
        os.close(held)
    assert published(data) == published(tmp_path / "clean")
