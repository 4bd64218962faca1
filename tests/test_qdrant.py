"""The Qdrant store (`verbatim.index.qdrant`) on qdrant-client's local mode: it answers as the
local store does. Skipped where qdrant-client is not installed (a plain `pip install .`)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.builders import edge_shard, edge_store
from tests.conftest import ROOT
from verbatim.answer import answer, retrieve
from verbatim.records import Filters
from verbatim.settings import Settings

qdrant_client = pytest.importorskip("qdrant_client")

SEEDS = [json.loads(line)["question"] for line in (ROOT / "eval" / "seeds.jsonl").open()]
TINY_QUESTIONS = [
    "How often should I change the engine oil?",
    "water the tomato plants",
    "How long do I bake bread?",
    "What do aphids do?",
    "How do I sort a dictionary in Python?",
]


def _published(corpus, settings, embedder):
    """`corpus` ingested locally, published to a fresh in-memory Qdrant: (local, qdrant)."""
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    ingest_paths([corpus], settings, embedder)
    local = load_index(settings)
    client = qdrant_client.QdrantClient(location=":memory:")
    qdrant.publish(local, client)
    return local, qdrant.QdrantStore(client, settings.collection)


def _quotes(result):
    return [
        (q.doc_id, q.start, q.end, q.text, q.score, q.role, q.passage_id, q.also_in)
        for q in result.quotes + result.near_misses
    ]


def _agreement(local, remote, questions, settings, embedder):
    """(share of questions with the same first quote, share with the same passage ranking)."""
    first = ranked = 0
    for question in questions:
        a = answer(question, local, embedder, settings)
        b = answer(question, remote, embedder, settings)
        first += _quotes(a)[:1] == _quotes(b)[:1]
        found_a = retrieve(question, local, embedder, settings)
        found_b = retrieve(question, remote, embedder, settings)
        ranked += found_a.rows.tolist() == found_b.rows.tolist() and np.allclose(
            found_a.scores, found_b.scores, atol=1e-6
        )
    return first / len(questions), ranked / len(questions)


def test_tiny_corpus_answers_equal_the_local_stores(tiny_corpus, settings, fake_embedder):
    local, remote = _published(tiny_corpus, settings, fake_embedder)
    assert remote.store == "qdrant" and local.store == "local"
    assert remote.generation == local.generation and remote.thresholds == local.thresholds
    for question in TINY_QUESTIONS:
        a = answer(question, local, fake_embedder, settings, k=10)
        b = answer(question, remote, fake_embedder, settings, k=10)
        assert _quotes(b) == _quotes(a), question
        assert (b.abstained, b.reason, b.threshold) == (a.abstained, a.reason, a.threshold)
        for quote in b.quotes:
            assert remote.text(quote.doc_id)[quote.start : quote.end] == quote.text
    assert remote.document("gardening").text == local.document("gardening").text
    local.close()


@pytest.mark.slow  # 52 seed questions on the bundled corpus; the tiny corpus's parity is fast
def test_bundled_corpus_first_quotes_and_rankings_agree(settings, fake_embedder, capsys):
    local, remote = _published(settings.corpus_dir, settings, fake_embedder)
    first, ranked = _agreement(local, remote, SEEDS, settings, fake_embedder)
    with capsys.disabled():
        print(
            f"\nqdrant local mode vs local store, {len(SEEDS)} seed questions: same first "
            f"quote {first:.3f}, same passage ranking {ranked:.3f}"
        )
    assert first >= 0.9
    assert ranked == 1.0
    local.close()


@pytest.mark.parametrize(
    "filters",
    [
        Filters(author="Ada Gardener"),
        Filters(documents=("bread", "cars")),
        Filters(date_from="2024-01-01"),
    ],
)
def test_filtered_answers_equal_the_local_stores(tiny_corpus, settings, fake_embedder, filters):
    local, remote = _published(tiny_corpus, settings, fake_embedder)
    for question in TINY_QUESTIONS:
        a = answer(question, local, fake_embedder, settings, k=10, filters=filters)
        b = answer(question, remote, fake_embedder, settings, k=10, filters=filters)
        assert _quotes(b) == _quotes(a), (question, filters)
    nothing = answer("tomatoes", remote, fake_embedder, settings, filters=Filters(site="none"))
    assert nothing.quotes == [] and nothing.reason.startswith("No document matches")
    local.close()


def test_excluding_a_passage_ranks_as_the_local_store(tiny_corpus, settings, fake_embedder):
    """Calibration leaves a probe's own passage out; both stores leave it out the same way."""
    from verbatim.answer import retrieve_by_vector

    local, remote = _published(tiny_corpus, settings, fake_embedder)
    vector = fake_embedder.encode(["Aphids love tomato plants."])[0]
    for row in range(len(local.passage_ids)):
        a = retrieve_by_vector("Aphids love tomato plants.", vector, local, settings, exclude=row)
        b = retrieve_by_vector("Aphids love tomato plants.", vector, remote, settings, exclude=row)
        assert b.rows.tolist() == a.rows.tolist() and row not in b.rows.tolist()
    local.close()


