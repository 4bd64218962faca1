"""Hostile and broken input: ingest finishes, skips what it must with a reason, loses nothing."""

import errno
import os

import numpy as np
import pytest
from click.testing import CliRunner

from verbatim.cli import cli
from verbatim.errors import IndexWriteFailed
from verbatim.index import build_index, generations, load_index
from verbatim.ingest import read_documents

EVIL_HTML = """<html><head><title>Safe Title</title>
<script>alert('head')</script><meta name="author" content="Eve"></head>
<body onload="alert(1)"><article><h1>Safe Title</h1>
<p onclick="steal()">Gardening tips: <a href="javascript:alert(1)">water</a> the plants early.</p>
<script>document.write('injected')</script><style>p { color: red }</style>
<p>Mulch keeps the soil moist through the long dry summer months of the year.</p>
{nested}</article></body></html>"""


def test_hostile_html_keeps_text_and_drops_code(tmp_path, settings):
    nested = (  # as deep as the HTML parser reads (2,048); deeper: tests/test_hostile_containers
        "<div>" * 2000
        + "<p>Deep inside the nest lives a sentence about compost.</p>"
        + ("</div>" * 2000)
    )
    (tmp_path / "evil.html").write_text(EVIL_HTML.replace("{nested}", nested))
    doc = read_documents([tmp_path], settings).documents[0]
    assert "water the plants early" in doc.text and "Mulch keeps the soil" in doc.text
    assert "a sentence about compost" in doc.text
    for code in ("alert", "document.write", "injected", "steal()", "color: red", "javascript"):
        assert code not in doc.text


def test_odd_names_huge_sparse_and_broken_files(tmp_path, settings):
    folder = tmp_path / "mess"
    folder.mkdir()
    (folder / "näme with spaces & ünïcode.md").write_text("A note with an odd file name.")
    (folder / "-dash.txt").write_text("Starts with a dash.\n\nStill readable text here.")
    (folder / "new\nline.md").write_text("A newline in the file name.")
    huge = folder / "huge.txt"
    with open(huge, "wb") as fh:  # 2 GB without using the disk
        fh.truncate(2 * 1024**3)
    (folder / "utf16.txt").write_text("wide text", encoding="utf-16")
    (folder / "empty.md").write_text("")
    (folder / "only-front-matter.md").write_text("---\ntitle: x\n---\n")
    (folder / "bad-yaml.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    outside = tmp_path / "secret.md"
    outside.write_text("A secret outside the folder.")
    (folder / "escape.md").symlink_to(outside)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    corpus = read_documents([folder], settings)
    ids = {d.id for d in corpus.documents}
    assert ids == {"näme with spaces & ünïcode", "-dash", "new%0Aline"}  # no control characters
    reasons = {os.path.basename(s.path): s.reason for s in corpus.skipped}
    assert "VERBATIM_MAX_FILE_BYTES" in reasons["huge.txt"]
    assert "binary" in reasons["utf16.txt"] or "UTF-8" in reasons["utf16.txt"]
    assert "no text" in reasons["empty.md"] and "no text" in reasons["only-front-matter.md"]
    assert "YAML" in reasons["bad-yaml.md"]
    assert "link" in reasons["escape.md"]
    assert all("secret" not in d.text for d in corpus.documents)


def test_disk_full_during_ingest_keeps_the_old_generation(
    tiny_corpus, settings, fake_embedder, monkeypatch
):
    build_index(read_documents([tiny_corpus], settings), settings, fake_embedder)
    before = generations.current_name(settings.data_dir)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    (tiny_corpus / "more.md").write_text("Another document about kites.")
    with pytest.raises(IndexWriteFailed, match="No space left on device"):
        build_index(read_documents([tiny_corpus], settings), settings, fake_embedder)
    assert generations.current_name(settings.data_dir) == before
    assert not list(generations.generations_dir(settings.data_dir).glob(".tmp-*"))
    with load_index(settings) as index:
        assert "more" not in index.documents and "gardening" in index.documents


def test_unwritable_data_dir_is_a_clean_cli_error(tiny_corpus, tmp_path, fake_model):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a folder of the data directory should be")
    data = blocker / "data"
    result = CliRunner().invoke(cli, ["ingest", str(tiny_corpus), "--data-dir", str(data)])
    assert result.exit_code == 1
    assert "could not write the index" in result.output and "Traceback" not in result.output
