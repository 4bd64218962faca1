"""`LexicalWriter`: BM25 written from batches of texts, in bounded memory, equals bm25s's own
index of the same texts float for float, and a writer reopened after a crash goes on."""

from pathlib import Path

import numpy as np
import pytest

from verbatim.index import lexical as lexical_module
from verbatim.index.lexical import EMPTY, TERMS, Lexical, LexicalWriter

WORDS = ["running", "runs", "the", "Normans", "norman", "Ünïcode", "x", "a1", "tax", "of"]


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, rng.integers(1, 12))) for _ in range(n)]
    return texts + ["", "the of a", "!!", "w" * 40]  # no word, stop words only, punctuation


def _written(path: Path, batches: list[list[str]]) -> Lexical:
    writer = LexicalWriter(path)
    for batch in batches:
        writer.add(batch)
    writer.finish()
    return Lexical.load(path)


def _assert_same(built: Lexical, written: Lexical) -> None:
    assert written.size == built.size
    terms, idf = built.vocabulary()
    assert sorted(written.vocabulary()[0]) == sorted(terms)
    for term in [t for t in terms if t]:  # "": bm25s's empty term, never asked
        assert written.idf(term) == built.idf(term)
        # the same floats, not merely close: scores are summed the same way as bm25s's
        assert np.array_equal(written.scores([term]), built.scores([term])), term
        rows = np.arange(built.size)
        assert np.array_equal(written.contains([term], rows), built.contains([term], rows))
    question = ["run", "norman", "tax", "ünïcod"]
    assert np.array_equal(written.scores(question), built.scores(question))


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_the_written_index_equals_bm25s(tmp_path, batch):
    texts = _texts(300)
    written = _written(tmp_path / "w", [texts[i : i + batch] for i in range(0, len(texts), batch)])
    _assert_same(Lexical.build(texts), written)
    assert not [p.name for p in (tmp_path / "w").iterdir() if p.name.startswith(".")]


def test_the_matrix_is_written_a_few_terms_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(lexical_module, "FINISH_POSTINGS", 5)
    monkeypatch.setattr(lexical_module, "READ_TEXTS", 3)
    texts = _texts(200, seed=1)
    _assert_same(Lexical.build(texts), _written(tmp_path / "w", [texts]))


def test_texts_without_a_term_make_an_empty_index(tmp_path):
    written = _written(tmp_path / "w", [["the of", "a an"]])
    assert (tmp_path / "w" / EMPTY).exists() and written.size == 2
    assert not written.scores(["the"]).any()


def test_a_writer_reopened_with_its_state_goes_on(tmp_path):
    texts = _texts(120, seed=2)
    writer = LexicalWriter(tmp_path / "w")
    writer.add(texts[:50])
    state = writer.state()
    writer.add(texts[50:90])  # written but never recorded: a crash before the next state
    writer.state()
    del writer
    again = LexicalWriter(tmp_path / "w", state)
    again.add(texts[50:])
    again.finish()
    _assert_same(Lexical.build(texts), Lexical.load(tmp_path / "w"))
    assert (tmp_path / "w" / TERMS).exists()
