"""Reading folders: ids that never collide, a file given twice read once, reading in parallel
with progress."""

from __future__ import annotations

import re
from pathlib import Path

from tests.builders import (
    INFO,
    TWO_PAGES,
    fake_settings,
    make_pdf,
)
from verbatim.ingest import read_documents
from verbatim.ingest.files import root_labels
from verbatim.ingest.workers import Progress


def test_ids_stay_distinct_across_folders_with_the_same_names(tmp_path):
    for folder, suffix in (("notes", ".md"), ("saved-articles", ".html")):
        (tmp_path / folder / "tutorial").mkdir(parents=True)
        body = (
            "<html><body><p>Text of {0}.</p></body></html>" if suffix == ".html" else "Text of {0}."
        )
        (tmp_path / folder / f"index{suffix}").write_text(body.format(folder))
        (tmp_path / folder / "tutorial" / f"venv{suffix}").write_text(body.format(folder + " venv"))
    roots = [tmp_path / "notes", tmp_path / "saved-articles"]
    corpus = read_documents(roots, fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == [
        "notes/index",
        "notes/tutorial/venv",
        "saved-articles/index",
        "saved-articles/tutorial/venv",
    ]
    assert not corpus.skipped
    again = read_documents(roots, fake_settings(tmp_path))  # stable across re-ingest
    assert [d.id for d in again.documents] == [d.id for d in corpus.documents]
    alone = read_documents([tmp_path / "notes"], fake_settings(tmp_path))  # one folder: as before
    assert [d.id for d in alone.documents] == ["index", "tutorial/venv"]


def test_the_same_file_given_twice_is_read_once_and_reported_once(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("Alpha text.")
    (tmp_path / "notes" / "b.md").write_text("Beta text.")
    roots = [tmp_path / "notes", tmp_path / "notes", tmp_path / "notes" / "a.md"]
    corpus = read_documents(roots, fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["a", "b"]
    assert [(Path(s.path).name, s.reason) for s in corpus.skipped] == [
        ("notes", "given twice; read once"),
        ("a.md", f"inside {tmp_path / 'notes'}, which is read whole; read once"),
    ]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b-again.md").hardlink_to(tmp_path / "notes" / "b.md")
    corpus = read_documents([tmp_path / "notes", tmp_path / "elsewhere"], fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["notes/a", "notes/b"]
    [skip] = corpus.skipped
    assert skip.reason == f"the same file as {tmp_path / 'notes' / 'b.md'}, given twice; read once"


def test_same_named_folders_take_more_of_their_path(tmp_path):
    for parent in ("work", "home"):
        (tmp_path / parent / "notes").mkdir(parents=True)
        (tmp_path / parent / "notes" / "todo.md").write_text(f"Things to do at {parent}.")
    roots = [tmp_path / "work" / "notes", tmp_path / "home" / "notes"]
    assert root_labels(roots) == {roots[0]: "work/notes", roots[1]: "home/notes"}
    ids = [d.id for d in read_documents(roots, fake_settings(tmp_path)).documents]
    assert ids == ["work/notes/todo", "home/notes/todo"]


def test_a_file_whose_id_is_taken_keeps_its_suffix(tmp_path):
    (tmp_path / "a.md").write_text("The Markdown one.")
    (tmp_path / "a.txt").write_text("The text one.")
    corpus = read_documents([tmp_path], fake_settings(tmp_path))
    assert [d.id for d in corpus.documents] == ["a", "a.txt"] and not corpus.skipped


# --- reading in parallel, with progress ---------------------------------------------------------


def test_parallel_reading_is_deterministic(tmp_path):
    for i in range(70):  # more than IN_PROCESS_UP_TO: the workers read HTML too
        body = f"<html><body><article><h1>Page {i}</h1><p>Paragraph {i} text.</p></article>"
        (tmp_path / f"page-{i:02d}.html").write_text(body)
    (tmp_path / "guide.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    one = read_documents([tmp_path], fake_settings(tmp_path, read_workers=1))
    two = read_documents([tmp_path], fake_settings(tmp_path, read_workers=2))
    assert one.documents == two.documents and one.passages == two.passages
    assert [d.id for d in one.documents] == ["guide", *(f"page-{i:02d}" for i in range(70))]
    assert one.formats == {"html": 70, "pdf": 1}


def test_progress_prints_a_line_off_a_terminal_and_a_summary(capsys, monkeypatch):
    monkeypatch.setattr("verbatim.ingest.workers.LOG_EVERY_S", 0.0)
    progress = Progress(3, enabled=True)
    for _ in range(3):
        progress.advance()
    progress.close({"pdf": 2, "html": 1}, skipped=1)
    err = capsys.readouterr().err
    assert "Reading: 1/3 files" in err and "files/s, about" in err
    assert re.search(r"Read 3 files in [\d.]+ s \([\d.]+ files/s\): 1 html, 2 pdf; 1 skipped", err)
    silent = Progress(3, enabled=False)
    silent.advance()
    silent.close({}, 0)
    assert capsys.readouterr().err == ""
