"""Read folders of documents into clean `Document`s and split them into `Passage`s.

Public entry point: `read_documents(paths, settings)` -> `Corpus` (documents, their passages
and the files skipped). `split_passages(doc, max_chars)` splits one document.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from verbatim.errors import NoDocuments
from verbatim.ingest.files import FileTask, collect, printable
from verbatim.ingest.formats import SUFFIXES
from verbatim.ingest.split import split_passages, split_sentences
from verbatim.ingest.workers import Progress, Result, read_all
from verbatim.records import Corpus, Document, Skipped

if TYPE_CHECKING:  # a worker process reads files without loading the settings
    from verbatim.settings import Settings

__all__ = ["Corpus", "Reader", "read_documents", "split_passages", "split_sentences"]


def _keep(
    doc: Document, task: FileTask, seen: set[str], documents: list[Document], skipped: list[Skipped]
) -> None:
    """Add `doc` under an id no other document has. A file whose id is taken (`a.md` beside
    `a.txt`) keeps its suffix (`a.txt`); a JSONL row keeps the id it gives, or is skipped."""
    if doc.id in seen and task.format != "jsonl":
        alternative = f"{doc.id}{task.path.suffix}"
        if alternative not in seen:
            doc = dataclasses.replace(doc, id=alternative)
    if doc.id in seen:
        skipped.append(Skipped(doc.source, f"duplicate document id '{doc.id}'"))
        return
    seen.add(doc.id)
    documents.append(doc)


Reader = Callable[[list[FileTask], "Settings", Callable[[], None]], list[Result]]


def read_documents(paths: list[Path], settings: Settings, reader: Reader = read_all) -> Corpus:
    """Read every supported file under `paths` (recursively) into documents.

    Files are read in parallel (PDF, DOCX and EPUB in sandboxed processes), with a progress
    bar when `settings.progress`; the result does not depend on the order they finish in.
    Files that cannot be read are listed in `Corpus.skipped` with the reason.

    Args:
        reader: reads the files: this machine's process pool (`read_all`), or a Ray cluster
            (`verbatim.ingest.cluster.read_on_ray`).

    Raises:
        NoDocuments: when nothing readable was found.
    """
    began = time.perf_counter()
    tasks, skipped = collect(paths, settings)
    progress = Progress(len(tasks), settings.progress)
    results: list[Result] = reader(tasks, settings, progress.advance)
    documents: list[Document] = []
    seen: set[str] = set()
    formats: Counter[str] = Counter()
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, str):
            skipped.append(Skipped(printable(str(task.path)), printable(result)))
            continue
        formats[task.format] += 1
        for doc in result:
            _keep(doc, task, seen, documents, skipped)
    progress.close(dict(formats), len(skipped))
    if not documents:
        where = ", ".join(str(p) for p in paths)
        raise NoDocuments(
            f"no readable documents in {where}; supported: {' '.join(sorted(SUFFIXES))}"
            + "".join(f"\n  skipped {s.path}: {s.reason}" for s in skipped[:20])
        )
    passages = [p for doc in documents for p in split_passages(doc, settings.passage_chars)]
    return Corpus(documents, passages, skipped, dict(formats), time.perf_counter() - began)
