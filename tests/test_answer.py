"""Answers: grounding, attribution, roles and abstention with the real model on the bundled
corpus (`slow`); question checks, quote windows and selection with the fake embedder."""

import pytest

from verbatim.answer import clean_question, text_fragment_link
from verbatim.errors import InvalidQuestion
from verbatim.settings import Settings

QUESTIONS = [
    "How can I get my partner to go to therapy?",
    "What if my husband refuses couples therapy?",
    "Will insurance pay for couples counselling?",
    "Should I threaten to leave if he won't go?",
    "Why are men reluctant to see a therapist?",
    "Is individual therapy enough to fix our relationship?",
    "What should I do if arguing about therapy makes it worse?",
    "How do I find a therapist for my partner?",
    "What if he had a bad experience with a therapist before?",
    "Should my partner contact the therapist first?",
]


def check_grounded(engine, quote):
    doc = engine.index.document(quote.doc_id)
    assert quote.text == doc.text[quote.start : quote.end]
    assert quote.passage_start <= quote.start < quote.end <= quote.passage_end
    assert quote.content_hash == doc.content_hash
    assert quote.title == doc.title and quote.author == doc.author and quote.url == doc.url


@pytest.mark.slow
@pytest.mark.parametrize("question", QUESTIONS)
def test_every_quote_is_exact_and_attributed(default_engine, question):
    result = default_engine.ask(question, k=5)
    assert not result.abstained, result.reason
    assert result.quotes
    for quote in result.quotes + result.near_misses:
        check_grounded(default_engine, quote)
        assert quote.role != "letter"


@pytest.mark.slow
def test_partner_question_quotes_both_articles_and_the_reply(default_engine):
    result = default_engine.ask("How can I get my partner to go to therapy?")
    docs = {q.doc_id for q in result.quotes}
    assert docs == {"rewire-convince-partner-therapy", "husband-wont-go-to-therapy"}
    column = [q for q in result.quotes if q.doc_id == "rewire-convince-partner-therapy"]
    assert all(q.role == "reply" for q in column)
    assert all("Dear Ask Me Instead" not in q.text for q in result.quotes)


@pytest.mark.slow
def test_quotes_link_to_the_source_with_a_text_fragment(default_engine):
    result = default_engine.ask("How can I get my partner to go to therapy?")
    column = next(q for q in result.quotes if q.url)
    assert column.link.startswith("https://www.rewire.org/therapy-partner-ask-me-instead/#:~:text=")
    assert all(q.link is None for q in result.quotes if not q.url)


def test_no_three_quotes_from_one_passage(tmp_path, settings, fake_embedder):
    """A passage gives at most one quote: its best window. Selection holds to that even when
    several windows of one passage are candidates (they collapse, as repeated passages do)."""
    from verbatim.answer import _Candidate, _select, answer
    from verbatim.index import build_index, load_index
    from verbatim.ingest import read_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kites.md").write_text(" ".join(f"Kite {n} flies in the wind." for n in range(6)))
    (docs / "bread.md").write_text("Knead the dough for ten minutes. The wind is cold.")
    build_index(read_documents([docs], settings), settings, fake_embedder)
    with load_index(settings) as index:
        kites = index.passage_doc.index("kites")
        bread = index.passage_doc.index("bread")
        lo = int(index.sent_lo[kites])
        assert int(index.sent_hi[kites]) - lo == 6  # one passage of six kite sentences
        three = [_Candidate(kites, 1.0 - n / 10, (lo + n, lo + n + 1)) for n in range(3)]
        first = int(index.sent_lo[bread])
        other = _Candidate(bread, 0.5, (first, first + 1))
        quotes = _select(index, [*three, other], k=10)
        assert [q.doc_id for q in quotes] == ["kites", "bread"]
        assert quotes[0].text == "Kite 0 flies in the wind."  # the best of the three windows
        result = answer("kites in the wind", index, fake_embedder, settings, k=10)
        passages = [q.passage_id for q in result.quotes + result.near_misses]
        assert passages and len(passages) == len(set(passages))


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "How long should I roast a chicken?",
        "What is the capital gains tax rate?",
        "Who won the Super Bowl?",
        "How do I sort a dictionary in Python?",
    ],
)
def test_off_topic_questions_are_abstained_with_near_misses(default_engine, question):
    result = default_engine.ask(question)
    assert result.abstained and result.quotes == []
    assert "don't address" in result.reason
    assert result.near_misses
    for quote in result.near_misses:
        check_grounded(default_engine, quote)


@pytest.mark.parametrize("bad", ["", "   \n\t ", "x" * 100_000])
def test_bad_questions_are_refused(bad):
    with pytest.raises(InvalidQuestion):
        clean_question(bad, Settings())


def test_question_is_normalised():
    assert clean_question("  ｈｅｌｌｏ\n  there ", Settings()) == "hello there"
    assert clean_question("a\x1e\x00b\x7f", Settings()) == "a b"
    with pytest.raises(InvalidQuestion):
        clean_question("\x1e\x1f", Settings())


def test_text_fragment_link_encoding():
    link = text_fragment_link("https://a.org/x#old", "One-two, three & four.")
    assert link == "https://a.org/x#:~:text=One%2Dtwo%2C%20three%20%26%20four."
    assert text_fragment_link("javascript:alert(1)", "x") is None
    long = text_fragment_link("https://a.org/", "a b c d e f g h i j")
    assert long.endswith("#:~:text=a%20b%20c%20d,g%20h%20i%20j")


def test_window_scores_are_the_cosine_of_the_mean_sentence_vector(
    tiny_corpus, settings, fake_embedder
):
    """The closed form in `_best_windows` (sentence cosines and neighbours' dot products)
    gives what the mean vector of each window gives, computed directly."""
    import numpy as np

    from verbatim.answer import EXTRA_SENTENCE, MAX_WINDOW, _best_windows, retrieve
    from verbatim.index import build_index, load_index
    from verbatim.ingest import read_documents

    build_index(read_documents([tiny_corpus], settings), settings, fake_embedder)
    with load_index(settings) as index:
        found = retrieve("water the tomato plants", index, fake_embedder, settings)
        windows = _best_windows(found, index, found.rows)
        for row, (lo, hi, score) in zip(found.rows, windows, strict=True):
            first, end = int(index.sent_lo[row]), int(index.sent_hi[row])
            best = None
            for start in range(first, end):
                for stop in range(start + 1, min(start + MAX_WINDOW, end) + 1):
                    mean = np.asarray(index.sentence_vectors[start:stop]).sum(axis=0)
                    cosine = mean @ found.vector / np.linalg.norm(mean)
                    rows = np.arange(start, stop)
                    at = np.searchsorted(found.sentences, rows)
                    covered = found.sentence_has[at].any(axis=0) @ found.weights
                    value = cosine + 0.5 * covered - EXTRA_SENTENCE * (stop - start - 1)
                    if best is None or value > best[2] + 1e-9:
                        best = (start, stop, value)
            assert (lo, hi) == best[:2]
            assert score == pytest.approx(best[2], abs=1e-5)


def test_an_open_engine_runs_blas_single_threaded(tiny_corpus, settings, fake_embedder):
    """A second BLAS thread only fights the model's threads for the cores (eval/README.md)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from verbatim.engine import ingest_paths, open_engine

    ingest_paths([tiny_corpus], settings, fake_embedder)
    # Two threads first, so that the engine must set one; the other tests get theirs back.
    with threadpool_limits(limits=2, user_api="blas"):
        engine = open_engine(settings, fake_embedder)
        blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
        engine.close()
    assert blas and all(pool["num_threads"] == 1 for pool in blas)
