"""How fast and how faithfully Verbatim reads a real folder, format by format.

    python bench/read_bench.py FOLDER... [--sample html=300 --sample pdf=30] [--workers 2]
        [--out eval/reports/read_bench.json]

Files under the folders are counted by format. For each sampled format, N files spread evenly
over the sorted list are copied into a temporary folder of their own and read there by the
project's reader (`read_documents`, parallel and sandboxed as in `verbatim ingest`), so each
format is timed alone: files per second is files / `Corpus.read_seconds` (reading, cleaning
and splitting into passages; worker start-up included). Skipped files are counted by reason.

Fidelity, white space aside (every paragraph and sentence of every document, what quotes are
made of):

- HTML: each piece must be a substring of lxml's `text_content()` of the page. Also counted:
  `¶`, Markdown backslash escapes (`\\_`), `*` and backticks in the stored text beyond how
  many the page's own text has, and the Sphinx chrome phrases of `CHROME` found in it.
- PDF: each piece must be a substring of PDFium's own text of its page (with the reader's
  de-hyphenation and ligature rules, `pdf.clean_line`); those that are not are looked for on
  the other pages.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from verbatim.errors import NoDocuments
from verbatim.ingest import read_documents, split_passages
from verbatim.ingest.formats import SUFFIXES, format_of
from verbatim.records import Corpus, Document
from verbatim.settings import Settings

INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
ESCAPE = re.compile(r"\\[_*`\[\]#<>|-]")
MARKERS = {"pilcrow": "¶", "asterisk": "*", "backtick": "`"}
# What Sphinx and other generators (libxml2's table layout, MkDocs) print around the main
# text; none of it may be stored.
CHROME = (
    "Previous topic",
    "Next topic",
    "This Page",
    "Report a Bug",
    "Show Source",
    "Quick search",
    "Navigation",
    "© Copyright",
    "Found a bug?",
    "Last updated on",
    "Created using Sphinx",
    "Main Menu",
    "Related links",
    "Skip to content",
    "Edit this page",
)
EXAMPLES = 5  # pieces off the page shown per format


def squash(text: str) -> str:
    """The text without white space or invisible characters, NFC: what the checks compare."""
    return "".join(unicodedata.normalize("NFC", text).translate(INVISIBLE).split())


def find_files(folders: list[Path]) -> tuple[dict[str, list[Path]], dict[Path, str]]:
    """Every regular file under `folders` (links inside them not followed) by format, files
    of types Verbatim does not read under `other`; and the folder each file is in."""
    found: dict[str, list[Path]] = {}
    origin: dict[Path, str] = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(os.path.realpath(folder)):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                kind = format_of(path) if path.suffix.lower() in SUFFIXES else "other"
                found.setdefault(kind, []).append(path)
                origin[path] = str(folder)
    return found, origin


def spread(paths: list[Path], n: int) -> list[Path]:
    """`n` of `paths` evenly spaced over the list (all of them when there are fewer)."""
    if n >= len(paths):
        return list(paths)
    return [paths[i * len(paths) // n] for i in range(n)]


def read_sample(
    paths: list[Path], workdir: Path, workers: int
) -> tuple[Corpus | None, dict[str, Path]]:
    """The sample copied into `workdir/files` and read there; the copy of each original by
    the document id it gets (`0007-name`)."""
    folder = workdir / "files"
    folder.mkdir(parents=True)
    originals = {}
    for i, path in enumerate(paths):
        copy = folder / f"{i:04d}-{path.name}"
        shutil.copyfile(path, copy)
        originals[copy.with_suffix("").name] = path
    settings = Settings(data_dir=workdir / "data", progress=False, read_workers=workers)
    try:
        corpus = read_documents([folder], settings)
    except NoDocuments:
        return None, originals
    return corpus, originals


def pieces(doc: Document) -> list[tuple[int, str]]:
    """(start, text) of every paragraph and every sentence of a document."""
    out = [(a, doc.text[a:b]) for s in doc.sections for a, b in s.paragraphs]
    for passage in split_passages(doc):
        out += [(s.start, doc.text[s.start : s.end]) for s in passage.sentences]
    return out


def html_visible(raw: bytes) -> str:
    """lxml's `text_content()` of the page (UTF-8 unless the page declares otherwise)."""
    import lxml.html

    try:
        raw.decode("utf-8")
        parser = lxml.html.HTMLParser(huge_tree=True, encoding="utf-8")
    except UnicodeDecodeError:
        parser = lxml.html.HTMLParser(huge_tree=True)
    return str(lxml.html.document_fromstring(raw, parser=parser).text_content())


