import dataclasses
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from verbatim.errors import IndexCorrupt, IndexMissing, ModelMismatch
from verbatim.index import build_index, generations, load_index
from verbatim.index import vectors as vector_files
from verbatim.index.embed import INT8_VERSION
from verbatim.ingest import read_documents
from verbatim.records import Sentence


def build(folder, settings, embedder):
    return build_index(read_documents([folder], settings), settings, embedder)


def test_build_and_load_round_trip(tiny_corpus, settings, fake_embedder):
    report = build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        assert index.generation == report.generation
        assert index.faiss.ntotal == report.passages == len(index.passage_ids)
        assert len(index.sentence_vectors) == report.sentences
        for row, _pid in enumerate(index.passage_ids):
            text = index.text(index.passage_doc[row])
            lo, hi = index.sent_lo[row], index.sent_hi[row]
            assert index.sent_start[lo] == index.passage_start[row]
            assert index.sent_end[hi - 1] == index.passage_end[row]
            assert text[index.passage_start[row] : index.passage_end[row]].strip()
        doc = index.document("gardening")
        assert doc.author == "Ada Gardener" and [s.heading for s in doc.sections] == ["", "Pests"]


def test_reingest_unchanged_reuses_everything_and_keeps_ids(tiny_corpus, settings, fake_embedder):
    first = build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        ids = list(index.passage_ids)
        vectors = np.array(index.sentence_vectors)
    fake_embedder.texts = 0
    second = build(tiny_corpus, settings, fake_embedder)
    assert second.generation != first.generation
    assert fake_embedder.texts == 0 and second.reused == second.passages
    with load_index(settings) as index:
        assert list(index.passage_ids) == ids
        assert np.array_equal(np.array(index.sentence_vectors), vectors)
    (tiny_corpus / "bread.txt").write_text("Baking Bread at Home\n\nOnly one new sentence.\n")
    third = build(tiny_corpus, settings, fake_embedder)
    assert third.embedded == 2 and third.reused == third.passages - 1


def test_a_passage_split_differently_is_embedded_again(tiny_corpus, settings, fake_embedder):
    """Same passage text, other sentences (a new splitter): its old sentence vectors do not fit,
    so it is embedded afresh instead of copied (the copy failed on the sentence count)."""
    build(tiny_corpus, settings, fake_embedder)
    corpus = read_documents([tiny_corpus], settings)
    whole = [dataclasses.replace(p, sentences=(Sentence(p.start, p.end),)) for p in corpus.passages]
    fake_embedder.texts = 0
    report = build_index(dataclasses.replace(corpus, passages=whole), settings, fake_embedder)
    assert report.reused == 0 and report.embedded == 2 * len(whole)
    with load_index(settings) as index:
        assert len(index.sentence_vectors) == len(whole)


