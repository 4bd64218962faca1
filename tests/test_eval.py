import json
import math
from pathlib import Path

import pytest

from tests.conftest import TINY_JSONL
from verbatim.eval import _check, evaluate, load_questions, read_questions
from verbatim.eval.metrics import (
    coverage_precision,
    mrr_at,
    ndcg_at,
    normalize,
    percentile,
    quote_hit,
    recall_at,
)
from verbatim.eval.report import gate
from verbatim.index import build_index
from verbatim.ingest import read_documents

ROOT = Path(__file__).resolve().parent.parent


def test_quote_hit_normalises_case_space_and_quote_marks():
    quotes = ["He said “don’t  GO”\nthere.", "Other text."]
    assert quote_hit(quotes, ['said "don\'t go" there'], 1)
    assert not quote_hit(quotes, ["other text"], 1)
    assert quote_hit(quotes, ["other text"], 2)
    assert not quote_hit([], ["x"], 3) and not quote_hit(quotes, [], 3)
    assert normalize("  A\u00a0B ") == "a b"


def test_ranking_metrics_by_hand():
    ranked = ["a", "b", "c", "d"]
    assert recall_at(ranked, {"b", "z"}, 1) == 0.0
    assert recall_at(ranked, {"b", "z"}, 2) == 0.5
    assert recall_at(ranked, set(), 5) == 0.0  # no relevant documents
    assert recall_at([], {"a"}, 5) == 0.0  # empty results
    assert mrr_at(ranked, {"c"}) == pytest.approx(1 / 3)
    assert mrr_at(ranked, {"z"}) == 0.0
    # relevant at ranks 2 and 4, two relevant: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3))
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at(ranked, {"b", "d"}) == pytest.approx(expected)
    assert ndcg_at(ranked, {"a"}) == 1.0
    assert ndcg_at(ranked, set()) == 0.0
    assert ndcg_at(["a", "a2"], {"a", "b"}, k=1) == 1.0  # ideal is cut at k too


def test_percentile_and_curve_with_ties():
    assert percentile([], 50) == 0.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5, 5, 5], 95) == 5
    rows = coverage_precision([0.5, 0.5, 0.9], [0.5, 0.1], [0.0, 0.5, 0.6, 1.0])
    assert rows[0] == (0.0, 1.0, 0.6)  # everything answered: 3 right of 5
    assert rows[1] == (0.5, 1.0, 0.75)  # ties at the threshold are answered
    assert rows[2] == (0.6, pytest.approx(1 / 3), 1.0)
    assert rows[3] == (1.0, 0.0, 1.0)  # nothing answered: precision defined as 1


def test_seed_gold_answers_exist_in_the_corpus():
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "corpus").glob("*.md")]
    questions = read_questions(ROOT / "eval" / "seeds.jsonl")
    answerable = [q for q in questions if q.answerable]
    assert len(answerable) >= 30 and len(questions) - len(answerable) >= 15
    for q in answerable:
        assert q.answers and q.relevant
        for gold in q.answers:
            assert any(gold in text for text in texts), gold


QUESTIONS = [
    {
        "id": "q1",
        "question": "How often to change engine oil?",
        "answers": ["ten thousand"],
        "relevant": ["d1"],
        "answerable": True,
    },
    {
        "id": "q2",
        "question": "Do tomatoes need sun?",
        "answers": ["full sun"],
        "relevant": ["d2"],
        "answerable": True,
    },
    {
        "id": "q3",
        "question": "How long to knead dough?",
        "answers": ["ten minutes"],
        "relevant": ["d3"],
        "answerable": True,
    },
]


def test_evaluate_on_a_tiny_corpus(tiny_engine, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    report = evaluate(read_questions(path), tiny_engine, progress=False)
    m = report.metrics
    assert m["questions"]["answerable"] == 3
    assert m["grounding"]["exact"] == 1.0 and m["grounding"]["attribution_complete"] == 1.0
    assert m["retrieval"]["recall@1"] == 1.0 and m["quotes"]["hit@1"] == 1.0
    assert [r.ranked[0] for r in report.results] == ["d1", "d2", "d3"]


def test_beir_reader_gives_the_same_figures(tiny_engine, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(
            json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}) + "\n"
            for d in TINY_JSONL
        )
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q["id"], "text": q["question"]}) + "\n" for q in QUESTIONS)
    )
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q['id']}\t{q['relevant'][0]}\t1\n" for q in QUESTIONS)
    )
    from_beir, corpus = load_questions(beir)
    assert corpus == beir / "corpus.jsonl"
    ours = evaluate(read_questions(path), tiny_engine, progress=False).metrics
    theirs = evaluate(from_beir, tiny_engine, progress=False).metrics
    assert ours["retrieval"] == theirs["retrieval"]
    assert ours["grounding"] == theirs["grounding"]
    assert ours["abstention"] == theirs["abstention"]


