"""Live updates as deltas (#33): a change is written beside the base generation, served with the
base's replaced documents masked, and merged into one generation later."""

import os
from dataclasses import asdict

import numpy as np
import pytest

from verbatim.answer import answer
from verbatim.engine import ingest_paths, update_paths
from verbatim.index import generations, load_index, where
from verbatim.index.segments import Segmented
from verbatim.watch import Watcher

QUESTIONS = [
    "How often should I change the oil?",
    "How long do I knead the dough?",
    "What do aphids love?",
    "How do I fly a kite?",
    "How long should the loaf rest?",
]


@pytest.fixture
def deltas(monkeypatch):
    """Every update a delta, however small the collection (the share is for large ones)."""
    monkeypatch.setattr("verbatim.engine.MERGE_SHARE", 10.0)


def _served(settings, embedder):
    """What a reader can get: documents whole, passages (id, document, offsets, vector) by
    id, and each question's quotes."""
    index = load_index(settings)
    try:
        docs = {i: asdict(index.document(i)) for i in sorted(index.documents)}
        rows = np.arange(_rows(index))
        rows = rows[index.allow(_no_filter())] if isinstance(index, Segmented) else rows
        p = index.passages(rows)
        passages = sorted(
            zip(p.ids, p.doc, p.start.tolist(), p.end.tolist(), map(tuple, p.vectors), strict=True)
        )
        quotes = [
            [
                (q.doc_id, q.start, q.end, q.text)
                for q in answer(t, index, embedder, settings).quotes
            ]
            for t in QUESTIONS
        ]
    finally:
        index.close()
    return docs, passages, quotes


def _rows(index) -> int:
    if isinstance(index, Segmented):
        return index.offset + len(index.delta.passage_ids)
    return len(index.passage_ids)


def _no_filter():
    from verbatim.records import Filters

    return Filters()


def _fresh(tmp_path, settings, folder, embedder, name):
    other = settings.model_copy(update={"data_dir": tmp_path / name})
    ingest_paths([folder], other, embedder)
    return _served(other, embedder)


def _current_manifest(settings) -> dict:
    folder = where(settings)
    return generations.read_manifest(
        generations.generations_dir(folder) / generations.current_name(folder)
    )


def _edit(folder):
    """Add, change, rename and delete files: each kind of change."""
    (folder / "kites.md").write_text("# Kites\n\nFly a kite with the wind at your back.\n")
    bread = folder / "bread.txt"
    bread.write_text(bread.read_text() + "\nRest the loaf for an hour before slicing.\n")
    os.rename(folder / "cars.html", folder / "motors.html")
    (folder / "gardening.md").unlink()


def test_a_delta_serves_the_passages_of_a_fresh_ingest(
    tmp_path, settings, tiny_corpus, fake_embedder, deltas
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    base = generations.current_name(where(settings))
    _edit(tiny_corpus)
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert (update.added, update.changed, update.removed) == (2, 1, 2)
    manifest = _current_manifest(settings)
    assert manifest["delta"]["base"] == base
    assert set(manifest["delta"]["masked"]) == {"bread", "cars", "gardening"}
    assert manifest["counts"]["documents"] == 3
    served, fresh = (
        _served(settings, fake_embedder),
        _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "fresh"),
    )
    assert served[0] == fresh[0]  # the same documents, whole
    assert served[1] == fresh[1]  # the same passages, offsets and vectors
    assert not any(q[0] == "gardening" for quotes in served[2] for q in quotes)


def test_deltas_on_deltas_then_a_merge_equal_a_fresh_ingest(
    tmp_path, settings, tiny_corpus, fake_embedder, deltas
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    base = generations.current_name(where(settings))
    (tiny_corpus / "kites.md").write_text("# Kites\n\nFly a kite with the wind at your back.\n")
    update_paths([tiny_corpus], settings, fake_embedder)
    _edit(tiny_corpus)  # kites.md changes again, inside the delta
    (tiny_corpus / "kites.md").write_text("# Kites\n\nA kite flies on a steady wind.\n")
    update_paths([tiny_corpus], settings, fake_embedder)
    assert _current_manifest(settings)["delta"]["base"] == base  # one delta, rewritten
    fresh = _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "fresh")
    assert _served(settings, fake_embedder)[:2] == fresh[:2]

    merged = update_paths([tiny_corpus], settings, fake_embedder, merge=True)
    assert merged.report is not None and "delta" not in _current_manifest(settings)
    assert _served(settings, fake_embedder) == fresh  # answers too, calibration included
    # Every passage was embedded before, in the base or in the delta: the merge copies them all.
    assert merged.report.reused == merged.report.passages and merged.report.embedded == 0