def test_crash_during_ingest_leaves_previous_generation(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    before = generations.current_name(settings.data_dir)
    (tiny_corpus / "new.md").write_text("A brand new document about kites.")

    class Exploding(type(fake_embedder)):
        def encode(self, texts, progress=None):
            raise RuntimeError("killed halfway")

    with pytest.raises(RuntimeError):
        build(tiny_corpus, settings, Exploding())
    assert generations.current_name(settings.data_dir) == before
    with load_index(settings) as index:
        assert "new" not in index.documents and "gardening" in index.documents
    build(tiny_corpus, settings, fake_embedder)  # the next run cleans up
    assert not list(generations.generations_dir(settings.data_dir).glob(".tmp-*"))


def test_missing_index_names_the_fix(settings):
    with pytest.raises(IndexMissing, match="verbatim ingest"):
        load_index(settings)


def test_model_mismatch_is_a_clear_error(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    with pytest.raises(ModelMismatch, match="VERBATIM_MODEL"):
        load_index(settings.model_copy(update={"model": "other-model"}))


def test_int8_index_is_not_served_to_the_float_backend(tiny_corpus, settings, fake_embedder):
    int8 = settings.model_copy(update={"backend": "onnx-int8"})
    build(tiny_corpus, int8, fake_embedder)
    assert load_index(int8).manifest["int8"] == INT8_VERSION
    with pytest.raises(ModelMismatch, match="VERBATIM_BACKEND"):
        load_index(settings)
    # An index from an older int8 export (manifests said `true`) has other vectors.
    manifest = generations.candidates(settings.data_dir)[0] / "manifest.json"
    old = json.loads(manifest.read_text()) | {"int8": True}
    manifest.write_text(json.dumps(old))
    with pytest.raises(ModelMismatch, match="older version of the onnx-int8"):
        load_index(int8)
    # onnx and torch give the same vectors: either serves a float index.
    build(tiny_corpus, settings, fake_embedder)
    assert load_index(settings.model_copy(update={"backend": "torch"})).manifest["int8"] == 0


def hurt(path, damage: str) -> None:
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


def test_every_index_file_is_covered(tiny_corpus, settings, fake_embedder):
    """The manifest hashes every file of a generation, so damage to any of them is seen."""
    report = build(tiny_corpus, settings, fake_embedder)
    generation = generations.generations_dir(settings.data_dir) / report.generation
    listed = set(json.loads((generation / "manifest.json").read_text())["files"])
    on_disk = {p.relative_to(generation).as_posix() for p in generation.rglob("*") if p.is_file()}
    assert listed == on_disk - {"manifest.json"}
    assert {
        "store.sqlite",
        "sentences.npy",
        "passages.npy",
        "passages.faiss",
        "bm25/params.index.json",
        "bm25-sentences/vocab.index.json",
    } <= listed


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damage_to_any_file_falls_back_or_is_refused(tmp_path, tiny_corpus, fake_embedder, damage):
    from verbatim.settings import Settings

    intact = Settings(data_dir=tmp_path / "intact", model="fake", progress=False)
    first = build(tiny_corpus, intact, fake_embedder).generation
    (tiny_corpus / "extra.md").write_text("An extra note.")
    second = build(tiny_corpus, intact, fake_embedder).generation
    manifest = generations.generations_dir(intact.data_dir) / second / "manifest.json"
    victims = [*json.loads(manifest.read_text())["files"], "manifest.json"]
    assert len(victims) > 5
    for n, victim in enumerate(victims):
        settings = intact.model_copy(update={"data_dir": tmp_path / f"d{n}"})
        shutil.copytree(intact.data_dir, settings.data_dir)  # two generations, both intact
        root = generations.generations_dir(settings.data_dir)
        hurt(root / second / victim, damage)
        with load_index(settings) as index:  # the intact older generation serves
            assert index.generation == first, victim
        hurt(root / first / victim, damage)
        with pytest.raises(IndexCorrupt) as refused:
            load_index(settings)
        assert victim.split("/")[-1] in str(refused.value) or "manifest" in str(refused.value)


def test_manifest_records_model_counts_and_hashes(tiny_corpus, settings, fake_embedder):
    report = build(tiny_corpus, settings, fake_embedder)
    manifest = json.loads(
        (
            generations.generations_dir(settings.data_dir) / report.generation / "manifest.json"
        ).read_text()
    )
    assert manifest["model"] == "fake" and manifest["dim"] == 64
    assert manifest["counts"] == {
        "documents": 3,
        "passages": report.passages,
        "sentences": report.sentences,
    }
    assert set(manifest["files"]) >= {"store.sqlite", "sentences.npy", "passages.faiss"}


def test_unchanged_corpus_keeps_its_calibration(tiny_corpus, settings, fake_embedder):
    calls = []

    def calibrate(index):
        calls.append(index.generation)
        return {"passage": 0.2, "sentence": 0.3}

    for _ in range(2):
        build_index(read_documents([tiny_corpus], settings), settings, fake_embedder, calibrate)
    assert len(calls) == 1
    with load_index(settings) as index:
        assert index.thresholds == (0.2, 0.3)
    (tiny_corpus / "bread.txt").write_text("Baking Bread at Home\n\nA changed sentence.\n")
    build_index(read_documents([tiny_corpus], settings), settings, fake_embedder, calibrate)
    assert len(calls) == 2


def test_large_indexes_switch_to_approximate_search(monkeypatch):
    from verbatim.index import build as index_build

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))  # embeddings cluster by topic; uniform noise does not
    vectors = centres[rng.integers(0, 40, 4000)] + 0.5 * rng.normal(size=(4000, 32))
    vectors = vectors.astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 1000)
    approximate = index_build._faiss_index(vectors)
    assert type(approximate).__name__ == "IndexIVFScalarQuantizer"  # float16 lists
    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 10_000)
    exact = index_build._faiss_index(vectors)

    def near(seed: int) -> np.ndarray:  # queries near the corpus, not in it
        noise = np.random.default_rng(seed).normal(size=(200, 32)).astype(np.float32)
        queries = vectors[rng.integers(0, 4000, 200)] + 0.3 * noise
        return queries / np.linalg.norm(queries, axis=1, keepdims=True)

    probes = index_build._probes(approximate, vectors, near(1))
    assert probes["recall_at_10"] >= index_build.IVF_RECALL
    assert 8 <= probes["nprobe"] < approximate.nlist  # this corpus needs fewer than all lists
    queries = near(2)  # other questions get about what the measured ones did
    _, want = exact.search(queries, 10)
    approximate.nprobe = probes["nprobe"]
    _, got = approximate.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got, strict=True)])
    assert recall >= 0.97
    approximate.nprobe = probes["nprobe"] // 4  # and scanning fewer lists finds fewer
    assert (
        index_build._recall(
            approximate, vectors, queries, index_build._tenth_best(vectors, queries)
        )
        < recall
    )


