"""The order quotes are shown in keeps retrieval's ranking of documents (fake embedder)."""

from __future__ import annotations

import pytest

from tests.conftest import FakeEmbedder
from verbatim.answer import compose, retrieve
from verbatim.engine import ingest_paths, open_engine
from verbatim.eval import shown
from verbatim.settings import Settings

TOPICS = {
    "oil": "Change the engine oil every ten thousand kilometres. Warm the engine first.",
    "tyres": "Check the tyre pressure every month. Rotate the tyres twice a year.",
    "brakes": "Replace brake pads when they squeal. Brake fluid needs changing every two years.",
    "tomatoes": "Tomatoes need full sun. Water the tomatoes every morning in summer.",
    "bread": "Knead the dough for ten minutes. Bake the bread at 230 degrees.",
}
QUESTIONS = [
    "How often should I change the engine oil?",
    "When do brake pads need replacing?",
    "How much sun do tomatoes need?",
    "How long should I knead bread dough?",
    "What should I check every month on the car?",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The five topics, built once: every test here only asks."""
    root = tmp_path_factory.mktemp("topics")
    settings = Settings(data_dir=root / "data", model="fake", progress=False)
    fake_embedder = FakeEmbedder()
    folder = root / "docs"
    folder.mkdir()
    for name, text in TOPICS.items():
        paragraphs = "\n\n".join(f"{text} Note {i} on {name}." for i in range(3))
        (folder / f"{name}.md").write_text(f"# {name.title()}\n\n{paragraphs}\n", encoding="utf-8")
    ingest_paths([folder], settings, fake_embedder)
    settings = settings.model_copy(update={"min_score": 0.0})
    engine = open_engine(settings, fake_embedder)
    yield engine
    engine.close()


@pytest.mark.parametrize("question", QUESTIONS)
def test_documents_are_shown_in_retrieval_order(engine, question):
    found = retrieve(question, engine.index, engine.embedder, engine.settings)
    answer = compose(found, engine.index, engine.settings, k=10)
    docs = shown(answer.quotes)
    assert len(docs) == len(TOPICS)  # every source is quoted before any is quoted twice
    assert docs == found.documents(engine.index, len(docs))
    first_doc_quotes = [q.doc_id for q in answer.quotes[: len(docs)]]
    assert first_doc_quotes == docs


@pytest.mark.parametrize("question", QUESTIONS)
def test_asking_for_more_quotes_never_changes_the_first_ones(engine, question):
    found = retrieve(question, engine.index, engine.embedder, engine.settings)
    few = compose(found, engine.index, engine.settings, k=3).quotes
    many = compose(found, engine.index, engine.settings, k=10).quotes
    assert [(q.doc_id, q.start, q.end) for q in many[:3]] == [
        (q.doc_id, q.start, q.end) for q in few
    ]
