"""Read time of HTML pages built to stall a reader (issue #32): a layout table whose one row
holds thousands of link cells, and deeply nested wrappers that each look like page chrome.

    .venv/bin/python bench/read_pathological.py [--cells 250,1000,2000,5000] [--json out.json]

Prints one line per page: its size, the seconds `read_html` took (best of `--repeat`) and the
blocks read, or why the page was skipped (nesting past the HTML parser's 2,048 levels).
Before #32 the row of cells was quadratic (here, loaded: 1.9 s at 250 cells, 31 s at 1,000,
114 s at 2,000); after, linear (0.04, 0.17, 0.36 s; 0.64 s at 5,000).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from verbatim.ingest.markup import read_html
from verbatim.ingest.read import UnreadableFile


def link_cells(n: int) -> bytes:
    """A page without a main element whose layout table's one row holds `n` cells of links
    beside one cell of text."""
    cells = "".join(
        f'<td><a href="/a{i}">menu {i}</a> <a href="/b{i}">item</a> <a href="/c{i}">x</a></td>'
        for i in range(n)
    )
    text = "<td><p>The page's own text sits in the widest cell of the row.</p></td>"
    return f"<html><body><table><tr>{cells}{text}</tr></table></body></html>".encode()


def nested_chrome(depth: int) -> bytes:
    """`depth` nested wrappers whose class says chrome but which hold all the text."""
    opened = '<div class="nav-wrapper">' * depth
    return (
        f"<html><body>{opened}<p>All of the text is deep inside the wrappers.</p>"
        f"{'</div>' * depth}</body></html>"
    ).encode()


def nested_articles(depth: int) -> bytes:
    """`depth` nested `<article>`s: the main element's candidates, one inside the other."""
    return (
        f"<html><body>{'<article>' * depth}<p>Text inside every article at once.</p>"
        f"{'</article>' * depth}</body></html>"
    ).encode()


def timed(raw: bytes, repeat: int) -> tuple[float, str]:
    """The best of `repeat` reads, in seconds, and what was read: the blocks, or why not."""
    best, read = float("inf"), ""
    for _ in range(repeat):
        began = time.perf_counter()
        try:
            read = f"{len(read_html(raw).blocks)} blocks"
        except UnreadableFile as exc:
            read = f"skipped: {str(exc)[:60]}"
        best = min(best, time.perf_counter() - began)
    return best, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="250,1000,2000,5000")
    parser.add_argument("--depth", default="1000,3000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    pages: list[tuple[str, Callable[[int], bytes], int]] = []
    pages += [("link cells", link_cells, int(n)) for n in args.cells.split(",")]
    pages += [("nested chrome", nested_chrome, int(n)) for n in args.depth.split(",")]
    pages += [("nested articles", nested_articles, int(n)) for n in args.depth.split(",")]
    rows = []
    for name, build, n in pages:
        raw = build(n)
        seconds, read = timed(raw, args.repeat)
        rows.append({"page": name, "n": n, "bytes": len(raw), "s": round(seconds, 4), "read": read})
        print(f"{name:16} n={n:>5}  {len(raw) / 1024:7.0f} KB  {seconds:8.3f} s  {read}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