def test_question_analysis_matches_the_indexed_analysis():
    """Questions are tokenised without bm25s.tokenize (for speed); the terms must be the same."""
    from pathlib import Path

    import bm25s

    from verbatim.index.lexical import Lexical, stemmer

    corpus = Path(__file__).resolve().parent.parent / "corpus"
    texts = [p.read_text() for p in sorted(corpus.glob("*.md"))]
    texts += [
        "Don't, won't: it's HIS therapist's e-mail (2nd visit) at 9:30, naïve café São Paulo!",
        "I I a an the The THE x y z __init__ über-ängstlich 東京 ١٢٣",
        "",
    ]
    lexical = Lexical.build(texts)
    for text in texts:
        want = bm25s.tokenize(
            [text], stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False
        )[0]
        assert lexical.tokenize(text) == want


def test_an_approximate_index_is_memory_mapped_and_answers(
    monkeypatch, tiny_corpus, settings, fake_embedder
):
    from verbatim.answer import answer
    from verbatim.index import build as index_build
    from verbatim.index import local

    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 2)
    build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        import faiss

        assert type(index.faiss).__name__ == "IndexIVFScalarQuantizer"
        assert index.faiss.nprobe == index.manifest["ivf"]["nprobe"]  # as measured at build
        lists = faiss.downcast_InvertedLists(index.faiss.invlists)
        assert type(lists).__name__ == "OnDiskInvertedLists"  # mapped, not read into memory
        rows, scores = index.search(np.asarray(index.passage_vectors[0]), 3)
        assert rows[0] == 0 and scores[0] == pytest.approx(1.0, abs=1e-3)  # float16 lists
        result = answer("How long should bread dough rise?", index, fake_embedder, settings)
        assert result.quotes or result.near_misses
        for quote in result.quotes + result.near_misses:
            assert index.text(quote.doc_id)[quote.start : quote.end] == quote.text
        manifest = {k: v for k, v in index.manifest.items() if k != "ivf"}
    with local.Index(index.path, manifest) as older:  # built before nprobe was measured
        assert older.faiss.nprobe == local.default_nprobe(older.faiss.nlist)


