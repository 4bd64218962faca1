import hypothesis.strategies as st
from hypothesis import given, settings

from verbatim.ingest.read import build_text, make_document
from verbatim.ingest.split import split_passages, split_sentences


def sentences_of(text):
    return [text[s.start : s.end] for s in split_sentences(text, 0, len(text))]


def test_glued_web_sentences_are_split():
    text = "maybe you need new people to hang out with.Seriously, the social context matters."
    assert sentences_of(text) == [
        "maybe you need new people to hang out with.",
        "Seriously, the social context matters.",
    ]


def test_abbreviations_decimals_and_initials_do_not_split():
    text = "Dr. Smith met J. R. Doe at 3.5 p.m. today. U.S.A. is big. See e.g. this."
    assert sentences_of(text) == [
        "Dr. Smith met J. R. Doe at 3.5 p.m. today.",
        "U.S.A. is big.",
        "See e.g. this.",
    ]


def test_quotes_questions_and_exclamations():
    text = 'She said, "Go now." Then what? I left! "Why?" he asked.'
    assert sentences_of(text) == [
        'She said, "Go now."',
        "Then what?",
        "I left!",
        '"Why?" he asked.',
    ]


def test_line_breaks_end_sentences():
    assert sentences_of("Dear Partner,\nThank you") == ["Dear Partner,", "Thank you"]


def doc_from(body, markdown=True):
    found = build_text(body, markdown=markdown)
    return make_document("d", "mem", found.text, found.sections, {"title": "T"})


def test_passages_never_cross_sections_and_are_bounded():
    body = "Intro sentence one. Intro two.\n\n## Part\n\n" + " ".join(
        f"Sentence number {i} is here." for i in range(100)
    )
    doc = doc_from(body)
    passages = split_passages(doc, 300)
    assert all(p.end - p.start <= 300 for p in passages)
    for p in passages:
        section = next(s for s in doc.sections if s.start <= p.start < s.end)
        assert p.end <= section.end and p.heading == section.heading
    assert passages[0].heading == "" and passages[1].heading == "Part"


def test_ids_depend_on_content_only():
    a = split_passages(doc_from("One. Two.\n\nThree."))
    b = split_passages(doc_from("One. Two.\n\nThree."))
    c = split_passages(doc_from("One. Two.\n\nFour."))
    assert [p.id for p in a] == [p.id for p in b]
    assert [p.id for p in a] != [p.id for p in c]


words = st.text(alphabet="abcdefgh ABC.!?,\n'\"", min_size=0, max_size=400)


@given(words, st.integers(min_value=200, max_value=600))
@settings(max_examples=200, deadline=None)
def test_offsets_are_exact_and_cover_the_text(body, limit):
    doc = doc_from(body, markdown=False)
    passages = split_passages(doc, limit)
    for p in passages:
        assert p.text == doc.text[p.start : p.end]
        assert p.end - p.start <= limit
        assert p.sentences[0].start == p.start and p.sentences[-1].end == p.end
        for s in p.sentences:
            assert p.start <= s.start < s.end <= p.end
            assert doc.text[s.start : s.end].strip() == doc.text[s.start : s.end]
    covered = "".join(doc.text[s.start : s.end] for p in passages for s in p.sentences)
    assert "".join(covered.split()) == "".join(doc.text.split())
    assert [p.id for p in passages] == [p.id for p in split_passages(doc, limit)]


def test_the_default_passage_limit_is_the_settings_default():
    from verbatim.ingest.split import PASSAGE_CHARS
    from verbatim.settings import Settings

    assert PASSAGE_CHARS == Settings.model_fields["passage_chars"].default
