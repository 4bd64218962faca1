"""The streaming ingest into Qdrant (`verbatim.index.cluster.stream`), its workers run one after
another in this process (`run_here`: what each Ray worker does, without Ray): batch by batch,
with no local generation, it writes what publishing a local build writes, so it answers as the
local store does; it resumes from what a stopped run wrote. The same on Ray, killed with
SIGKILL: tests/test_ray_stream_kill.py."""

import json

import numpy as np
import pytest

from tests.builders import edge_shard, edge_store
from tests.conftest import ROOT, FakeEmbedder
from verbatim.answer import answer, retrieve
from verbatim.calibrate import calibrate
from verbatim.records import Filters

qdrant_client = pytest.importorskip("qdrant_client")

SEEDS = [json.loads(line)["question"] for line in (ROOT / "eval" / "seeds.jsonl").open()]


@pytest.fixture
def small_batches(monkeypatch):
    """One file a batch, four passages and one document a block, so that a small corpus has
    many of each."""
    from verbatim.index import cluster

    monkeypatch.setattr(cluster, "FILES_PER_BATCH", 1)
    monkeypatch.setattr(cluster, "BLOCK", 4)
    monkeypatch.setattr(cluster, "DOCUMENTS", 1)


def _stream(folder, settings, embedder=None):
    from verbatim.index import cluster, qdrant

    embedder = embedder or FakeEmbedder()
    report, skipped = cluster.stream(
        [folder],
        settings,
        embedder.dim,
        lambda probe: calibrate(probe, embedder, settings),
        lambda client, base: cluster.run_here(client, base, settings, FakeEmbedder),
    )
    return report, skipped, qdrant.open_store(settings)


@pytest.fixture
def stores(bundled_and_tiny, settings, small_batches):
    """(local generation, streamed Qdrant generation) of the bundled and tiny corpora in one
    folder (five files, five batches), with `FakeEmbedder`."""
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index, qdrant

    ingest_paths([bundled_and_tiny], settings, FakeEmbedder())
    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    report, skipped, streamed = _stream(bundled_and_tiny, remote)
    local = load_index(settings)
    yield local, streamed, report
    local.close()
    qdrant.client_for(remote).close()
    qdrant.connect.cache_clear()


def _quotes(result):
    return [
        (q.doc_id, q.start, q.end, q.text, q.score, q.role, q.passage_id, q.also_in)
        for q in result.quotes + result.near_misses
    ]


@pytest.mark.slow  # the bundled corpus streamed in one-file batches; duplicates below are fast
def test_a_streamed_generation_answers_as_the_local_store(stores, settings, fake_embedder):
    local, streamed, report = stores
    assert report.passages == len(local.passage_ids) and report.documents == len(local.documents)
    assert streamed.manifest["counts"] == local.manifest["counts"]
    assert streamed.manifest["corpus_hash"] == local.manifest["corpus_hash"]
    assert streamed.thresholds == local.thresholds  # calibrated on the unpublished generation
    assert len({p >> 32 for p in _point_ids(streamed)}) == 5  # five batches wrote it
    same = 0
    for question in SEEDS:
        a = answer(question, local, fake_embedder, settings)
        b = answer(question, streamed, fake_embedder, settings)
        same += _quotes(a)[:1] == _quotes(b)[:1]
        found_a = retrieve(question, local, fake_embedder, settings)
        found_b = retrieve(question, streamed, fake_embedder, settings)
        ids_a = [local.passage_ids[r] for r in found_a.rows]
        ids_b = streamed.passages(np.sort(found_b.rows)).ids
        ids_b = [ids_b[i] for i in np.argsort(np.argsort(found_b.rows))]
        assert ids_b == ids_a, question
        assert np.allclose(found_b.scores, found_a.scores, atol=1e-6), question
    assert same == len(SEEDS)
    filtered = answer("engine oil", streamed, fake_embedder, settings, filters=Filters(author="x"))
    assert filtered.quotes == [] and filtered.reason.startswith("No document matches")
    for quote in answer("How long do I bake bread?", streamed, fake_embedder, settings).quotes:
        assert streamed.text(quote.doc_id)[quote.start : quote.end] == quote.text


def _point_ids(store):
    points, _ = store.client.scroll(f"{store.base}-passages", limit=10_000)
    return [p.id for p in points]


