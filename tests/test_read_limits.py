"""Reading under limits (issue #32): no step quadratic in a page's elements, and every file read
under the time limit, in this process or not."""

from __future__ import annotations

import time

from verbatim.ingest.markup import read_html


def test_a_row_of_5000_link_cells_reads_in_well_under_a_second():
    cells = "".join(f'<td><a href="/p{i}">page {i}</a></td>' for i in range(5000))
    text = "<td><p>The text of the page, beside a row of menu cells.</p></td>"
    raw = f"<html><body><table><tr>{cells}{text}</tr></table></body></html>".encode()
    began = time.perf_counter()
    blocks = read_html(raw).blocks
    seconds = time.perf_counter() - began
    assert seconds < 1.0, f"{seconds:.2f} s: a step is quadratic in the cells of a row"
    assert blocks[-1].text.endswith("The text of the page, beside a row of menu cells.")
