"""`Lexical.best`: the BM25 top of a large index, ranked above a floor, is the top of ranking
every score."""

import numpy as np
import pytest

from verbatim.index import lexical as lexical_module
from verbatim.index.lexical import Lexical

WORDS = [f"w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def lexical() -> Lexical:
    rng = np.random.default_rng(0)
    # word frequencies fall off as in text: a few words in most texts, most in a few
    draws = rng.zipf(1.3, size=(3000, 12)) % len(WORDS)
    return Lexical.build([" ".join(WORDS[w] for w in row) for row in draws])


def _ranked(scores: np.ndarray, n: int) -> list[float]:
    return sorted(np.sort(scores[scores > 0])[::-1][:n].tolist())


@pytest.mark.parametrize("n", [1, 10, 50])
def test_the_floor_keeps_the_exact_top(lexical, monkeypatch, n):
    monkeypatch.setattr(lexical_module, "FLOOR_ABOVE", 0)  # the path of a large index
    rng = np.random.default_rng(1)
    ranked_on_floor = 0
    for _ in range(100):
        terms = lexical.tokenize(" ".join(rng.choice(WORDS, rng.integers(1, 8))))
        allowed = rng.random(lexical.size) < 0.3 if rng.random() < 0.5 else None
        want = lexical.scores(terms)
        if allowed is not None:
            want = np.where(allowed, want, 0.0)
        rows, scores = lexical.best(terms, n, allowed)
        assert np.array_equal(scores, want)
        assert sorted(scores[rows].tolist()) == _ranked(want, n)  # the same scores, ties aside
        assert len(set(rows.tolist())) == len(rows)
        assert allowed is None or allowed[rows].all()
        ranked_on_floor += lexical._floor(want, terms, n) > 0
    assert ranked_on_floor >= 30  # the floor was used, not only its fallback of 0


def test_a_small_index_ranks_every_score(lexical):
    terms = lexical.tokenize("w1 w5 w40")
    rows, scores = lexical.best(terms, 10)
    assert sorted(scores[rows].tolist()) == _ranked(lexical.scores(terms), 10)
    empty_rows, empty = lexical.best([], 10)
    assert len(empty_rows) == 0 and not empty.any()


def test_scores_are_bm25s_own_float_for_float(lexical, tmp_path):
    """`scores` sums each term's postings with scipy's sparse loop; the result must be the very
    floats bm25s's `get_scores` (np.add.at, term by term) gives, on a saved and memory-mapped
    index too."""
    lexical.save(tmp_path / "bm25")
    loaded = Lexical.load(tmp_path / "bm25")
    rng = np.random.default_rng(2)
    for index in (lexical, loaded):
        for _ in range(50):
            terms = index.tokenize(" ".join(rng.choice(WORDS, rng.integers(1, 12))))
            terms += ["unindexed"]  # a term no text holds counts for nothing, as in bm25s
            got = index.scores(terms)
            assert got.dtype == np.float32 and got.shape == (index.size,)
            assert np.array_equal(got, index.retriever.get_scores(terms))
            assert got.any()
    assert not lexical.scores([]).any()