def test_publishing_switches_the_alias_and_keeps_the_previous_generation(
    tiny_corpus, settings, fake_embedder
):
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    client = qdrant_client.QdrantClient(location=":memory:")
    names = []
    for n in range(3):
        (tiny_corpus / "extra.md").write_text(f"Generation {n} speaks of kites in the wind.")
        ingest_paths([tiny_corpus], settings, fake_embedder)
        with load_index(settings) as local:
            names.append(qdrant.publish(local, client))
        if n == 1:
            pinned = qdrant.QdrantStore(client, settings.collection)
    assert qdrant.current(client, settings.collection) == names[-1]
    held = {c.name for c in client.get_collections().collections}
    kept = {name.removesuffix("-passages") for name in names[1:]}
    assert {name.rsplit("-", 1)[0] for name in held} == kept  # the oldest was deleted
    latest = qdrant.QdrantStore(client, settings.collection)
    assert latest.generation != pinned.generation
    said = answer("kites in the wind", pinned, fake_embedder, settings)  # still its generation
    assert said.generation == pinned.generation and "Generation 1" in said.quotes[0].text
    assert "Generation 2" in answer("kites", latest, fake_embedder, settings).quotes[0].text


def test_store_qdrant_serves_from_qdrant_and_health_names_it(tiny_corpus, tmp_path, fake_embedder):
    """`VERBATIM_STORE=qdrant`: ingest publishes to Qdrant (a folder here) and the engine and
    /api/health use it; the default is the local store."""
    from verbatim.engine import ingest_paths, open_engine
    from verbatim.index import qdrant
    from verbatim.server import create_app

    common = {"data_dir": tmp_path / "data", "model": "fake", "progress": False}
    settings = Settings(**common, store="qdrant", qdrant_url=str(tmp_path / "qdrant"))
    ingest_paths([tiny_corpus], settings, fake_embedder)
    engine = open_engine(settings, fake_embedder)
    local = open_engine(Settings(**common), fake_embedder)
    assert engine.answering.store == "qdrant" and local.answering.store == "local"
    assert isinstance(engine.answering, qdrant.QdrantStore) and local.answering is local.index
    question = "How often should I change the engine oil?"
    assert _quotes(engine.ask(question)) == _quotes(local.ask(question))
    with TestClient(create_app(settings, engine=engine)) as client:
        health = client.get("/api/health").json()
    assert health["store"] == "qdrant" and health["generation"] == local.index.generation
    with TestClient(create_app(local.settings, engine=local)) as client:
        assert client.get("/api/health").json()["store"] == "local"
    local.close()
    qdrant.client_for(settings).close()  # the folder's lock, before the process ends
    qdrant.connect.cache_clear()


