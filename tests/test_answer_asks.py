"""Answers over restatements (issue #17, item 3): a document is led by a quote that does more
than ask or exclaim, and the documents keep retrieval's order."""

import pytest

from verbatim.answer import _Candidate, _select, _shown_order, only_asks


@pytest.mark.parametrize(
    ("sentences", "expected"),
    [
        (["You want your partner to go to therapy and they won't go!"], True),
        (["Why won't you go to therapy?\""], True),  # a closing quote after the mark
        (["What now? ", "Nobody knows!"], True),
        (["Why not? ", "Because it costs money."], False),  # the question is answered
        (["Start a discussion with your partner."], False),
        (["The 3 options (a, b or c)."], False),
    ],
)
def test_only_asks(sentences, expected):
    assert only_asks(sentences) is expected


def test_shown_order_checks_only_the_documents_a_caller_reaches():
    checked = []
    order = _shown_order(["a", "b", "c"], lambda i: checked.append(i) or False)
    assert next(order) == 0 and checked == [0]


def test_shown_order_leads_each_document_with_an_answer_keeping_document_order():
    docs = ["a", "a", "b", "a", "b"]
    asking = {0, 2, 4}  # a's best passage and all of b's only ask
    order = list(_shown_order(docs, lambda i: i in asking))
    assert order[:2] == [1, 2]  # a first (by its answer), then b (nothing better to lead with)
    assert sorted(order) == list(range(5))
    assert list(dict.fromkeys(docs[i] for i in order)) == ["a", "b"]
    assert list(_shown_order(docs)) == [0, 2, 1, 3, 4]  # without the check: each one's best first


def test_a_restatement_does_not_lead_its_document(tmp_path, settings, fake_embedder):
    """The passage that only exclaims ranks first, yet its document is led by the next one
    (two sections, so two passages: short paragraphs would merge into one)."""
    from verbatim.index import build_index, load_index
    from verbatim.ingest import read_documents

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "advice.md").write_text(
        "# Problem\n\nYour partner won't go to therapy!\n\n"
        "# Advice\n\nStart a discussion with your partner first.\n"
    )
    (docs / "other.md").write_text("Couples therapy helps many people.\n")
    build_index(read_documents([docs], settings), settings, fake_embedder)
    with load_index(settings) as index:
        rows = [index.passage_doc.index("advice"), index.passage_doc.index("other")]
        advice = [r for r, doc in enumerate(index.passage_doc) if doc == "advice"]
        assert len(advice) == 2
        window = [(int(index.sent_lo[r]), int(index.sent_lo[r]) + 1) for r in advice]
        other = int(index.sent_lo[rows[1]])
        candidates = [
            _Candidate(advice[0], 0.9, window[0]),
            _Candidate(rows[1], 0.8, (other, other + 1)),
            _Candidate(advice[1], 0.7, window[1]),
        ]
        quotes = _select(index, candidates, k=3)
        assert [q.doc_id for q in quotes] == ["advice", "other", "advice"]
        assert quotes[0].text == "Start a discussion with your partner first."
        assert quotes[2].text == "Your partner won't go to therapy!"
