from pathlib import Path

import pytest

from verbatim.errors import NoDocuments
from verbatim.ingest import read_documents, split_passages
from verbatim.settings import Settings

CHROME = [
    "Rewire Logo",
    "Twin Cities PBS Logo",
    "Credit: Ben Malley",
    "a pointing finger",
    "colorful thought bubbles",
    "Previous",
    "Next",
    "Amazon Associate",
    "affiliate links",
    "Privacy Policy",
    "Have a life dilemma?",
    "what-if-my-husband-won't-go-to-therapy",
    "Check out my video",
    "Gretchen Brown is an editor",
]


def test_default_corpus_has_no_page_chrome():
    corpus = read_documents([Settings().corpus_dir], Settings())
    assert len(corpus.documents) == 2 and not corpus.skipped
    for doc in corpus.documents:
        for passage in split_passages(doc):
            for chrome in CHROME:
                assert chrome not in passage.text


def test_default_corpus_attribution_and_roles():
    docs = {d.id: d for d in read_documents([Settings().corpus_dir], Settings()).documents}
    column = docs["rewire-convince-partner-therapy"]
    assert column.author == "Gretchen Brown"
    assert column.date == "2021-05-20"
    assert column.url == "https://www.rewire.org/therapy-partner-ask-me-instead/"
    assert column.metadata["section"] == "Love"
    roles = {s.role: column.text[s.start : s.end] for s in column.sections}
    assert "Dear Ask Me Instead," in roles["letter"]
    assert "Dear Concerned Partner," in roles["reply"]
    assert "Dear Concerned Partner," not in roles["letter"]
    blog = docs["husband-wont-go-to-therapy"]
    assert blog.title == "What If My Husband Won’t Go To Therapy?"
    assert blog.author is None and blog.url is None


def test_tiny_corpus_of_every_format(tiny_corpus, settings):
    docs = {d.id: d for d in read_documents([tiny_corpus], settings).documents}
    assert set(docs) == {"gardening", "bread", "cars"}
    garden = docs["gardening"]
    assert (garden.title, garden.author, garden.date, garden.url) == (
        "Growing Tomatoes",
        "Ada Gardener",
        "2024-03-01",
        "https://example.org/tomatoes",
    )
    assert [s.heading for s in garden.sections] == ["", "Pests"]
    assert docs["bread"].title == "Baking Bread at Home"
    cars = docs["cars"]
    assert cars.title == "Changing Oil" and cars.author == "Bob Mechanic"
    assert "Change the engine oil" in cars.text
    for chrome in ("Share on Facebook", "Copyright", "Previous"):
        assert chrome not in cars.text


def test_jsonl_corpus(tmp_path, settings):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"id": "a1", "title": "A", "text": "First.Second one here.", "author": "X", '
        '"url": "https://x.org/a", "metadata": {"topic": "t"}}\n\n'
        '{"id": "a2", "title": "B", "text": "Other text."}\n'
    )
    docs = read_documents([path], settings).documents
    assert [d.id for d in docs] == ["a1", "a2"]
    assert docs[0].author == "X" and docs[0].metadata["topic"] == "t"
    passage = split_passages(docs[0])[0]
    assert [docs[0].text[s.start : s.end] for s in passage.sentences] == [
        "First.",
        "Second one here.",
    ]


def test_unreadable_files_are_skipped_with_reasons(tmp_path, settings):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("Some good text.")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02PNG\x00")
    (folder / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (folder / "bad.jsonl").write_text("{not json}\n")
    (folder / "image.png").write_bytes(b"\x89PNG")
    (folder / "link.md").symlink_to(Path("/etc/hostname"))
    (folder / "huge.txt").write_text("x" * 100)
    corpus = read_documents([folder], settings.model_copy(update={"max_file_bytes": 50}))
    assert [d.id for d in corpus.documents] == ["good"]
    reasons = {Path(s.path).name: s.reason for s in corpus.skipped}
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "line 1" in reasons["bad.jsonl"]
    assert "unsupported" in reasons["image.png"]
    assert "link" in reasons["link.md"]
    assert "VERBATIM_MAX_FILE_BYTES" in reasons["huge.txt"]


def test_empty_folder_is_a_clear_error(tmp_path, settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoDocuments, match="no readable documents"):
        read_documents([tmp_path / "empty"], settings)
    with pytest.raises(NoDocuments, match="does not exist"):
        read_documents([tmp_path / "missing"], settings)