@pytest.mark.slow  # a child interpreter; test_layers holds extras to imports inside functions
def test_the_default_path_does_not_import_qdrant():
    code = (
        "import sys, verbatim.engine, verbatim.answer, verbatim.server.app, verbatim.cli;"
        "assert 'qdrant_client' not in sys.modules, 'qdrant_client imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow  # 52 seed questions through Qdrant Edge
def test_qdrant_edge_ranks_passages_as_local_mode(settings, fake_embedder, tmp_path):
    """The oracle: the same query plan (a dense and a sparse prefetch, their union by RRF,
    then the local store's fusion) on Qdrant Edge gives local mode's passage ranking."""
    pytest.importorskip("qdrant_edge")
    from verbatim.index import qdrant

    local, remote = _published(settings.corpus_dir, settings, fake_embedder)
    points = qdrant._passage_points(local)
    shard = edge_shard(points, int(local.manifest["dim"]), tmp_path / "edge")
    edge = edge_store(shard, remote.client, settings.collection)
    for question in SEEDS:
        a = retrieve(question, remote, fake_embedder, settings)
        b = retrieve(question, edge, fake_embedder, settings)
        assert b.rows.tolist() == a.rows.tolist(), question
        assert np.array_equal(b.scores, a.scores), question
    shard.close()
    local.close()


def test_a_real_qdrant_server_answers_as_the_local_store(tiny_corpus, tmp_path, fake_embedder):
    """Opt-in: with VERBATIM_QDRANT_URL an http(s):// address of a Qdrant server or cluster,
    the tiny corpus is published there (a collection of its own, deleted afterwards)."""
    import os
    import uuid

    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    url = os.environ.get("VERBATIM_QDRANT_URL", "")
    if not url.startswith(("http://", "https://")):
        pytest.skip("no Qdrant server: set VERBATIM_QDRANT_URL=http(s)://... to run this test")
    name = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path / "data", model="fake", progress=False, collection=name)
    ingest_paths([tiny_corpus], settings, fake_embedder)
    client = qdrant_client.QdrantClient(url=url, api_key=os.environ.get("VERBATIM_QDRANT_API_KEY"))
    try:
        with load_index(settings) as local:
            qdrant.publish(local, client)
            remote = qdrant.QdrantStore(client, name)
            for question in TINY_QUESTIONS:
                a = answer(question, local, fake_embedder, settings, k=10)
                b = answer(question, remote, fake_embedder, settings, k=10)
                assert _quotes(b) == _quotes(a), question
    finally:
        client.delete_alias(qdrant.alias(name))
        for item in client.get_collections().collections:
            if item.name.startswith(qdrant.alias(name) + "-"):
                client.delete_collection(item.name)


def test_a_replica_serves_from_qdrant_alone(tiny_corpus, tmp_path, fake_embedder):
    """A `verbatim serve` replica needs only the Qdrant address: its data directory holds no
    index, yet it answers, shows documents and pages, verifies, lists and reloads collections."""
    from verbatim.engine import ingest_paths, open_engines
    from verbatim.index import qdrant
    from verbatim.server import create_app

    common = {"model": "fake", "progress": False, "store": "qdrant"}
    builder = Settings(**common, data_dir=tmp_path / "ingest", qdrant_url=str(tmp_path / "q"))
    ingest_paths([tiny_corpus], builder, fake_embedder)
    notes = builder.model_copy(update={"collection": "notes"})
    ingest_paths([tiny_corpus / "gardening.md"], notes, fake_embedder)
    replica = builder.model_copy(update={"data_dir": tmp_path / "replica"})
    engines = open_engines(replica, fake_embedder)
    assert list(engines) == ["default", "notes"]
    assert all(e.index is None and e.answering.store == "qdrant" for e in engines.values())
    assert not (tmp_path / "replica" / "generations").exists()
    with TestClient(create_app(replica, engine=engines)) as client:
        found = client.post(
            "/api/ask", json={"question": "How often should I change the engine oil?"}
        )
        quote = found.json()["quotes"][0]
        doc = client.get(f"/api/documents/{quote['doc_id']}").json()
        assert doc["text"][quote["start"] : quote["end"]] == quote["text"]
        assert client.get("/api/documents").json()["total"] == 3
        page = client.get("/", params={"q": "How often should I change the engine oil?"}).text
        assert quote["text"] in page
        verified = client.post("/api/verify", json=quote).json()
        assert verified["status"] == "current"
        names = [c["name"] for c in client.get("/api/collections").json()["collections"]]
        assert names == ["default", "notes"]
        before = client.get("/api/health").json()["generation"]
        (tiny_corpus / "bread.txt").write_text("Baking Bread\n\nBake the loaf for an hour.\n")
        ingest_paths([tiny_corpus], builder, fake_embedder)  # the ingest machine publishes
        assert client.get("/api/health").json()["generation"] == before  # until a reload
        client.app.state.verbatim.reload()
        assert client.get("/api/health").json()["generation"] != before
        said = client.post("/api/ask", json={"question": "How long do I bake bread?"}).json()
        assert "for an hour" in (said["quotes"] + said["near_misses"])[0]["text"]
    qdrant.remove_collection(qdrant.client_for(replica), "notes")
    assert qdrant.collection_names(qdrant.client_for(replica)) == ["default"]
    qdrant.client_for(replica).close()
    qdrant.connect.cache_clear()


