"""`update_paths`: only changed files are read, and the result equals a fresh ingest (#33)."""

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from verbatim.engine import ingest_paths, recorded_sources, update_paths
from verbatim.index import load_index

QUESTIONS = [
    "How often should I change the oil?",
    "How long do I knead the dough?",
    "What do aphids love?",
    "How do I fly a kite?",
]


def _snapshot(settings, embedder):
    """Everything answering reads: documents, the passages served (by id, with their
    documents, offsets and vectors) and the answers. Row order is the store's own: a live
    update serves changed documents from a delta after the base's rows."""
    from verbatim.answer import answer
    from verbatim.records import Filters

    index = load_index(settings)
    try:
        docs = {i: asdict(index.document(i)) for i in sorted(index.documents)}
        p = index.passages(np.flatnonzero(index.allow(Filters())))
        order = np.argsort(np.array(p.ids))
        passages = [(p.ids[i], p.doc[i], int(p.start[i]), int(p.end[i])) for i in order.tolist()]
        vectors = p.vectors[order]
        answers = [
            [
                (q.doc_id, q.start, q.end, q.text)
                for q in answer(t, index, embedder, settings).quotes
            ]
            for t in QUESTIONS
        ]
    finally:
        index.close()
    return docs, passages, vectors, answers


def _fresh(tmp_path, settings, folder, embedder, name="fresh"):
    other = settings.model_copy(update={"data_dir": tmp_path / name})
    ingest_paths([folder], other, embedder)
    return _snapshot(other, embedder)


def _same(a, b):
    assert a[0] == b[0]  # documents, whole
    assert a[1] == b[1]  # passages: ids, documents, offsets
    assert np.allclose(a[2], b[2])
    assert a[3] == b[3]  # the same quotes for the same questions


@pytest.mark.slow  # over 1 s: five ingests
def test_edits_then_update_equal_a_fresh_ingest(tmp_path, settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "kites.md").write_text("# Kites\n\nFly a kite with the wind at your back.\n")
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert (update.added, update.changed, update.removed) == (1, 0, 0)
    _same(
        _snapshot(settings, fake_embedder),
        _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "a"),
    )

    bread = tiny_corpus / "bread.txt"
    bread.write_text(bread.read_text() + "\nRest the loaf for an hour before slicing.\n")
    os.rename(tiny_corpus / "cars.html", tiny_corpus / "motors.html")
    (tiny_corpus / "gardening.md").unlink()
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert (update.added, update.changed, update.removed) == (1, 1, 2)
    _same(
        _snapshot(settings, fake_embedder),
        _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "b"),
    )


def test_only_changed_files_are_read_and_embedded(
    settings, tiny_corpus, fake_embedder, monkeypatch
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    read = []
    import verbatim.ingest as ingest

    real = ingest.read_all

    def counting(tasks, s, advance):
        read.extend(t.path.name for t in tasks)
        return real(tasks, s, advance)

    monkeypatch.setattr("verbatim.engine.read_all", counting)
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert read == ["kites.md"]
    assert update.report is not None and update.report.reused == update.report.passages - 1
    assert "kites" in load_index(settings).documents


def test_no_change_publishes_nothing(settings, tiny_corpus, fake_embedder):
    report, _ = ingest_paths([tiny_corpus], settings, fake_embedder)
    os.utime(tiny_corpus / "bread.txt", ns=(1, 1))  # touched, same content
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert update.report is None and (update.added, update.changed, update.removed) == (0, 0, 0)
    roots, files = recorded_sources(settings)
    assert roots == [str(tiny_corpus)] and len(files) == 3
    assert {f.docs for f in files.values()} == {("bread",), ("cars",), ("gardening",)}


@pytest.mark.slow  # over 1 s: an ingest and an update
def test_a_broken_file_is_skipped_and_the_rest_applied(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert update.added == 1 and [s.path for s in update.skipped] == [
        str(tiny_corpus / "broken.pdf")
    ]
    assert "kites" in load_index(settings).documents


def test_a_relative_ingest_is_watched_from_its_absolute_path(
    settings, tiny_corpus, fake_embedder, monkeypatch
):
    monkeypatch.chdir(tiny_corpus.parent)
    ingest_paths([Path(tiny_corpus.name)], settings, fake_embedder)
    update = update_paths([tiny_corpus.resolve()], settings, fake_embedder)
    assert update.report is None and update.changed == update.added == update.removed == 0
