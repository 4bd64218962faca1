"""Property tests: whatever the text and the question, quotes are exact and results repeatable."""

import json
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from verbatim.engine import Engine
from verbatim.index import build_index, load_index
from verbatim.ingest import read_documents
from verbatim.settings import Settings

WORDS = ["kite", "wind", "Dr.", "sail", "e.g.", "red", "blue", "sky", "U.S.", "3.5", "—", "“q”"]
sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", ".", ""]),
)
paragraph = st.builds(
    lambda ss, glue: glue.join(ss),
    st.lists(sentence, min_size=1, max_size=6),
    st.sampled_from([" ", "", "  "]),  # "" glues sentences as scraped web text does
)
document = st.lists(paragraph, min_size=1, max_size=5).map("\n\n".join)


@pytest.mark.stress  # 40 indexes built: `make test` runs it
@given(
    docs=st.lists(document, min_size=1, max_size=4),
    question=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
)
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_quotes_are_exact_deterministic_and_ids_stable(
    tmp_path_factory, fake_embedder, docs, question
):
    root = tmp_path_factory.mktemp("prop")
    corpus = root / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "title": f"T{i}", "text": text}) + "\n"
            for i, text in enumerate(docs)
        )
    )
    embedder = fake_embedder  # stateless but for its counters: one serves every example
    ids = []
    for run in range(2):
        s = Settings(data_dir=Path(root / f"data{run}"), model="fake", progress=False)
        build_index(read_documents([corpus], s), s, embedder)
        with load_index(s) as index:
            ids.append(list(index.passage_ids))
            engine = Engine(s, index, embedder)
            first, again = engine.ask(question, k=5), engine.ask(question, k=5)
            assert first.quotes or first.near_misses  # something to check, always
            for quote in first.quotes + first.near_misses:
                text = index.text(quote.doc_id)
                assert text[quote.start : quote.end] == quote.text
                assert quote.text == quote.text.strip() and quote.text
                assert quote.passage_start <= quote.start < quote.end <= quote.passage_end
            strip = lambda a: [(q.doc_id, q.start, q.end) for q in a.quotes + a.near_misses]  # noqa: E731
            assert strip(first) == strip(again)
    assert ids[0] == ids[1]
