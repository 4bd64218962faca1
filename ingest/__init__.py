"""Read folders of documents into clean `Document`s and split them into `Passage`s.

Public entry point: `read_documents(paths, settings)` -> `Corpus` (documents, their passages
and the files skipped); `read_folders` also gives each file's `SourceFile` and reads only the
files changed since the ones it is given; `stream_folders` gives the same as a `CorpusStream`,
each document as its file is read, for an ingest that holds no more than a block of it.
`split_passages(doc, max_chars)` splits one document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from verbatim.errors import NoDocuments
from verbatim.ingest.files import FileTask, SourceFile, collect, fingerprint, printable
from verbatim.ingest.formats import SUFFIXES
from verbatim.ingest.split import split_passages, split_sentences
from verbatim.ingest.workers import Progress, Result, read_all, read_each
from verbatim.records import Corpus, CorpusStream, Document, DocumentPassages, Passage, Skipped

if TYPE_CHECKING:  # a worker process reads files without loading the settings
    from verbatim.settings import Settings

__all__ = [
    "Corpus",
    "FolderStream",
    "Reader",
    "SourceFile",
    "Stored",
    "read_documents",
    "read_folders",
    "split_passages",
    "split_sentences",
    "stream_folders",
]


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
Streamer = Callable[[list[FileTask], "Settings", Callable[[], None]], Iterator[Result]]


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
    return read_folders(paths, settings, reader)[0]


# The documents a file gave when it was read before (its `SourceFile` as recorded then), or
# None when they are not at hand (then the file is read).
Stored = Callable[[SourceFile], "list[Document] | None"]


def read_folders(
    paths: list[Path],
    settings: Settings,
    reader: Reader = read_all,
    previous: dict[str, SourceFile] | None = None,
    stored: Stored | None = None,
) -> tuple[Corpus, list[SourceFile]]:
    """`read_documents`, and each file's `SourceFile`. A file whose size and modification time
    (or else content hash) match its entry in `previous` is not read: `stored` gives its
    documents as they were. The corpus is the one reading every file would give.

    Raises:
        NoDocuments: when nothing readable was found.
    """
    stream = stream_folders(paths, settings, reader, previous, stored)
    documents: list[Document] = []
    passages: list[Passage] = []
    for item in stream.items:
        documents.append(item.document)
        passages += item.passages
    corpus = Corpus(documents, passages, stream.skipped, stream.formats, stream.read_seconds)
    return corpus, stream.files


@dataclass
class FolderStream(CorpusStream):
    """A `CorpusStream` of folders; once it is read through, `files` holds each file's
    `SourceFile` (those skipped left out)."""

    files: list[SourceFile] = field(default_factory=list)


def stream_folders(
    paths: list[Path],
    settings: Settings,
    reader: Reader | Streamer = read_each,
    previous: dict[str, SourceFile] | None = None,
    stored: Stored | None = None,
) -> FolderStream:
    """`read_folders` as a stream: each document with its passages as its file is read (a few
    files ahead at most, `workers.READ_AHEAD`), so that an ingest holds no more of the corpus
    than the block it is indexing. Its key is the folders and their files' fingerprints.

    Raises:
        NoDocuments: a folder is missing (now), or nothing readable was found (at the end).
    """
    tasks, skipped = collect(paths, settings)
    prints, kept = _unchanged(tasks, previous or {}, stored)
    listed = [os.path.abspath(p) for p in paths] + [
        f"{f.path}\0{f.size}\0{f.sha256}" for f in prints
    ]
    key = hashlib.sha256("\n".join(listed).encode("utf-8", "surrogateescape")).hexdigest()
    stream = FolderStream(iter(()), key, skipped)
    stream.items = _items(stream, paths, settings, reader, tasks, prints, kept)
    return stream


def _items(
    stream: FolderStream,
    paths: list[Path],
    settings: Settings,
    reader: Reader | Streamer,
    tasks: list[FileTask],
    prints: list[SourceFile],
    kept: dict[int, list[Document]],
) -> Iterator[DocumentPassages]:
    began = time.perf_counter()
    todo = [task for i, task in enumerate(tasks) if i not in kept]
    progress = Progress(len(todo), settings.progress)
    fresh = iter(reader(todo, settings, progress.advance))
    seen: set[str] = set()
    formats: Counter[str] = Counter()
    for i, task in enumerate(tasks):
        result: Result = kept[i] if i in kept else next(fresh)
        if isinstance(result, str):
            stream.skipped.append(Skipped(printable(str(task.path)), printable(result)))
            prints[i] = dataclasses.replace(prints[i], sha256="")  # read again next time
            continue
        formats[task.format] += 1
        documents: list[Document] = []
        for doc in result:
            _keep(doc, task, seen, documents, stream.skipped)
        prints[i] = dataclasses.replace(prints[i], docs=tuple(d.id for d in documents))
        for doc in documents:
            stream.read_seconds += time.perf_counter() - began
            yield DocumentPassages(doc, split_passages(doc, settings.passage_chars))
            began = time.perf_counter()
    progress.close(dict(formats), len(stream.skipped))
    stream.formats, stream.files = dict(formats), [p for p in prints if p.sha256]
    stream.read_seconds += time.perf_counter() - began
    if not seen:
        where = ", ".join(str(p) for p in paths)
        raise NoDocuments(
            f"no readable documents in {where}; supported: {' '.join(sorted(SUFFIXES))}"
            + "".join(f"\n  skipped {s.path}: {s.reason}" for s in stream.skipped[:20])
        )


def _unchanged(
    tasks: list[FileTask], previous: dict[str, SourceFile], stored: Stored | None
) -> tuple[list[SourceFile], dict[int, list[Document]]]:
    """Each task's fingerprint now, and the documents of the tasks unchanged since `previous`
    (by size and modification time, else by content hash), under the ids reading gives."""
    prints: list[SourceFile] = []
    kept: dict[int, list[Document]] = {}
    for i, task in enumerate(tasks):
        old = previous.get(printable(os.path.abspath(task.path)))
        now = _stat(task.path) if old else None
        if old is None or now is None or (now.size, now.mtime_ns) != (old.size, old.mtime_ns):
            now = fingerprint(task.path)
            same = old is not None and (old.size, old.sha256) == (now.size, now.sha256)
        else:
            now, same = dataclasses.replace(now, sha256=old.sha256), True
        docs = stored(old) if same and stored and old else None
        if docs is not None:  # as reading gives them: the id and source path from the task
            single = task.format != "jsonl"  # its one document's id comes from its path
            source = printable(str(task.path))
            kept[i] = [
                dataclasses.replace(d, id=task.doc_id if single else d.id, source=source)
                for d in docs
            ]
        prints.append(now)
    return prints, kept


def _stat(path: Path) -> SourceFile | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return SourceFile(printable(os.path.abspath(path)), info.st_size, info.st_mtime_ns, "")
