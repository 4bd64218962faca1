"""`ingest --ray` into Qdrant on a local Ray cluster: killed with SIGKILL (the driver and its
Ray processes, one process group) at several points and started again with the same
arguments, it goes on from what was written and ends with the generation an uninterrupted
ingest publishes; the alias never names an unfinished one."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, FakeEmbedder
from verbatim.answer import answer
from verbatim.settings import Settings

pytest.importorskip("ray", reason='Ray is an extra: pip install ".[ray]"')
qdrant_client = pytest.importorskip("qdrant_client")
pytestmark = pytest.mark.slow

SEEDS = [json.loads(line)["question"] for line in (ROOT / "eval" / "seeds.jsonl").open()]

# The driver: one batch a file and four passages a block (so a small corpus has many of each),
# and, with KILL "function:n", SIGKILL to its whole process group at the n-th call of that
# function of `verbatim.index.qdrant` or `verbatim.index.cluster`.
DRIVER = """
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import ray
from tests.conftest import FakeEmbedder
from verbatim.engine import ingest_on_ray
from verbatim.index import cluster, qdrant
from verbatim.settings import Settings

cluster.FILES_PER_BATCH, cluster.BLOCK = 1, 4
if os.environ.get("KILL"):
    name, count = os.environ["KILL"].split(":")
    owner = cluster if name == "apply" else qdrant
    real, calls = getattr(owner, name), []

    def killing(*args, **kwargs):
        calls.append(1)
        if len(calls) == int(count):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, name, killing)
settings = Settings.model_validate_json(sys.argv[1])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
report, skipped = ingest_on_ray([Path(sys.argv[2])], settings, workers=2, make=FakeEmbedder)
print(json.dumps({{"embedded": report.embedded, "generation": report.generation}}))
"""


def _ingest(settings, folder, tmp_path, kill=None):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT)))
    env = {**os.environ, "KILL": kill or "", "PYTHONPATH": str(ROOT)}  # workers: tests.conftest
    done = subprocess.run(
        [sys.executable, str(script), settings.model_dump_json(), str(folder)],
        capture_output=True,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the driver and the cluster it starts
        timeout=300,
        cwd=tmp_path,
    )
    return done


def _alias(settings):
    from verbatim.index import qdrant

    client = qdrant_client.QdrantClient(path=settings.qdrant_url)
    try:
        return qdrant.current(client, settings.collection)
    finally:
        client.close()


def test_killed_ingests_resume_and_publish_the_whole_generation(
    bundled_and_tiny, tmp_path, settings
):
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    streamed = settings.model_copy(
        update={"store": "qdrant", "qdrant_url": str(tmp_path / "q"), "data_dir": tmp_path / "s"}
    )
    kills = ["apply:3", "apply:12", "weigh:2", "finish:1"]
    for kill in kills:
        done = _ingest(streamed, bundled_and_tiny, tmp_path, kill)
        assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
        assert _alias(streamed) is None  # nothing published until all is written
    done = _ingest(streamed, bundled_and_tiny, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    assert resumed["embedded"] == 0  # the kill at the switch came after every batch was in
    ingest_paths([bundled_and_tiny], settings, FakeEmbedder())
    client = qdrant_client.QdrantClient(path=streamed.qdrant_url)
    try:
        store = qdrant.QdrantStore(client, settings.collection)
        assert store.generation == resumed["generation"]
        names = {c.name for c in client.get_collections().collections}
        assert names == {f"{store.base}-{k}" for k in ("passages", "sentences", "documents")}
        with load_index(settings) as local:
            assert store.manifest["counts"] == local.manifest["counts"]
            assert store.thresholds == local.thresholds
            embedder = FakeEmbedder()
            for question in SEEDS:
                a = answer(question, local, embedder, settings)
                b = answer(question, store, embedder, settings)
                first_a = [(q.doc_id, q.start, q.end, q.score) for q in a.quotes + a.near_misses]
                first_b = [(q.doc_id, q.start, q.end, q.score) for q in b.quotes + b.near_misses]
                assert first_b[:1] == first_a[:1], question
    finally:
        client.close()


def test_a_kill_in_the_first_pass_leaves_the_rest_to_do(bundled_and_tiny, tmp_path, settings):
    """Killed while batches are being written, the next run embeds only the blocks that were
    not recorded."""
    streamed = settings.model_copy(
        update={"store": "qdrant", "qdrant_url": str(tmp_path / "q"), "data_dir": tmp_path / "s"}
    )
    whole = Settings(**{**streamed.model_dump(), "qdrant_url": str(tmp_path / "whole")})
    clean = _ingest(whole, bundled_and_tiny, tmp_path)
    assert clean.returncode == 0, clean.stderr[-3000:]
    total = json.loads(clean.stdout.strip().splitlines()[-1])["embedded"]
    killed = _ingest(streamed, bundled_and_tiny, tmp_path, "apply:6")
    assert killed.returncode == -signal.SIGKILL
    done = _ingest(streamed, bundled_and_tiny, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0 < json.loads(done.stdout.strip().splitlines()[-1])["embedded"] < total


def test_workers_write_to_a_real_qdrant_server(bundled_and_tiny, tmp_path, settings):
    """Opt-in: with VERBATIM_QDRANT_URL an http(s):// address of a Qdrant server, the workers
    write their batches there themselves; killed in the second pass and run again, the
    collection (one of its own, removed afterwards) answers as the local store."""
    import uuid

    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    url = os.environ.get("VERBATIM_QDRANT_URL", "")
    if not url.startswith(("http://", "https://")):
        pytest.skip("no Qdrant server: set VERBATIM_QDRANT_URL=http(s)://... to run this test")
    key = os.environ.get("VERBATIM_QDRANT_API_KEY")
    name = f"test-{uuid.uuid4().hex[:8]}"
    streamed = settings.model_copy(
        update={"store": "qdrant", "qdrant_url": url, "qdrant_api_key": key, "collection": name}
    )
    assert _ingest(streamed, bundled_and_tiny, tmp_path, "weigh:2").returncode == -signal.SIGKILL
    done = _ingest(streamed, bundled_and_tiny, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ingest_paths([bundled_and_tiny], settings, FakeEmbedder())
    client = qdrant_client.QdrantClient(url=url, api_key=key)
    try:
        store = qdrant.QdrantStore(client, name)
        with load_index(settings) as local:
            assert store.thresholds == local.thresholds
            embedder = FakeEmbedder()
            for question in SEEDS:
                a = answer(question, local, embedder, settings)
                b = answer(question, store, embedder, settings)
                first_a = [(q.doc_id, q.start, q.end, q.score) for q in a.quotes + a.near_misses]
                first_b = [(q.doc_id, q.start, q.end, q.score) for q in b.quotes + b.near_misses]
                assert first_b[:1] == first_a[:1], question
    finally:
        qdrant.remove_collection(client, name)