def test_a_corrupted_quote_offset_is_caught(tiny_engine):
    answer = tiny_engine.ask("How often to change engine oil?")
    quote = (answer.quotes or answer.near_misses)[0]
    assert _check(tiny_engine.index, quote) == (True, True)
    quote.start += 1
    grounded, _ = _check(tiny_engine.index, quote)
    assert not grounded


def test_gate_reports_each_failure():
    class R:
        metrics = {
            "grounding": {"exact": 0.99},
            "quotes": {"hit@3": 0.95},
            "abstention": {"must_abstain": 0.5, "false_abstained": 0.2},
        }

    failures = gate(R())
    assert len(failures) == 3
    assert any("grounding" in f for f in failures) and any("false" in f for f in failures)


def test_scale_corpus_has_one_passage_per_paragraph_and_real_code_finds_it(tmp_path):
    """`make scale` relies on this: n paragraphs in, n passages through the real ingest."""
    import numpy as np

    from bench.scale import (
        DOCS_PER_FILE,
        FILTERS,
        PASSAGES_PER_DOC,
        Jitter,
        Known,
        _document,
        paragraph,
        settings_for,
        write_corpus,
    )
    from verbatim.index import load_index
    from verbatim.index.catalog import Catalog
    from verbatim.ingest import split_passages
    from verbatim.records import DocumentMeta
    from verbatim.settings import Settings

    sentences = [
        f"Sentence {i} is about topic {i % 7} at length, and then some more. " * 2
        for i in range(40)
    ]
    write_corpus(tmp_path / "corpus", sentences, 120)
    settings = settings_for(tmp_path)
    docs = read_documents([tmp_path / "corpus"], settings).documents
    assert len(docs) == 3
    assert sum(len(split_passages(d, settings.passage_chars)) for d in docs) == 120
    base = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    jitter = Jitter(base)
    assert jitter.dim == 16
    vectors = jitter.encode(["a", "b", "a"])
    assert np.array_equal(vectors[0], vectors[2]) and not np.array_equal(vectors[0], vectors[1])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    build_index(read_documents([tmp_path / "corpus"], settings), settings, jitter)
    with load_index(settings) as index:
        assert index.faiss.ntotal == 120
        assert index.documents["doc2"].author == "Author 2"
    metas = {  # the scale run's filters match the share of documents they say
        d["id"]: DocumentMeta(d["id"], "", d["author"], d["date"], None, None, "", "", "{}")
        for d in (_document(n, "text") for n in range(1000))
    }
    catalog = Catalog(metas, list(metas))
    for share, filters in FILTERS.items():
        assert catalog.documents(filters).mean() == int(share[:-1]) / 100
    # a file of the scale corpus is read, not skipped as too large (it was, at 2,000 documents)
    rng = np.random.default_rng(0)
    body = "\n\n".join(paragraph(f"9.{j}:", sentences, rng) for j in range(PASSAGES_PER_DOC))
    one = len(json.dumps(_document(99_999, body)).encode()) + 1
    assert one * DOCS_PER_FILE < Settings().max_file_bytes
    known = Known({"q1": vectors[0], "q2": vectors[1]})
    assert known.dim == 16 and np.array_equal(known.encode(["q2", "q1"]), vectors[[1, 0]])


def test_source_at_1_counts_the_first_quote_and_abstentions_as_misses():
    from verbatim.eval import Result, _report

    def result(quotes, abstained=False):
        return Result(
            id="q", question="q", kind="answerable", abstained=abstained, evidence=0.5,
            ranked=["a", "b"], relevant=["a"], quotes=[{"doc_id": d} for d in quotes],
            hit1=None, hit3=None, checked=0, grounded=0, attributed=0, letters=0, latency_ms=1.0,
        )  # fmt: skip

    report = _report([result(["a", "b"]), result(["b", "a"]), result([], abstained=True)])
    assert report.metrics["quotes"]["source@1"] == round(1 / 3, 4)  # figures keep 4 places
    # Documents are ranked as shown (the quotes' order); retrieval's own order is a diagnostic.
    assert report.metrics["retrieval"]["recall@1"] == round(1 / 3, 4)
    assert report.metrics["retrieval_order"]["recall@1"] == 1.0