def test_cli_lists_and_removes_qdrant_collections(
    tiny_corpus, tmp_path, fake_embedder, monkeypatch
):
    """With VERBATIM_STORE=qdrant, `verbatim collections` and `remove` act on Qdrant's
    collections, also where the data directory holds no copy (a replica's)."""
    from click.testing import CliRunner

    from verbatim.cli import cli
    from verbatim.engine import ingest_paths
    from verbatim.index import qdrant

    url = str(tmp_path / "q")
    builder = Settings(model="fake", store="qdrant", qdrant_url=url, data_dir=tmp_path / "a")
    ingest_paths([tiny_corpus], builder.model_copy(update={"collection": "notes"}), fake_embedder)
    monkeypatch.setenv("VERBATIM_STORE", "qdrant")
    monkeypatch.setenv("VERBATIM_QDRANT_URL", url)
    replica = ["--data-dir", str(tmp_path / "replica")]
    listed = CliRunner().invoke(cli, ["collections", "--json", *replica])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)["collections"]
    assert row["name"] == "notes" and row["documents"] == 3 and row["generation"]
    removed = CliRunner().invoke(cli, ["remove", "--collection", "notes", "--yes", *replica])
    assert removed.exit_code == 0, removed.output
    assert qdrant.collection_names(qdrant.client_for(builder)) == []
    again = CliRunner().invoke(cli, ["remove", "--collection", "notes", "--yes", *replica])
    assert again.exit_code == 1 and "known: none" in again.output
    from verbatim.engine import open_engines
    from verbatim.errors import IndexMissing

    empty = builder.model_copy(update={"data_dir": tmp_path / "replica"})
    with pytest.raises(IndexMissing, match="run `verbatim ingest` with VERBATIM_STORE=qdrant"):
        open_engines(empty, fake_embedder, build_if_missing=True)  # a replica never publishes
    assert not (tmp_path / "replica" / "generations").exists()
    qdrant.client_for(builder).close()
    qdrant.connect.cache_clear()


def test_shards_and_replicas_reach_the_published_collections(tiny_corpus, tmp_path, fake_embedder):
    """`VERBATIM_QDRANT_SHARDS`/`_REPLICAS` are the collections' settings (a server's; local
    mode keeps one shard, and answers the same)."""
    from verbatim.engine import ingest_paths, open_engine
    from verbatim.index import qdrant

    settings = Settings(
        data_dir=tmp_path / "d",
        model="fake",
        store="qdrant",
        qdrant_url=":memory:",
        qdrant_shards=3,
        qdrant_replicas=2,
    )
    created = []
    client = qdrant.client_for(settings)
    real = client.create_collection

    def spy(name, **config):
        created.append((name, config["shard_number"], config["replication_factor"]))
        return real(name, **config)

    client.create_collection = spy
    try:
        ingest_paths([tiny_corpus], settings, fake_embedder)
    finally:
        del client.create_collection
    assert len(created) == 3 and all(shards == 3 and copies == 2 for _, shards, copies in created)
    engine = open_engine(settings, fake_embedder)
    assert engine.ask("How often should I change the engine oil?").quotes
    qdrant.connect.cache_clear()
