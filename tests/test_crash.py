"""SIGKILL an ingest at random moments: the index is always exactly the old or the new one.

Each ingest runs in a process forked from a server that has imported Verbatim once, so that
the kills land in the ingest itself, not in a fresh interpreter's imports.
"""

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FakeEmbedder
from verbatim.engine import ingest_paths
from verbatim.index import generations, load_index
from verbatim.settings import Settings

pytestmark = pytest.mark.stress  # 22 ingests, 20 of them killed: `make test` and `make stress`


class SlowFake(FakeEmbedder):
    """The fake embedder, taking a little time per batch as a model does."""

    dim = 32

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        time.sleep(0.01)
        return super().encode(texts, progress)


def ingest(data: Path, corpus: Path) -> None:
    settings = Settings(
        data_dir=data, model="fake", progress=False, batch_size=8, calibration_probes=20
    )
    ingest_paths([corpus], settings, SlowFake())


def write_corpus(path: Path, generation: int) -> None:
    rows = [
        {
            "id": f"d{i}",
            "title": f"Doc {i}",
            "text": f"Document {i} of version {generation} talks about kites and wind {i}.",
        }
        for i in range(120)
    ]
    rows.append({"id": "known", "title": "Known", "text": "The lighthouse keeper polishes lenses."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_child(data: Path, corpus: Path, kill_after: float | None) -> int:
    forkserver = multiprocessing.get_context("forkserver")
    # Imported once by the server, not by every child (Verbatim imports these lazily).
    forkserver.set_forkserver_preload(
        ["__main__", "verbatim.engine", "bm25s", "Stemmer", "wordfreq", __name__]
    )
    proc = forkserver.Process(target=ingest, args=(data, corpus))
    proc.start()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.kill()  # SIGKILL
    proc.join(120)
    return proc.exitcode


def test_sigkill_during_ingest_never_mixes_generations(tmp_path):
    data, corpus = tmp_path / "data", tmp_path / "corpus.jsonl"
    write_corpus(corpus, 0)
    assert run_child(data, corpus, None) == 0
    settings = Settings(data_dir=data, model="fake", progress=False)
    write_corpus(corpus, -1)  # time a real re-index (changed text), as the killed runs do
    began = time.monotonic()
    assert run_child(data, corpus, None) == 0
    full = time.monotonic() - began
    kills = int(os.environ.get("VERBATIM_CRASH_KILLS", "20"))
    # Kill moments spread evenly over the whole run and a little past it (some runs finish),
    # in a shuffled order so that consecutive kills do not creep through the run.
    moments = [full * 1.15 * (i + 0.5) / kills for i in range(kills)]
    random.Random(7).shuffle(moments)
    served, codes = {generations.current_name(data)}, []
    for n in range(kills):
        write_corpus(corpus, n + 1)
        codes.append(run_child(data, corpus, moments[n]))
        began = time.monotonic()
        with load_index(settings) as index:  # verifies every hash against the manifest
            assert time.monotonic() - began < 5
            assert index.generation == generations.current_name(data)
            assert (
                index.faiss.ntotal == len(index.passage_ids) == index.manifest["counts"]["passages"]
            )
            assert "known" in index.documents
            text = index.text("known")
            assert "lighthouse keeper" in text
            versions = {index.text(f"d{i}").split("version ")[1].split()[0] for i in range(120)}
            assert len(versions) == 1  # never a mix of two corpora
            served.add(index.generation)
    assert -signal.SIGKILL in codes  # runs were cut short, not all let finish
    write_corpus(corpus, kills + 1)
    assert run_child(data, corpus, None) == 0  # a clean run afterwards publishes...
    assert not list(generations.generations_dir(data).glob(".tmp-*"))  # ...and removes leftovers
    assert not list(data.glob("CURRENT.tmp-*"))
    assert generations.current_name(data) not in served