def test_worst_questions_come_first_with_their_rank_and_first_quote(tiny_engine, tmp_path):
    from verbatim.eval import worst

    path = tmp_path / "q.jsonl"
    rows = [*QUESTIONS, {**QUESTIONS[0], "id": "miss", "relevant": ["d3"], "answers": ["zzz"]}]
    path.write_text("".join(json.dumps(q) + "\n" for q in rows))
    report = evaluate(read_questions(path), tiny_engine, progress=False)
    first = worst(report, 1)[0]
    assert first.id == "miss" and first.hit1 is False
    assert first.first_quote == report.results[0].first_quote  # the same question, asked again
    assert all(r.first_relevant == 1 for r in report.results if r.id != "miss")
    assert len(worst(report, 10)) == len(rows)


def _module_file(name: str) -> Path | None:
    """The file a `verbatim` module is imported from (the package-dir mapping applied), if any."""
    import importlib.util

    if name.split(".")[0] != "verbatim":
        return None
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # `from verbatim.answer import retrieve`: not a module
        return None
    return Path(spec.origin).resolve() if spec and spec.origin else None


def _project_imports(path: Path) -> set[Path]:
    """The files of the `verbatim` modules that `path` imports, at the top or in a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {f for f in map(_module_file, names) if f is not None}
    return found


def test_cached_eval_indexes_cover_all_code_that_builds_them():
    """Every project module that building an eval index runs (`verbatim.engine`, which ingests,
    calibrates and opens it, and all it imports) is part of the cache key, so a change to any
    rebuilds cached eval indexes. The stored thresholds come from `answer.retrieve_by_vector`,
    whose questions include `offtopic.txt`."""
    from verbatim.eval import pipeline_files

    reached, todo = set(), [_module_file("verbatim.engine")]
    while todo:
        path = todo.pop()
        if path not in reached:
            reached.add(path)
            todo += _project_imports(path)
    covered = set(pipeline_files())
    init = _module_file("verbatim")
    assert init is not None
    package = init.parent
    assert package / "answer.py" in reached  # calibrate.py asks through it
    # `from verbatim.index import generations` (engine.py) reaches the module itself
    assert _module_file("verbatim.index.generations") in reached
    assert package / "offtopic.txt" in covered  # the off-topic probes calibration asks
    assert reached <= covered, sorted(str(p) for p in reached - covered)


def test_the_cache_key_changes_with_any_pipeline_file(tmp_path, monkeypatch, settings):
    import verbatim.eval

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("{}\n")
    code = tmp_path / "code.py"
    code.write_text("a = 1\n")
    monkeypatch.setattr(verbatim.eval, "pipeline_files", lambda: [code])
    before = verbatim.eval._cache_key(corpus, settings)
    code.write_text("a = 2\n")
    assert verbatim.eval._cache_key(corpus, settings) != before


def test_a_code_change_rebuilds_the_eval_index_without_embedding_it_again(
    tiny_corpus, settings, monkeypatch, tmp_path
):
    """The eval cache is keyed by the pipeline's source; a new key starts from the vectors of
    the newest build of the same corpus and model, and calibrates afresh."""
    import verbatim.eval as ev
    from tests.conftest import FakeEmbedder
    from verbatim.index import generations

    class Recording(FakeEmbedder):
        seen: list[str] = []

        def encode(self, texts, progress=None):
            self.seen += texts
            return super().encode(texts, progress)

    first = Recording()
    built = ev.corpus_engine(tiny_corpus, settings, first)
    old_dir, old_generation = built.settings.data_dir, built.answering.generation
    old_thresholds = built.answering.thresholds
    docs = [built.answering.document(d).text for d in built.answering.documents]
    built.close()

    def from_corpus(texts: list[str]) -> list[str]:
        return [t for t in texts if t.strip() and any(t in doc for doc in docs)]

    assert from_corpus(first.seen)
    changed = tmp_path / "changed.py"
    changed.write_text("# a change to the answering code\n")
    monkeypatch.setattr(ev, "pipeline_files", lambda: [changed])
    second = Recording()
    second.seen = []
    rebuilt = ev.corpus_engine(tiny_corpus, settings, second)
    assert rebuilt.settings.data_dir != old_dir
    assert rebuilt.answering.generation != old_generation
    assert second.seen and not from_corpus(second.seen)  # calibration's questions only
    folder = generations.generations_dir(rebuilt.settings.data_dir) / rebuilt.answering.generation
    assert "calibration" in generations.read_manifest(folder)
    assert rebuilt.answering.thresholds == old_thresholds  # the same code calibrates the same
    rebuilt.close()