def test_vectors_read_from_disk_equal_the_saved_matrix(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    vectors = vector_files.Vectors(tmp_path / "m.npy")
    assert len(vectors) == 50 and vectors.shape == (50, 8)
    picks = np.array([7, 3, 4, 5, 49, 0, 0, 12])  # runs, repeats, any order
    assert np.array_equal(vectors[picks], matrix[picks])
    assert np.array_equal(vectors[3], matrix[3])
    assert np.array_equal(vectors[10:20], matrix[10:20])
    assert np.array_equal(vectors[[]], matrix[[]])
    assert np.array_equal(np.asarray(vectors), matrix)
    with pytest.raises(IndexError):
        vectors[[0, 50]]
    vectors.close()
    vectors.close()  # closing twice is harmless


def test_a_truncated_vector_file_is_reported(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((10, 4), dtype=np.float32))
    data = (tmp_path / "m.npy").read_bytes()
    (tmp_path / "m.npy").write_bytes(data[:-16])
    vectors = vector_files.Vectors(tmp_path / "m.npy")
    assert np.array_equal(vectors[:5], np.zeros((5, 4)))
    with pytest.raises(IndexCorrupt):
        vectors[9]


def test_large_vector_files_are_read_not_mapped(monkeypatch, tiny_corpus, settings, fake_embedder):
    monkeypatch.setattr(vector_files, "MAP_LIMIT", 0)
    build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        assert isinstance(index.passage_vectors, vector_files.Vectors)
        assert isinstance(index.sentence_vectors, vector_files.Vectors)
        from verbatim.answer import answer

        result = answer("How long should bread dough rise?", index, fake_embedder, settings)
        assert result.quotes or result.near_misses
        for quote in result.quotes + result.near_misses:
            assert index.text(quote.doc_id)[quote.start : quote.end] == quote.text


def test_exact_search_ranks_as_faiss_does(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        assert index._exact is not None  # a small index: one matrix-vector product
        n = index.faiss.ntotal
        for question in ["tomato pests", "bread dough", "engine oil", "nothing at all"]:
            vector = fake_embedder.encode([question])[0]
            for k in (1, 3, n, n + 5):
                rows, scores = index.search(vector, k)
                want_scores, want_rows = index.faiss.search(vector.reshape(1, -1), min(k, n))
                assert list(rows) == list(want_rows[0])
                assert np.allclose(scores, want_scores[0], atol=1e-6)


def test_term_weights_are_idf_times_information_in_english():
    from verbatim.index.lexical import Lexical, information

    texts = [
        "The Normans settled in Normandy for a long time.",
        "The Normans fought a long war with the English.",
        "A quiet village far from any war.",
        "Bread and cheese for a cold winter.",
    ]
    lexical = Lexical.build(texts)
    question = "How long did the Normans stay?"
    terms, shares = lexical.query(question)
    assert terms == ["long", "norman"]  # distinct indexed terms, in order of first use
    weights = dict(zip(terms, shares, strict=True))
    assert set(weights) == {"long", "norman"} and sum(weights.values()) == pytest.approx(1)
    # Equally rare here (each in two of four texts), but "long" is common English and
    # "Normans" is not: the question is about the Normans.
    assert lexical.idf("long") == pytest.approx(lexical.idf("norman"))
    assert weights["norman"] > 1.5 * weights["long"]  # IDF alone: 0.5 each
    assert information("the") < 2 < information("long") < information("normans") < 9
    assert information("qzxvbnm") == pytest.approx(9)  # never seen in English: most informative
    empty_terms, empty_shares = lexical.query("")
    assert empty_terms == [] and empty_shares.size == 0


def test_which_texts_hold_which_terms(tmp_path):
    """`contains` reads each text's own term ids; checked against the texts' tokens, after a
    save and load, and for an index saved before those ids were (they are computed on load)."""
    from verbatim.index.lexical import TERMS, TERMS_PTR, Lexical

    rng = np.random.default_rng(7)
    words = ["anxiety", "sleep", "partner", "therapy", "normans", "bread", "winter", "argue"]
    texts = [" ".join(rng.choice(words, size=rng.integers(0, 6))) for _ in range(60)]
    built = Lexical.build(texts)
    built.save(tmp_path / "new")
    built.save(tmp_path / "old")
    (tmp_path / "old" / TERMS).unlink()
    (tmp_path / "old" / TERMS_PTR).unlink()
    terms = [*built.query(" ".join(words))[0], "unseen"]
    rows = np.array(sorted(rng.choice(60, size=25, replace=False)))
    want = np.array([[t in built.tokenize(texts[r]) for t in terms] for r in rows])
    assert want.any() and not want.all()
    for lexical in (built, Lexical.load(tmp_path / "new"), Lexical.load(tmp_path / "old")):
        assert np.array_equal(lexical.contains(terms, rows), want)
        assert np.array_equal(lexical.contains(terms[::-1], rows[::-1]), want[::-1, ::-1])
    assert lexical.contains([], rows).shape == (25, 0)
    assert lexical.contains(terms, np.zeros(0, dtype=np.int64)).shape == (0, len(terms))
    # Threads answering at once each take a lookup table of their own, left clean after a call.
    subsets = [rng.permutation(len(terms))[: rng.integers(1, len(terms))] for _ in range(200)]

    def ask(columns: np.ndarray) -> bool:
        return np.array_equal(lexical.contains([terms[c] for c in columns], rows), want[:, columns])

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(ask, subsets))
    tables = []
    while not lexical._tables.empty():
        tables.append(lexical._tables.get())
    assert 1 <= len(tables) <= 4 and all((t == -1).all() for t in tables)
    nothing = Lexical.build(["", "a the of"])  # no indexable term at all
    nothing.save(tmp_path / "empty")
    for lexical in (nothing, Lexical.load(tmp_path / "empty")):
        assert not lexical.contains(["therapy"], np.array([0, 1])).any()


def test_quoted_texts_are_cached_within_a_bound(monkeypatch, tiny_corpus, settings, fake_embedder):
    from verbatim.index import local

    monkeypatch.setattr(local, "TEXT_CACHE", 1)
    build(tiny_corpus, settings, fake_embedder)
    with load_index(settings) as index:
        docs = sorted(index.documents)
        assert len(docs) > 1
        stored = dict(index._db.execute("SELECT id, text FROM documents"))
        for doc in [*docs, *docs]:
            assert index.text(doc) == stored[doc]
        assert index._recent_texts.cache_info().currsize == 1
        with pytest.raises(KeyError):
            index.text("no-such-document")