def test_a_server_serving_the_base_opens_only_the_delta(
    settings, tiny_corpus, fake_embedder, deltas, monkeypatch
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    serving = load_index(settings)
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    update_paths([tiny_corpus], settings, fake_embedder)
    verified = []
    real = generations.verify_manifest
    monkeypatch.setattr(
        generations, "verify_manifest", lambda path: verified.append(path.name) or real(path)
    )
    delta = load_index(settings)
    assert isinstance(delta, Segmented) and delta.base is serving
    assert verified == [delta.generation]  # the base is not hashed again
    serving.close()  # the old engine retired: the base stays open for the delta
    assert "kites" in delta.documents and delta.text("bread")
    delta.close()


def test_a_change_too_large_for_a_delta_is_a_merge(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    update = update_paths([tiny_corpus], settings, fake_embedder)  # 1 passage of 3: > 5%
    assert update.report is not None and update.added == 1
    assert "delta" not in _current_manifest(settings)
    (tiny_corpus / "bread.txt").unlink()  # masks 1 passage of 4: a merge too
    update = update_paths([tiny_corpus], settings, fake_embedder)
    assert update.removed == 1 and "delta" not in _current_manifest(settings)


def test_the_bases_of_kept_deltas_are_kept(settings, tiny_corpus, fake_embedder, deltas):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    base = generations.current_name(where(settings))
    for i in range(3):
        (tiny_corpus / "kites.md").write_text(f"Fly kite number {i} with the wind.\n")
        update_paths([tiny_corpus], settings, fake_embedder)
    names = {p.name for p in generations.generations_dir(where(settings)).iterdir()}
    current = generations.current_name(where(settings))
    assert {base, current} <= names and len(names) <= 3  # and at most the one before
    assert isinstance(load_index(settings), Segmented)


def test_prune_leaves_a_workspace_being_written(settings, tiny_corpus, fake_embedder):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    folder = where(settings)
    with generations.writing(folder) as workspace:
        generations.prune(folder)
        assert workspace.exists()  # another writer's prune leaves it alone
        (workspace / "x").write_text("x")
    abandoned = generations.new_workspace(folder)  # nobody holds it
    generations.prune(folder)
    assert not abandoned.exists()


def test_a_merge_applies_what_changed_meanwhile(
    tmp_path, settings, tiny_corpus, fake_embedder, deltas, monkeypatch
):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    update_paths([tiny_corpus], settings, fake_embedder)
    real = update_paths

    def meanwhile(paths, s, embedder, merge=False, since=None):
        result = real(paths, s, embedder, merge=merge, since=since)
        if merge:  # a file saved while the merge was written
            (tiny_corpus / "boats.md").write_text("Row the boat gently down the stream.\n")
            assert "delta" in _current_manifest(settings)  # the merge is not current yet
        return result

    monkeypatch.setattr("verbatim.watch.update_paths", meanwhile)
    Watcher(settings, [tiny_corpus], fake_embedder).merge()
    manifest = _current_manifest(settings)
    merged = manifest["delta"]["base"]  # the change, as a delta on the merged generation
    assert "delta" not in generations.read_manifest(
        generations.generations_dir(where(settings)) / merged
    )
    fresh = _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "fresh")
    assert _served(settings, fake_embedder)[:2] == fresh[:2]


def test_feedback_citations_are_checked_against_base_and_delta(
    settings, tiny_corpus, fake_embedder, deltas
):
    from verbatim.citations import StoredTexts

    ingest_paths([tiny_corpus], settings, fake_embedder)
    with load_index(settings) as index:
        bread = index.text("bread")
    (tiny_corpus / "kites.md").write_text("Fly a kite with the wind at your back.\n")
    (tiny_corpus / "gardening.md").unlink()
    update_paths([tiny_corpus], settings, fake_embedder)
    folder = where(settings)
    texts = StoredTexts(generations.generations_dir(folder) / generations.current_name(folder))
    try:
        assert texts.lookup("kites").text.startswith("Fly a kite")  # from the delta
        assert texts.lookup("bread").text == bread  # from the base
        assert texts.lookup("gardening") is None  # masked: its file is gone
    finally:
        texts.close()


def test_a_delta_that_only_removes(settings, tiny_corpus, fake_embedder, deltas):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "gardening.md").unlink()
    update_paths([tiny_corpus], settings, fake_embedder)
    manifest = _current_manifest(settings)
    assert manifest["delta"]["documents"] == 0 and manifest["delta"]["masked"] == ["gardening"]
    docs, passages, quotes = _served(settings, fake_embedder)
    assert set(docs) == {"bread", "cars"} and {p[1] for p in passages} == {"bread", "cars"}
    assert all(q[0] != "gardening" for answer_quotes in quotes for q in answer_quotes)
    assert any(quotes)  # the rest still answers


@pytest.mark.parametrize("merge", [False, True])
def test_a_new_heading_or_title_embeds_its_passages_again(
    tmp_path, settings, tiny_corpus, fake_embedder, deltas, merge
):
    """A passage is embedded with its document's title and its section's heading
    (`build.passage_text`): a change to either, the paragraph unchanged, gives it another
    vector, whether the update is a delta or a whole generation."""
    (tiny_corpus / "kites.md").write_text("# Kites\n\n## Wind\n\nFly a kite with the wind.\n")
    ingest_paths([tiny_corpus], settings, fake_embedder)
    (tiny_corpus / "kites.md").write_text("# Kites\n\n## Storms\n\nFly a kite with the wind.\n")
    garden = tiny_corpus / "gardening.md"
    garden.write_text(garden.read_text().replace("title: Growing Tomatoes", "title: Tomatoes"))
    update_paths([tiny_corpus], settings, fake_embedder, merge=merge)
    fresh = _fresh(tmp_path, settings, tiny_corpus, fake_embedder, "fresh")
    assert _served(settings, fake_embedder)[:2] == fresh[:2]
