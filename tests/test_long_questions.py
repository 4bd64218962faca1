"""Long questions (#30 item 2) and the document vectors answering fuses (#30 item 6), on the fake
embedder: what the model reads of a question, the default limit, and documents.npy."""

import numpy as np
import pytest

from tests.conftest import FakeEmbedder
from verbatim import answer as answering
from verbatim.answer import QUESTION_WORDS, clean_question, embed_question, question_pieces
from verbatim.errors import InvalidQuestion
from verbatim.index import documents as document_vectors
from verbatim.settings import Settings

SENTENCE = "My partner and I argue about money every week and I feel anxious."  # 13 words


def test_a_short_question_is_read_whole_in_one_call():
    embedder = FakeEmbedder()
    text = " ".join([SENTENCE] * (QUESTION_WORDS // 13))
    vector = embed_question(text, embedder)
    assert question_pieces(text) == [text]
    assert embedder.calls == 1 and embedder.texts == 1
    assert np.array_equal(vector, FakeEmbedder().encode([text])[0])


def test_a_long_question_is_read_in_pieces_of_whole_sentences_every_word_kept():
    text = " ".join([SENTENCE] * 40) + " What should I do?"  # 524 words
    pieces = question_pieces(text)
    assert len(pieces) >= 4
    assert all(len(p.split()) <= answering.PIECE_WORDS for p in pieces)
    assert " ".join(pieces) == text  # in order, nothing left out, nothing added
    assert all(p.endswith((".", "?")) for p in pieces)  # cut between sentences
    assert pieces[-1].endswith("What should I do?")


def test_a_run_on_sentence_is_cut_between_words():
    text = " ".join(f"word{i}" for i in range(400))
    pieces = question_pieces(text)
    assert [len(p.split()) for p in pieces] == [150, 150, 100]
    assert " ".join(pieces) == text


def test_a_long_questions_vector_is_the_word_weighted_mean_of_its_pieces():
    embedder = FakeEmbedder()
    text = " ".join([SENTENCE] * 20) + " " + " ".join(["Why do we fight about bills?"] * 10)
    vector = embed_question(text, embedder)
    pieces = question_pieces(text)
    assert embedder.calls == 1 and embedder.texts == len(pieces) > 1
    units = FakeEmbedder().encode(pieces)
    words = np.array([len(p.split()) for p in pieces], dtype=np.float32)
    mean = words @ units
    assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-6)
    assert abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    # The last words count: the question differs from its first piece's own vector.
    assert float(vector @ units[0]) < 0.999


def test_the_default_limit_takes_what_people_write_and_refuses_beyond():
    settings = Settings()
    assert settings.max_question_chars >= 10_000
    assert clean_question("x" * settings.max_question_chars, settings)
    with pytest.raises(InvalidQuestion, match="VERBATIM_MAX_QUESTION_CHARS"):
        clean_question("x" * (settings.max_question_chars + 1), settings)


def test_documents_have_their_own_vector_and_each_candidate_its_documents_cosine(shared_engine):
    index = shared_engine.index
    assert index.manifest["document_vectors"] == document_vectors.DOCUMENT_VECTORS
    ids = sorted(index.documents)
    stored = np.asarray(index.document_vectors.vectors)
    texts = [document_vectors.document_text(index.documents[d].title, index.text(d)) for d in ids]
    assert np.allclose(stored, FakeEmbedder().encode(texts), atol=1e-6)
    question = FakeEmbedder().encode(["How often should I change the engine oil?"])[0]
    terms, _ = index.query_terms("How often should I change the engine oil?")
    found = index.candidates(question, terms, 10)
    expected = [stored[ids.index(d)] @ question for d in found.passages.doc]
    assert np.allclose(found.document, expected, atol=1e-6)


def test_a_reingest_reuses_unchanged_documents_vectors(tiny_corpus, settings):
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index

    ingest_paths([tiny_corpus], settings, FakeEmbedder())
    (tiny_corpus / "bread.txt").write_text("Baking Bread\n\nKnead it well.\n", encoding="utf-8")
    asked: list[str] = []

    class Recording(FakeEmbedder):
        def encode(self, texts, progress=None):
            asked.extend(texts)
            return super().encode(texts, progress)

    ingest_paths([tiny_corpus], settings, Recording())
    with load_index(settings) as index:
        ids = sorted(index.documents)
        stored = np.asarray(index.document_vectors.vectors)
        texts = [
            document_vectors.document_text(index.documents[d].title, index.text(d)) for d in ids
        ]
    assert np.allclose(stored, FakeEmbedder().encode(texts), atol=1e-6)
    embedded = [t for t in texts if t in asked]
    assert len(embedded) == 1 and "Knead it well" in embedded[0]


def test_the_document_weight_moves_passages_by_their_documents_cosine(shared_engine, monkeypatch):
    settings = shared_engine.settings
    question = "Knead the dough"
    monkeypatch.setattr(answering, "DOCUMENT_WEIGHT", 0.0)
    before = answering.retrieve(question, shared_engine.index, shared_engine.embedder, settings)
    monkeypatch.setattr(answering, "DOCUMENT_WEIGHT", 1.0)
    after = answering.retrieve(question, shared_engine.index, shared_engine.embedder, settings)
    found = shared_engine.index.candidates(before.vector, before.terms, answering.CANDIDATES)
    cosine = dict(zip(found.passages.rows.tolist(), found.document.tolist(), strict=True))
    shift = {int(r): float(s) for r, s in zip(after.rows, after.scores, strict=True)}
    for row, score in zip(before.rows, before.scores, strict=True):
        assert abs(shift[int(row)] - score - cosine[int(row)]) < 1e-5


def test_a_long_question_is_answered_on_every_surface_at_the_default_limit(
    tiny_corpus, settings, fake_embedder
):
    from fastapi.testclient import TestClient

    from verbatim.engine import ingest_paths, open_engine
    from verbatim.server import create_app

    assert "max_question_chars" not in settings.model_fields_set  # the default limit
    ingest_paths([tiny_corpus], settings, fake_embedder)
    question = " ".join(["My engine oil looks dark and I worry about the warranty."] * 150)
    assert 8_000 < len(question) <= settings.max_question_chars
    engine = open_engine(settings, fake_embedder)
    with TestClient(create_app(settings, engine=engine)) as client:
        posted = client.post("/api/ask", json={"question": question})
        assert posted.status_code == 200 and posted.json()["quotes"]
        assert client.get("/api/ask", params={"q": question}).status_code == 200
        page = client.get("/", params={"q": question})
        assert page.status_code == 200 and 'maxlength="10000"' in page.text
        over = client.post("/api/ask", json={"question": "x" * (settings.max_question_chars + 1)})
        assert over.status_code == 422
    engine.close()


def test_document_vectors_written_a_few_at_a_time_equal_those_written_at_once(
    tiny_corpus, settings, monkeypatch
):
    """A build embeds and writes document vectors `BLOCK` documents at a time (#34: a block
    holds each document's first 10,000 characters); blocks of one give the same file."""
    from verbatim.engine import ingest_paths
    from verbatim.index import load_index

    written = []
    for block, collection in ((document_vectors.BLOCK, "whole"), (1, "ones")):
        monkeypatch.setattr(document_vectors, "BLOCK", block)
        local = settings.model_copy(update={"collection": collection})
        ingest_paths([tiny_corpus], local, FakeEmbedder())
        with load_index(local) as index:
            assert len(index.documents) > 1
            written.append(np.asarray(index.document_vectors.vectors))
    assert np.array_equal(written[0], written[1])
