"""Cross-validation by question, the whole-document dense baseline, the user's question limit in
the eval, the worst questions with their first three quotes, and bench/cv.py's fit."""

import hashlib
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import TINY_JSONL
from verbatim.engine import Engine
from verbatim.eval import (
    Report,
    Result,
    cross_validate,
    dense,
    evaluate,
    folds,
    quote_kind,
    read_questions,
    worst_lines,
)

ASKED = [
    ("q1", "How often to change engine oil?", "ten thousand", "d1"),
    ("q2", "Do tomatoes need sun?", "full sun", "d2"),
    ("q3", "How long to knead dough?", "ten minutes", "d3"),
]


def _questions(tmp_path, rows=ASKED):
    path = tmp_path / "q.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "question": q, "answers": [a], "relevant": [d]}) + "\n"
            for i, q, a, d in rows
        )
    )
    return read_questions(path)


def _result(qid: str, kind: str = "answerable", hit: bool | None = None, docs=()) -> Result:
    quotes = [{"doc_id": d, "start": 0, "end": 1, "text": "x", "role": "answer"} for d in docs]
    return Result(
        id=qid,
        question=qid,
        kind=kind,
        abstained=not docs,
        evidence=0.5,
        ranked=list(docs),
        relevant=["good"] if kind == "answerable" else [],
        quotes=quotes,
        hit1=hit,
        hit3=hit,
        checked=len(docs),
        grounded=len(docs),
        attributed=len(docs),
        letters=0,
        latency_ms=1.0,
    )


