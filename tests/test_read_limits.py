"""Reading under limits (issue #32): no step quadratic in a page's elements, and every file read
under the time limit, in this process or not."""

from __future__ import annotations

import threading
import time

import pytest

from verbatim.ingest import read_documents
from verbatim.ingest.markup import read_html
from verbatim.records import Corpus


def test_a_row_of_5000_link_cells_reads_in_well_under_a_second():
    cells = "".join(f'<td><a href="/p{i}">page {i}</a></td>' for i in range(5000))
    text = "<td><p>The text of the page, beside a row of menu cells.</p></td>"
    raw = f"<html><body><table><tr>{cells}{text}</tr></table></body></html>".encode()
    began = time.perf_counter()
    blocks = read_html(raw).blocks
    seconds = time.perf_counter() - began
    assert seconds < 1.0, f"{seconds:.2f} s: a step is quadratic in the cells of a row"
    assert blocks[-1].text.endswith("The text of the page, beside a row of menu cells.")


def test_a_file_that_stalls_a_read_in_this_process_is_skipped_at_the_time_limit(
    tmp_path, settings, monkeypatch
):
    """A small folder is read in this process; a read that stalls there stops at the limit."""
    from verbatim.ingest import read as read_module

    plain = read_module.read_text

    def stalling(raw: bytes):
        if b"STALL" in raw:
            time.sleep(30)  # a reader stuck in Python code (a quadratic loop, a huge regex)
        return plain(raw)

    monkeypatch.setattr(read_module, "read_text", stalling)
    (tmp_path / "good.txt").write_text("Good\n\nThis file is read as always.\n")  # no imports
    (tmp_path / "stall.txt").write_text("Stall\n\nSTALL the reader for half a minute.\n")
    began = time.perf_counter()
    corpus = read_documents([tmp_path], settings.model_copy(update={"read_timeout_s": 0.5}))
    assert time.perf_counter() - began < 10
    assert [d.id for d in corpus.documents] == ["good"]
    [skipped] = corpus.skipped
    assert skipped.path.endswith("stall.txt") and "VERBATIM_READ_TIMEOUT_S" in skipped.reason


@pytest.mark.stress  # starts worker processes: a second or two
def test_a_read_outside_the_main_thread_goes_to_the_workers_with_the_same_result(
    tmp_path, settings
):
    """Only the main thread can time a read here; elsewhere the workers read every file."""
    (tmp_path / "a.md").write_text("---\ntitle: A\n---\n\nMarkdown read by a worker.\n")
    (tmp_path / "b.txt").write_text("B\n\nText read by a worker.\n")
    (tmp_path / "c.jsonl").write_text('{"id": "c1", "text": "A row read by a worker."}\n')
    here = read_documents([tmp_path], settings)
    there: list[Corpus] = []
    reader = threading.Thread(target=lambda: there.append(read_documents([tmp_path], settings)))
    reader.start()
    reader.join(60)
    assert there and there[0].documents == here.documents
    assert there[0].passages == here.passages