@pytest.mark.slow  # the bundled corpus streamed in one-file batches
def test_bm25_weights_are_the_local_stores_to_the_bit(stores):
    """Every passage's sparse vector holds bm25s's own float32 weights of the whole corpus,
    though each batch saw only its own passages."""
    local, streamed, _ = stores
    ptr, ids, values = local.lexical.weights()
    terms, _ = local.lexical.vocabulary()
    names = {i: t for t, i in streamed._terms._vocab.items()}
    points, _ = streamed.client.scroll(
        f"{streamed.base}-passages", limit=10_000, with_vectors=["bm25"], with_payload=["pid"]
    )
    row = {pid: r for r, pid in enumerate(local.passage_ids)}
    for p in points:
        r = row[p.payload["pid"]]
        lo, hi = ptr[r], ptr[r + 1]
        want = {terms[t]: v for t, v in zip(ids[lo:hi], values[lo:hi], strict=True)}
        sparse = p.vector.get("bm25")
        got = (
            {names[i]: v for i, v in zip(sparse.indices, sparse.values, strict=True)}
            if sparse
            else {}
        )
        assert got == want
    for term, i in streamed._terms._vocab.items():
        assert streamed._terms._idf[i] == local.lexical.idf(term)
    assert not any(c.name.endswith("-terms") for c in streamed.client.get_collections().collections)