def html_fidelity(corpus: Corpus, originals: dict[str, Path]) -> dict[str, Any]:
    """Pieces off the page, Markdown markers the page does not have, chrome phrases."""
    total, off = 0, 0
    excess: Counter[str] = Counter()
    stored: Counter[str] = Counter()
    chrome: Counter[str] = Counter()
    examples: list[dict[str, str]] = []
    for doc in corpus.documents:
        page = html_visible(originals[doc.id].read_bytes())
        flat = squash(page)
        for _, text in pieces(doc):
            total += 1
            if squash(text) not in flat:
                off += 1
                if len(examples) < EXAMPLES:
                    examples.append({"file": str(originals[doc.id]), "text": text[:200]})
        marks = {name: doc.text.count(m) for name, m in MARKERS.items()}
        marks["backslash_escape"] = len(ESCAPE.findall(doc.text))
        theirs = {name: page.count(m) for name, m in MARKERS.items()}
        theirs["backslash_escape"] = len(ESCAPE.findall(page))
        for name, count in marks.items():
            stored[name] += count
            excess[name] += max(0, count - theirs[name])
        chrome.update(phrase for phrase in CHROME if phrase in doc.text)
    return {
        "pieces": total,
        "off_page": off,
        "on_page_share": round(1 - off / max(total, 1), 5),
        "markers_stored": dict(stored),
        "markers_not_on_page": dict(excess),
        "chrome_phrases": dict(chrome),
        "off_page_examples": examples,
    }


def pdf_page_texts(path: Path) -> list[str]:
    """Each page's text as PDFium extracts it, with the reader's line cleaning, squashed."""
    import pypdfium2 as pdfium

    from verbatim.ingest.pdf import clean_line

    pdf = pdfium.PdfDocument(str(path))
    try:
        texts = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            texts.append(squash(clean_line(textpage.get_text_range())))
            textpage.close()
            page.close()
        return texts
    finally:
        pdf.close()


def pdf_fidelity(corpus: Corpus, originals: dict[str, Path]) -> dict[str, Any]:
    """Pieces on their own page of PDFium's text, on another page, or on none."""
    total, same, other, stored_pages, pdf_pages = 0, 0, 0, 0, 0
    examples: list[dict[str, Any]] = []
    for doc in corpus.documents:
        texts = pdf_page_texts(originals[doc.id])
        stored_pages += len(doc.pages)
        pdf_pages += len(texts)
        for start, text in pieces(doc):
            total += 1
            page = bisect.bisect_right(doc.pages, start)
            flat = squash(text)
            if 1 <= page <= len(texts) and flat in texts[page - 1]:
                same += 1
            elif any(flat in t for t in texts):
                other += 1
            elif len(examples) < EXAMPLES:
                examples.append({"file": str(originals[doc.id]), "page": page, "text": text[:200]})
    return {
        "pieces": total,
        "on_its_page": same,
        "on_another_page": other,
        "on_no_page": total - same - other,
        "on_its_page_share": round(same / max(total, 1), 5),
        "pages_stored": stored_pages,
        "pages_in_pdfs": pdf_pages,
        "off_page_examples": examples,
    }


def skipped_reasons(corpus: Corpus | None, originals: dict[str, Path]) -> dict[str, int]:
    """Skipped files counted by reason (file names taken out, so like reasons add up)."""
    if corpus is None:
        return {"nothing readable": len(originals)}
    reasons: Counter[str] = Counter()
    for item in corpus.skipped:
        reasons[item.reason.replace(Path(item.path).name, "FILE")] += 1
    return dict(reasons.most_common())


def bench_format(
    kind: str, paths: list[Path], origin: dict[Path, str], n: int, workers: int
) -> dict[str, Any]:
    """Read a sample of one format alone; its speed, skipped files and fidelity."""
    sample = spread(paths, n)
    with tempfile.TemporaryDirectory(prefix=f"read-bench-{kind}-") as tmp:
        corpus, originals = read_sample(sample, Path(tmp), workers)
        result: dict[str, Any] = {
            "found": len(paths),
            "sampled": len(sample),
            "sampled_from": dict(Counter(origin[p] for p in sample)),
            "bytes": sum(p.stat().st_size for p in sample),
            "skipped": skipped_reasons(corpus, originals),
        }
        if corpus is None:
            return result
        seconds = corpus.read_seconds
        result |= {
            "read": corpus.formats.get(kind, 0),
            "documents": len(corpus.documents),
            "passages": len(corpus.passages),
            "seconds": round(seconds, 3),
            "files_per_s": round(corpus.formats.get(kind, 0) / seconds, 2),
            "mb_per_s": round(result["bytes"] / 2**20 / seconds, 2),
        }
        pages = sum(len(d.pages) for d in corpus.documents)
        if pages:
            result |= {"pages": pages, "pages_per_s": round(pages / seconds, 1)}
        check = {"html": html_fidelity, "pdf": pdf_fidelity}.get(kind)
        if check is not None:
            result["fidelity"] = check(corpus, originals)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument(
        "--sample",
        action="append",
        default=[],
        metavar="FORMAT=N",
        help="read N files of FORMAT (repeatable; default: 50 of each format found)",
    )
    parser.add_argument("--workers", type=int, default=2, help="settings.read_workers")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    found, origin = find_files(args.folders)
    wanted = {k: int(v) for k, v in (s.split("=", 1) for s in args.sample)}
    if not wanted:
        wanted = dict.fromkeys((k for k in found if k != "other"), 50)
    report: dict[str, Any] = {
        "folders": [str(f) for f in args.folders],
        "files_per_format": {k: len(v) for k, v in sorted(found.items())},
        "read_workers": args.workers,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "formats": {},
    }
    for kind, n in wanted.items():
        print(f"reading {n} of {len(found.get(kind, []))} {kind} files", file=sys.stderr)
        report["formats"][kind] = bench_format(kind, found.get(kind, []), origin, n, args.workers)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
