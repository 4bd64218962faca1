"""The manifest records how the sentence vectors were made, and re-ingest never mixes kinds."""

import json

import pytest

from verbatim.index import SENTENCE_VECTORS, build_index, generations, load_index, sentence_vectors
from verbatim.ingest import read_documents


def build(folder, settings, embedder):
    return build_index(read_documents([folder], settings), settings, embedder)


def rewrite_manifest(settings, change) -> None:
    path = settings.data_dir / "generations" / generations.current_name(settings.data_dir)
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_the_manifest_records_per_sentence_vectors(tiny_corpus, settings, fake_embedder):
    report = build(tiny_corpus, settings, fake_embedder)
    assert report.embedded == report.passages + report.sentences  # one pass per sentence
    with load_index(settings) as index:
        assert index.manifest["sentence_vectors"] == SENTENCE_VECTORS == "per-sentence"
        assert sentence_vectors(index.manifest) == "per-sentence"


def test_an_index_from_before_the_field_is_served_and_reused(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    rewrite_manifest(settings, lambda manifest: manifest.pop("sentence_vectors"))
    with load_index(settings) as index:
        assert sentence_vectors(index.manifest) == "per-sentence"
    again = build(tiny_corpus, settings, fake_embedder)
    assert again.embedded == 0 and again.reused == again.passages


@pytest.mark.parametrize("other", ["late-chunking-1", "per-sentence-int8"])
def test_vectors_of_another_kind_are_never_reused(tiny_corpus, settings, fake_embedder, other):
    build(tiny_corpus, settings, fake_embedder)
    rewrite_manifest(settings, lambda manifest: manifest.update(sentence_vectors=other))
    with load_index(settings) as index:  # still served: same model, same vector space
        assert sentence_vectors(index.manifest) == other
    report = build(tiny_corpus, settings, fake_embedder)
    assert report.reused == 0 and report.embedded == report.passages + report.sentences
    with load_index(settings) as index:
        assert sentence_vectors(index.manifest) == "per-sentence"