def test_duplicate_ids_across_batches_are_settled_as_reading_settles_them(
    tmp_path, settings, small_batches
):
    """`a.md` beside `a.txt` (the second keeps its suffix) and a JSONL id repeated in another
    file (skipped), each in a batch of its own: the documents and skips of a plain read."""
    from verbatim.index import qdrant
    from verbatim.ingest import read_documents

    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "a.md").write_text("# Kites\n\nKites fly in the wind over the hills.\n")
    (folder / "a.txt").write_text("Boats\n\nBoats sail on the lake in summer.\n")
    (folder / "b.jsonl").write_text(
        json.dumps({"id": "x", "text": "First x row about tea."}) + "\n"
    )
    rows = [{"id": "x", "text": "Second x about coffee."}, {"id": "y", "text": "Y on milk."}]
    (folder / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = read_documents([folder], settings)
    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    report, skipped, streamed = _stream(folder, remote)
    assert (
        sorted(streamed.documents)
        == sorted(d.id for d in plain.documents)
        == [
            "a",
            "a.txt",
            "x",
            "y",
        ]
    )
    assert skipped == plain.skipped and report.documents == 4
    assert "tea" in streamed.text("x") and "Boats" in streamed.text("a.txt")
    assert report.passages == len(plain.passages)
    ids = sorted(streamed.passages(np.array(sorted(_point_ids(streamed)))).ids)
    assert ids == sorted(p.id for p in plain.passages)
    qdrant.connect.cache_clear()


class Stop(Exception):
    """Stands for the process being killed."""


LONG = pytest.mark.stress  # three streams of the bundled corpus each; the tiny one's below is fast


@pytest.mark.parametrize(
    "at",
    [
        pytest.param("record:1", marks=LONG),
        pytest.param("record:4", marks=LONG),
        pytest.param("record:9", marks=LONG),
        pytest.param("weigh:2", marks=LONG),
        pytest.param("finish:1", marks=LONG),
    ],
)
def test_a_stopped_ingest_resumes_where_it_stopped(
    bundled_and_tiny, settings, small_batches, at, monkeypatch
):
    """Stopped at a progress record, in the second pass or at the switch, then run again with
    the same arguments: it embeds only what was not written, the alias names nothing (or the
    old generation) until all is, and the result is an uninterrupted run's."""
    from verbatim.index import qdrant

    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    clean, _, whole = _stream(bundled_and_tiny, remote)
    qdrant.connect.cache_clear()
    where, count = at.split(":")
    real = getattr(qdrant, where)
    calls = []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == int(count):
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(qdrant, where, stopping)
    with pytest.raises(Stop):
        _stream(bundled_and_tiny, remote)
    assert qdrant.current(qdrant.client_for(remote), remote.collection) is None
    monkeypatch.setattr(qdrant, where, real)
    report, _, resumed = _stream(bundled_and_tiny, remote)
    if at == "record:1":  # before its run key was recorded: it starts afresh
        assert report.embedded == clean.embedded
    elif where == "record":  # some blocks were written: not again
        assert 0 < report.embedded < clean.embedded
    else:  # every batch was written
        assert report.embedded == 0
    assert resumed.manifest["counts"] == whole.manifest["counts"]
    assert resumed.thresholds == whole.thresholds
    for question in SEEDS[:10]:
        embedder = FakeEmbedder()
        a = answer(question, whole, embedder, settings)
        b = answer(question, resumed, embedder, settings)
        assert _quotes(b) == _quotes(a)
    names = {c.name for c in resumed.client.get_collections().collections}
    assert names == {f"{resumed.base}-{kind}" for kind in ("passages", "sentences", "documents")}
    qdrant.connect.cache_clear()


@pytest.mark.slow  # the bundled corpus streamed in one-file batches
def test_qdrant_edge_ranks_the_streamed_passages_as_the_local_store(stores, settings, tmp_path):
    """The oracle: the streamed passages (ids, vectors, weights) in a Qdrant Edge shard, Qdrant's
    own engine, searched with the store's plan, rank as the local store does."""
    pytest.importorskip("qdrant_edge")

    local, streamed, _ = stores
    points, _ = streamed.client.scroll(
        f"{streamed.base}-passages", limit=10_000, with_vectors=True, with_payload=True
    )
    shard = edge_shard(points, FakeEmbedder().dim, tmp_path / "edge")
    edge = edge_store(shard, streamed.client, settings.collection)
    embedder = FakeEmbedder()
    for question in SEEDS:
        a = retrieve(question, local, embedder, settings)
        b = retrieve(question, edge, embedder, settings)
        ids_b = edge.passages(np.sort(b.rows)).ids
        ids_b = [ids_b[i] for i in np.argsort(np.argsort(b.rows))]
        assert ids_b == [local.passage_ids[r] for r in a.rows], question
        assert np.allclose(b.scores, a.scores, atol=1e-6), question
    shard.close()


def test_a_changed_folder_starts_afresh(tiny_corpus, settings, small_batches, monkeypatch):
    """A stopped ingest is resumed only with the same arguments: after a file changed, the next
    run writes a new generation whole, and the unfinished one is deleted when it publishes."""
    from verbatim.index import qdrant

    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    real, calls = qdrant.record, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(qdrant, "record", stopping)
    with pytest.raises(Stop):
        _stream(tiny_corpus, remote)
    monkeypatch.setattr(qdrant, "record", real)
    (tiny_corpus / "bread.txt").write_text("Baking Bread\n\nBake the loaf for an hour.\n")
    report, _, store = _stream(tiny_corpus, remote)
    assert report.documents == 3 and report.embedded == report.passages + report.sentences
    assert "for an hour" in store.text("bread")
    names = {c.name for c in store.client.get_collections().collections}
    assert names == {f"{store.base}-{kind}" for kind in ("passages", "sentences", "documents")}
    qdrant.connect.cache_clear()


def test_a_stopped_ingest_of_the_tiny_corpus_resumes(
    tiny_corpus, settings, small_batches, monkeypatch
):
    """The fast case of the above: stopped after four records, run again, it embeds only what
    was not written and answers as an uninterrupted run."""
    from verbatim.index import qdrant

    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    clean, _, whole = _stream(tiny_corpus, remote)
    qdrant.connect.cache_clear()
    real, calls = qdrant.record, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(qdrant, "record", stopping)
    with pytest.raises(Stop):
        _stream(tiny_corpus, remote)
    monkeypatch.setattr(qdrant, "record", real)
    report, _, resumed = _stream(tiny_corpus, remote)
    assert 0 < report.embedded < clean.embedded
    assert resumed.manifest["counts"] == whole.manifest["counts"]
    embedder = FakeEmbedder()
    for question in ["How often should I change the engine oil?", "What do aphids do?"]:
        a = answer(question, whole, embedder, settings, k=10)
        assert _quotes(answer(question, resumed, embedder, settings, k=10)) == _quotes(a)
    qdrant.connect.cache_clear()


def test_killed_after_the_switch_it_only_cleans_up(tiny_corpus, settings, monkeypatch):
    """Stopped after the alias switch, before the old generations are pruned: run again, it
    embeds nothing, keeps the generation it replaced (replicas may still read it) and deletes
    its scratch collection."""
    from verbatim.index import qdrant

    remote = settings.model_copy(update={"store": "qdrant", "qdrant_url": ":memory:"})
    _, _, first = _stream(tiny_corpus, remote)
    (tiny_corpus / "bread.txt").write_text("Baking Bread\n\nBake the loaf for an hour.\n")
    real = qdrant._prune

    def stopping(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(qdrant, "_prune", stopping)
    with pytest.raises(Stop):
        _stream(tiny_corpus, remote)
    monkeypatch.setattr(qdrant, "_prune", real)
    report, _, second = _stream(tiny_corpus, remote)
    assert report.embedded == 0 and second.generation != first.generation
    names = {c.name for c in second.client.get_collections().collections}
    kinds = ("passages", "sentences", "documents")
    assert names == {f"{store.base}-{k}" for store in (first, second) for k in kinds}
    assert "for an hour" in second.text("bread")
    qdrant.connect.cache_clear()