def test_folds_are_dealt_by_id_hash_within_each_kind_balanced_and_order_free():
    questions = [(f"a{i}", "answerable") for i in range(6)] + [
        (f"o{i}", "offtopic") for i in range(4)
    ]
    fold = folds.assign(questions, 3)
    assert fold == folds.assign(list(reversed(questions)), 3)  # the file's order does not matter
    by_hash = sorted(
        (f"a{i}" for i in range(6)), key=lambda q: hashlib.sha256(q.encode()).hexdigest()
    )
    assert [fold[q] for q in by_hash] == [0, 1, 2, 0, 1, 2]
    # Off-topic ones are dealt on from where the answerable left off: 6 dealt, so fold 0 first.
    off = sorted((f"o{i}" for i in range(4)), key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    assert [fold[q] for q in off] == [0, 1, 2, 0]
    assert [list(fold.values()).count(i) for i in range(3)] == [4, 3, 3]
    # The answerable questions' folds do not depend on the other kinds being there.
    alone = folds.assign(questions[:6], 3)
    assert all(alone[q] == fold[q] for q in alone)
    with pytest.raises(ValueError, match="at least 2 folds"):
        folds.assign(questions, 1)


def test_spread_is_the_sample_sd_and_its_standard_error():
    s = folds.spread([0.5, 1.0, 0.0])
    assert s == {"mean": 0.5, "sd": 0.5, "se": round(0.5 / math.sqrt(3), 4)}
    assert folds.spread([0.25]) == {"mean": 0.25, "sd": 0.0, "se": 0.0}


def test_cross_validated_means_are_the_means_of_the_folds_figures_by_hand():
    hits = {"q0": True, "q1": False, "q2": True, "q3": True, "q4": False, "q5": False}
    results = [_result(q, hit=h, docs=["good" if h else "bad"]) for q, h in hits.items()]
    results.append(_result("off", kind="offtopic"))  # abstained: must_abstain 1.0 where it lands
    report = Report(metrics={}, curve=[], results=results)
    cv = cross_validate(report, 2)
    fold = folds.assign([(r.id, r.kind) for r in results], 2)
    per_fold = [[hits[q] for q in hits if fold[q] == i] for i in range(2)]
    by_hand = [sum(f) / len(f) for f in per_fold]
    mean = sum(by_hand) / 2
    sd = math.sqrt(sum((v - mean) ** 2 for v in by_hand))  # n - 1 = 1
    assert cv["sizes"] == [4, 3] and cv["k"] == 2
    assert [f["quotes.hit@1"] for f in cv["per_fold"]] == [round(v, 4) for v in by_hand]
    assert cv["figures"]["quotes.hit@1"] == {
        "mean": round(mean, 4),
        "sd": round(sd, 4),
        "se": round(sd / math.sqrt(2), 4),
    }
    # source@1 equals hit@1 here (a hit is quoted from "good"), nDCG@10 too (one relevant).
    assert cv["figures"]["retrieval.ndcg@10"] == cv["figures"]["quotes.hit@1"]
    # The off-topic question is in one fold only: the other has no must_abstain figure.
    assert cv["figures"]["abstention.must_abstain"] is None
    assert "quotes.hit@1" in folds.lines(cv)


def test_the_dense_baseline_ranks_whole_documents_by_cosine_and_is_cached(
    tiny_engine, fake_embedder, tmp_path
):
    store, settings = tiny_engine.answering, tiny_engine.settings
    cache = tmp_path / "dense"
    ids, vectors = dense.document_vectors(store, fake_embedder, settings, cache)
    assert ids == ["d1", "d2", "d3"]
    texts = [
        f"{d['title']}\n{d['text']}" for d in TINY_JSONL
    ]  # title, then text, as the model reads
    assert np.allclose(vectors, fake_embedder.encode(texts))
    q = fake_embedder.encode(["Do tomatoes need sun?"])[0]
    by_hand = [ids[i] for i in np.argsort(-(vectors @ q), kind="stable")]
    assert dense.rank(ids, vectors, q) == by_hand and by_hand[0] == "d2"
    calls = fake_embedder.calls
    again = dense.document_vectors(store, fake_embedder, settings, cache)
    assert fake_embedder.calls == calls  # read from the cache, not embedded again
    assert again[0] == ids and np.array_equal(again[1], vectors)


def test_eval_reports_the_baseline_beside_its_own_figures(tiny_engine, fake_embedder, tmp_path):
    report = evaluate(_questions(tmp_path), tiny_engine, progress=False)
    docs = fake_embedder.encode([f"{d['title']}\n{d['text']}" for d in TINY_JSONL])
    asked = fake_embedder.encode([q for _, q, _, _ in ASKED])
    by_hand = [[TINY_JSONL[i]["id"] for i in np.argsort(-(docs @ q), kind="stable")] for q in asked]
    assert [r.dense_ranked for r in report.results] == by_hand
    # The bag-of-words vectors put "Oil" first for the dough question too (hash collisions).
    assert [ranked[0] for ranked in by_hand] == ["d1", "d2", "d1"]
    second = 1 / math.log2(3)  # d3 at rank 2 for q3
    assert report.metrics["dense_baseline"] == {
        "ndcg@10": round((1 + 1 + second) / 3, 4),
        "recall@1": round(2 / 3, 4),
        "recall@10": 1.0,
        "source@1": round(2 / 3, 4),
    }
    assert by_hand[2][1] == "d3"
    assert "nDCG@10" in dense.comparison(report.metrics)
    off = evaluate(_questions(tmp_path), tiny_engine, progress=False, baseline=False)
    assert "dense_baseline" not in off.metrics and off.results[0].dense_ranked is None


def test_a_question_over_the_users_limit_is_refused_and_counted_not_raised(tiny_engine, tmp_path):
    limit = len("Do tomatoes need sun?")  # q2 fits exactly; q1 and q3 are longer
    engine = Engine(
        tiny_engine.settings.model_copy(update={"max_question_chars": limit}),
        tiny_engine.index,
        tiny_engine.embedder,
    )
    report = evaluate(_questions(tmp_path), engine, progress=False)
    m = report.metrics
    assert [r.refused for r in report.results] == ["too long", None, "too long"]
    assert m["questions"]["refused (too long)"] == 2 and m["questions"]["answerable"] == 3
    assert m["quotes"]["hit@1"] == round(1 / 3, 4)  # refused: scored as no answer
    assert m["abstention"]["false_abstained"] == round(2 / 3, 4)
    assert m["retrieval"]["ndcg@10"] == round(1 / 3, 4)
    # The baseline still ranks them, as without the limit (see the test above).
    assert m["dense_baseline"]["ndcg@10"] == round((2 + 1 / math.log2(3)) / 3, 4)


def test_worst_shows_three_quotes_with_their_kind_and_the_first_right_rank(tiny_engine, tmp_path):
    rows = [*ASKED, ("miss", "How often to change engine oil?", "zzz", "d3")]
    report = evaluate(_questions(tmp_path, rows), tiny_engine, progress=False)
    miss = next(r for r in report.results if r.id == "miss")
    assert miss.first_right is None and miss.quotes[0]["kind"] == "prose"
    assert [r.first_right for r in report.results if r.id != "miss"] == [1, 1, 1]
    text = worst_lines(report, 1)
    assert text.splitlines()[1].startswith("miss: first relevant document at")
    assert "first quote with a gold answer at none in the first" in text
    assert "  1. [prose] d1: " in text
    shown = min(3, len(miss.quotes))
    assert (
        sum(line.startswith(f"  {i}. [prose]") for i in (1, 2, 3) for line in text.splitlines())
        == shown
    )


def test_quote_kind_reads_the_block_kind_a_quote_carries():
    assert quote_kind(SimpleNamespace(kind="prose", lead_in=False)) == "prose"
    assert quote_kind(SimpleNamespace(kind="code", lead_in=False)) == "code"
    assert quote_kind(SimpleNamespace(kind="code", lead_in=True)) == "lead-in + code"


def test_eval_command_prints_and_writes_the_folds(fake_model, tiny_corpus, tmp_path):
    from verbatim.cli import cli

    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "a", "question": "How often to change the oil?", "answers": ["oil"]})
        + "\n"
        + json.dumps({"id": "b", "question": "When do tomatoes get planted?", "answers": ["frost"]})
        + "\n"
    )
    out = tmp_path / "r.json"
    args = [
        "eval",
        str(questions),
        "--corpus",
        str(tiny_corpus),
        "--folds",
        "2",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(cli, [*args, "--worst", "1", "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "cross-validated over 2 folds" in result.output and "1. [prose]" in result.output
    written = json.loads(out.read_text())
    assert written["folds"]["k"] == 2 and written["folds"]["sizes"] == [1, 1]


def test_cv_fits_on_the_other_folds_and_scores_the_left_out_one():
    from bench.cv import fit

    # Two values, four questions in two folds. Value 1 is better on fold 0, value 2 on fold 1.
    fold = {"a": 0, "b": 0, "c": 1, "d": 1}
    hits = {
        1: {"a": True, "b": True, "c": False, "d": False},
        2: {"a": False, "b": False, "c": True, "d": True},
    }
    by_value = {
        v: [_result(q, hit=h, docs=["good"]) for q, h in hs.items()] for v, hs in hits.items()
    }
    out = fit(by_value, fold, 2, "quotes.hit@1", current=1)
    # Fold 0 is scored with the value best on fold 1 (2), which misses there: 0; and vice versa.
    assert out["chosen"] == [2, 1]
    assert out["fitted_cv"]["mean"] == 0.0 and out["current_cv"]["mean"] == 0.5
    assert out["difference"] == folds.spread([-1.0, 0.0])
    assert out["pooled"] == {"1": 0.5, "2": 0.5}
